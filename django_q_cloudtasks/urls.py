"""Mount with ``path("_tasks/", include("django_q_cloudtasks.urls"))``."""

from django.urls import path

from . import views

app_name = "django_q_cloudtasks"
urlpatterns = [
    path("", views.receive, name="receive"),
]
