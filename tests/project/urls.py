from django.urls import include, path

urlpatterns = [path("_tasks/", include("django_q_cloudtasks.urls"))]
