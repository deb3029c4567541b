from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("_tasks/", include("django_q_cloudtasks.urls")),
    path("admin/", admin.site.urls),
]
