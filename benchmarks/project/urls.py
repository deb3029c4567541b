from django.conf import settings
from django.urls import include, path

from .bare import bare_receiver

urlpatterns = [path("bare/", bare_receiver)]
if settings.BROKER == "cloudtasks":
    urlpatterns.append(path("_tasks/", include("django_q_cloudtasks.urls")))
