from django.contrib import admin
from django.urls import include, path

from jobs import views

urlpatterns = [
    path("", views.index, name="index"),
    path("long-export/", views.long_export, name="long-export"),
    path("tasks/<slug:task_id>/cancel/", views.cancel_task, name="cancel-task"),
    path("admin/", admin.site.urls),
    # Cloud Tasks delivers every task here.
    path("_tasks/", include("django_q_cloudtasks.urls")),
]
