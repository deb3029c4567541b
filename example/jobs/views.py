from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from django_q.models import Failure, Success
from django_q.tasks import async_task

from django_q_cloudtasks import cancel

from . import scenario


def index(request: HttpRequest) -> HttpResponse:
    """The latest results, the tasks running in Cloud Run jobs, and buttons that enqueue."""
    if request.method == "POST":
        scenario.enqueue()
        messages.success(request, "Enqueued the demo tasks: refresh to watch them finish.")
        return redirect("index")
    return render(
        request,
        "jobs/index.html",
        {
            "successes": Success.objects.order_by("-stopped")[:10],
            "failures": Failure.objects.order_by("-stopped")[:5],
            "in_jobs": scenario.running_in_jobs(),
        },
    )


@require_POST
def long_export(request: HttpRequest) -> HttpResponse:
    task_id = async_task("jobs.tasks.long_export", 300, cluster="long")
    messages.success(request, f"Started a 5-minute export in a Cloud Run job: task {task_id}.")
    return redirect("index")


@require_POST
def cancel_task(request: HttpRequest, task_id: str) -> HttpResponse:
    found = cancel(task_id)
    messages.success(request, f"Task {task_id}: {found.description}.")
    return redirect("index")
