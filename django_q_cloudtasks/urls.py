"""Mount with ``path("_tasks/", include("django_q_cloudtasks.urls"))``.

The setting ``url`` is the receiver's address; the other two sit beside it.
"""

from django.urls import path

from . import views
from .conf import SCHEDULE_PATH, TICK_PATH

app_name = "django_q_cloudtasks"
urlpatterns = [
    path("", views.receive, name="receive"),
    path(SCHEDULE_PATH, views.fire_schedule, name="schedule"),
    path(TICK_PATH, views.tick, name="tick"),
]
