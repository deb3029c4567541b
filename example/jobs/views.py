from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django_q.models import Failure, Success

from . import scenario


def index(request: HttpRequest) -> HttpResponse:
    """The latest results, and a button that enqueues the demo tasks."""
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
        },
    )
