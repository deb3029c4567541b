"""The endpoints Google calls, each only with a valid ID token (``auth.py``):

* ``receive``: Cloud Tasks POSTs each task here. In order, and each step only if the one
  before passed: authenticate the caller, verify the package's django-q signature
  (nothing unsigned is ever unpickled), run the task, and answer 2xx when Cloud Tasks is
  done with it or another status to have it retried.
* ``fire_schedule``: Cloud Tasks delivers a schedule's wake-up here at its slot.
* ``tick``: Cloud Scheduler calls it every minute to plan the coming slots.

An authenticated delivery whose body can never run (another key, not a task) is kept as
a ``DeadLetter`` and answered 2xx: retrying could not change the answer. 429 and 503 are
never used: Cloud Tasks slows the whole queue down for those.
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
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import delays, payloads, scheduling
from .auth import AuthenticationFailed, CertificatesUnavailable, authenticate
from .cloud_logging import RECEIVER_LOGGER, trace_of
from .conf import queue_settings, receiver_settings
from .exceptions import EnqueueError
from .execution import Outcome, Verdict, execute
from .packages import BadPackage, decode, func_name

logger = logging.getLogger("django_q_cloudtasks")
receiver_logger = logging.getLogger(RECEIVER_LOGGER)

STATUS = {
    Verdict.SUCCEEDED: 200,
    Verdict.FAILED: 200,
    Verdict.DUPLICATE: 200,
    Verdict.RETRY: 500,
    Verdict.BUSY: 409,
}


def google_endpoint(view: Callable[[HttpRequest], JsonResponse]) -> Callable[..., JsonResponse]:
    """A POST endpoint for Google's services: no session, no CSRF token, an ID token instead."""

    @login_not_required  # Google authenticates with its ID token, not a session
    @csrf_exempt
    @require_POST
    @transaction.non_atomic_requests  # django-q manages its own connections and transactions
    @functools.wraps(view)
    def authenticated(request: HttpRequest) -> JsonResponse:
        try:
            authenticate(request, receiver_settings())
        except AuthenticationFailed as error:
            logger.warning("Refused a call to %s: %s", request.path, error)
            return _answer(error.status, error=str(error))
        except CertificatesUnavailable as error:
            logger.error("Cannot verify calls to %s: %s", request.path, error)
            return _answer(500, error="The token certificates could not be fetched; retry later.")
        try:
            return view(request)
        except DatabaseError as error:
            # Nothing was marked done: the retry finds the task where this call left it.
            logger.error("The database failed during a call to %s: %s", request.path, error)
            return _answer(500, error="The database is unavailable; retry later.")

    return authenticated


@google_endpoint
def receive(request: HttpRequest) -> JsonResponse:
    by_reference = request.content_type == payloads.REFERENCE_CONTENT_TYPE
    try:
        package = payloads.load(request.body).encode() if by_reference else request.body
        task = decode(package)
    except payloads.PayloadPending as error:
        logger.warning("A task delivery came early: %s", error)
        return _answer(500, error=str(error))
    except payloads.PayloadGone as error:
        logger.error("Abandoned a task delivery: %s", error)
        return _answer(200, status="abandoned", error=str(error))
    except (BadPackage, payloads.BadReference) as error:
        return _reject(request, error)

    started = time.perf_counter()
    if delays.arrived_early(task):
        answer = _forward(package, task)
        _log_delivery(request, task, "forwarded" if answer.status_code == 200 else "retry", started)
        return answer
    outcome = execute(task, previous_attempts=_retry_count(request))
    if by_reference and outcome.done:
        payloads.discard(outcome.task_id)
    _log_delivery(request, task, outcome.verdict.value, started, attempt=outcome.attempt)
    return _answer(STATUS[outcome.verdict], **_describe(outcome))


@google_endpoint
def fire_schedule(request: HttpRequest) -> JsonResponse:
    try:
        slot = scheduling.Slot.unsign(request.body)
    except scheduling.BadSlot as error:
        return _reject(request, error)
    try:
        fired = scheduling.fire(slot)
    except EnqueueError as error:
        logger.error("Schedule %s, slot %s: %s", slot.schedule_id, slot.time, error)
        return _answer(500, error=str(error))
    return _answer(
        200,
        status=fired.value,
        schedule=slot.schedule_id,
        slot=slot.time.isoformat(),
        task=slot.task_id,
    )


@google_endpoint
def tick(request: HttpRequest) -> JsonResponse:
    """One scheduler pass; a non-2xx answer makes Cloud Scheduler report it, and retry."""
    report = scheduling.tick()
    return _answer(500 if report.failed else 200, **report.as_dict())


def _forward(body: bytes, task: dict[str, Any]) -> JsonResponse:
    """Send a task that is still far from its time on to its next hop."""
    from .broker import CloudTasksBroker

    try:
        CloudTasksBroker(task.get("cluster")).enqueue(body.decode("ascii"))
    except EnqueueError as error:
        logger.error("Could not send task %s on towards its time: %s", task["id"], error)
        return _answer(500, error=str(error))
    return _answer(
        200, status="forwarded", task=task["id"], run_after=task["run_after"].isoformat()
    )


def _reject(request: HttpRequest, error: Exception) -> JsonResponse:
    """An authenticated delivery that can never run: retrying cannot change that, so keep
    it as a dead letter and answer 2xx, which stops Cloud Tasks' retries."""
    from .models import DeadLetter

    letter = DeadLetter.objects.create(
        received=timezone.now(),
        path=request.path[:200],
        queue=request.headers.get("X-CloudTasks-QueueName", "")[:500],
        cloud_task=request.headers.get("X-CloudTasks-TaskName", "")[:500],
        reason=str(error),
        content_type=(request.content_type or "")[:200],
        body=request.body,
    )
    logger.error(
        "Rejected a delivery to %s (Cloud Task %r), kept as dead letter %s: %s",
        request.path,
        letter.cloud_task,
        letter.pk,
        error,
    )
    return _answer(200, status="rejected", error=str(error), dead_letter=letter.pk)


def _log_delivery(
    request: HttpRequest,
    task: dict[str, Any],
    outcome: str,
    started: float,
    *,
    attempt: int | None = None,
) -> None:
    """One line per delivered task, its fields as ``extra``: Cloud Logging indexes them
    with ``CloudLoggingFormatter``, and a plain formatter can name them."""
    queue = queue_settings(task.get("cluster"))
    retries = _retry_count(request)
    fields = {
        "task_id": task["id"],
        "task_name": task["name"],
        "func": func_name(task),
        "queue": queue.queue,
        "cluster": queue.cluster,
        "attempt": attempt or retries + 1,
        "outcome": outcome,
        "duration_s": round(time.perf_counter() - started, 3),
        "cloud_tasks_retries": retries,
    }
    level = logging.WARNING if outcome in ("failed", "retry") else logging.INFO
    receiver_logger.log(
        level,
        "Task %(task_name)s (%(func)s) %(outcome)s in %(duration_s).3f s: attempt %(attempt)s, "
        "queue %(queue)s",
        fields,
        extra=fields | trace_of(request.headers.get("X-Cloud-Trace-Context"), queue.project),
    )


def _retry_count(request: HttpRequest) -> int:
    value = request.headers.get("X-CloudTasks-TaskRetryCount", "0")
    return int(value) if value.isascii() and value.isdigit() else 0


def _describe(outcome: Outcome) -> dict[str, Any]:
    return {
        "status": outcome.verdict.value,
        "task": outcome.task_id,
        "cluster": outcome.cluster,
        "attempt": outcome.attempt,
    }


def _answer(http_status: int, **body: Any) -> JsonResponse:
    return JsonResponse(body, status=http_status)
