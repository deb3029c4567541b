"""The endpoints Google calls, each only with a valid ID token, or on App Engine for an App
Engine task (``receiver/auth.py``):

* ``receive``: Cloud Tasks POSTs each task here. In order, and each step only if the one
  before passed: authenticate the caller, verify the package's django-q signature
  (nothing unsigned is ever unpickled), run the task, and answer 2xx when Cloud Tasks is
  done with it or another status to have it retried.
* ``fire_schedule``: Cloud Tasks delivers a schedule's wake-up here at its slot.
* ``tick``: Cloud Scheduler calls it every minute to plan the coming slots; always with a
  token, since it is no task and has no signed body.

What becomes of each delivery is decided in ``receiver/delivery.py``; here it is authenticated,
answered and logged. An authenticated delivery whose body can never run (another key,
not a task) is kept as a ``DeadLetter`` (``receiver/deadletters.py``) and answered 2xx: retrying
could not change the answer. 429 and 503 are never used: Cloud Tasks slows the whole
queue down for those.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import scheduling
from .cloud_logging import RECEIVER_LOGGER, trace_of
from .conf import queue_settings, receiver_settings
from .exceptions import AuthenticationFailed, CertificatesUnavailable
from .receiver import deadletters
from .receiver.auth import Caller, authenticate
from .receiver.delivery import Delivery, Result, take_task, take_wake_up
from .wire import func_name

logger = logging.getLogger("django_q_cloudtasks")
receiver_logger = logging.getLogger(RECEIVER_LOGGER)


def google_endpoint(
    *, app_engine_tasks: bool
) -> Callable[[Callable[[HttpRequest, Caller], JsonResponse]], Callable[..., JsonResponse]]:
    """A POST endpoint for Google's services: no session, no CSRF token, an ID token instead
    (or, for an endpoint Cloud Tasks' App Engine tasks call, App Engine's word)."""

    def decorate(
        view: Callable[[HttpRequest, Caller], JsonResponse],
    ) -> Callable[..., JsonResponse]:
        @login_not_required  # Google authenticates with its ID token, not a session
        @csrf_exempt
        @require_POST
        @transaction.non_atomic_requests  # django-q manages its own connections
        @functools.wraps(view)
        def authenticated(request: HttpRequest) -> JsonResponse:
            answer = _call_authenticated(view, request, app_engine_tasks=app_engine_tasks)
            # Each 4xx or 5xx answer was logged once, at its level, saying why: Django's own
            # line for it ("Internal Server Error: /_tasks/") would only repeat it.
            answer._has_been_logged = True  # type: ignore[attr-defined]
            return answer

        return authenticated

    return decorate


def _call_authenticated(
    view: Callable[[HttpRequest, Caller], JsonResponse],
    request: HttpRequest,
    *,
    app_engine_tasks: bool,
) -> JsonResponse:
    """The view's answer to an authenticated caller, or the refusal; each 4xx or 5xx logged."""
    try:
        caller = authenticate(request, receiver_settings(), app_engine_tasks=app_engine_tasks)
    except AuthenticationFailed as error:
        # The reason is fixed text; what the caller sent appears only escaped, and cut.
        logger.warning("Refused a call to %s: %s%s", request.path, error, error.detail)
        return JsonResponse({"error": str(error)}, status=error.status)
    except CertificatesUnavailable as error:
        logger.error("Cannot verify calls to %s: %s", request.path, error)
        return JsonResponse(
            {"error": "The token certificates could not be fetched; retry later."}, status=500
        )
    try:
        return view(request, caller)
    except DatabaseError as error:
        # Nothing was marked done: the retry finds the task where this call left it.
        logger.error("The database failed during a call to %s: %s", request.path, error)
        return JsonResponse({"error": "The database is unavailable; retry later."}, status=500)


@google_endpoint(app_engine_tasks=True)
def receive(request: HttpRequest, caller: Caller) -> JsonResponse:
    started = time.perf_counter()
    delivery = Delivery.from_request(request, app_engine_queue=caller.app_engine_queue)
    result = take_task(delivery)
    answer = _answer(request, delivery, result)
    if result.task is not None:
        _log_delivery(request, delivery, result, result.task, started)
    return answer


@google_endpoint(app_engine_tasks=True)
def fire_schedule(request: HttpRequest, caller: Caller) -> JsonResponse:
    delivery = Delivery.from_request(request, app_engine_queue=caller.app_engine_queue)
    return _answer(request, delivery, take_wake_up(delivery))


@google_endpoint(app_engine_tasks=False)
def tick(request: HttpRequest, caller: Caller) -> JsonResponse:
    """One scheduler pass; a non-2xx answer makes Cloud Scheduler report it, and retry."""
    report = scheduling.tick()
    return JsonResponse(report.as_dict(), status=500 if report.failed else 200)


# What the receiver's line says of each outcome of a delivered task.
OUTCOMES = {
    "succeeded": "succeeded in %(duration_s).3f s",
    "failed": "failed for good in %(duration_s).3f s",
    "retry": "failed in %(duration_s).3f s; Cloud Tasks will deliver it again",
    "cancelled": "was cancelled (%(duration_s).3f s)",
    "duplicate": "had already run: a duplicate delivery, nothing ran",
    "busy": "is running in another delivery: nothing ran, Cloud Tasks will come back",
    "launched": "went to a new Cloud Run job execution in %(duration_s).3f s",
    "running": "is running in a Cloud Run job execution: Cloud Tasks will come back",
    "forwarded": "waits: sent on to its next hop",
    "not_launched": "could not start a Cloud Run job execution, so did not run (%(error)s); "
    "Cloud Tasks will deliver it again",
    "not_forwarded": "could not be sent on to its next hop (%(error)s); Cloud Tasks will "
    "deliver it again",
}
# The outcomes where the task did not run: Cloud Run or Cloud Tasks refused what it needed
# (or the jobs extra is missing). Errors, as an operator has to act.
NOT_STARTED = ("not_launched", "not_forwarded")


def _answer(request: HttpRequest, delivery: Delivery, result: Result) -> JsonResponse:
    """The result as JSON; a rejected delivery is kept as a dead letter first."""
    body = result.answer()
    if result.rejected:
        body["dead_letter"] = deadletters.keep(request.path, delivery, result.error or "").pk
    return JsonResponse(body, status=result.http_status)


def _log_delivery(
    request: HttpRequest,
    delivery: Delivery,
    result: Result,
    task: dict[str, Any],
    started: float,
) -> None:
    """One line per delivered task, its fields as ``extra``: Cloud Logging indexes them
    with ``CloudLoggingFormatter``, and a plain formatter can name them."""
    queue = queue_settings(task.get("cluster"))
    fields = {
        "task_id": task["id"],
        "task_name": task["name"],
        "func": func_name(task),
        # Which of the cluster's queues it came through (X-CloudTasks-QueueName), when it is
        # one of them: the header is the caller's text.
        "queue": delivery.queue if delivery.queue in queue.queue_ids else queue.queue,
        "cluster": queue.cluster,
        "attempt": result.details.get("attempt") or delivery.retries + 1,
        "outcome": result.outcome,
        "duration_s": round(time.perf_counter() - started, 3),
        "cloud_tasks_retries": delivery.retries,
    }
    if result.outcome in NOT_STARTED:
        fields["error"] = result.error
        level = logging.ERROR
    elif result.outcome in ("failed", "retry"):
        level = logging.WARNING
    else:
        level = logging.INFO
    said = OUTCOMES.get(result.outcome, "ended %(outcome)s in %(duration_s).3f s")
    receiver_logger.log(
        level,
        f"Task %(task_name)s (%(func)s) {said}: attempt %(attempt)s, queue %(queue)s",
        fields,
        extra=fields | trace_of(request.headers.get("X-Cloud-Trace-Context"), queue.project),
    )
