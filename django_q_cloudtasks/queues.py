"""The Cloud Tasks side of monitoring: each cluster's queue, read and steered.

The admin page and ``cloudtasks_monitor`` show what this module reads: the queue's state,
settings and statistics, and the tasks waiting in it, named as django-q names them. The
pause, resume, run-now and delete actions go through here too. Every API failure becomes
a :class:`QueueUnavailable` that says which queue and why, so a screen can show it
beside the queues that did answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from . import payloads
from .client import get_beta_client, get_client
from .conf import QueueSettings
from .delays import EARLY_TOLERANCE
from .exceptions import CloudTasksError
from .packages import CONTENT_TYPE, BadPackage, CodeMissing, decode, func_name

logger = logging.getLogger("django_q_cloudtasks")

# List and Get calls share a quota of 600 a minute per region: a screen reads one page.
DEFAULT_LIMIT = 100
# Seconds per call: reading a queue takes at most three calls, so a screen, or qmonitor's
# queue_size(), has its answer or its error within 15 s.
API_TIMEOUT = 5.0
# One attempt per call, so that a screen shows an unreachable queue at once: the client's
# defaults retry GetQueue, ListTasks and DeleteTask for 20 s.
ONCE: dict[str, Any] = {"retry": None, "timeout": API_TIMEOUT}


class QueueUnavailable(CloudTasksError):
    """Cloud Tasks did not answer for a queue, or refused."""


@dataclass(frozen=True)
class QueueStats:
    """Cloud Tasks' own statistics of a queue (v2beta3), estimates by Google's account."""

    tasks: int
    oldest_arrival: datetime | None
    executed_last_minute: int | None
    running: int | None
    effective_rate: float | None


@dataclass(frozen=True)
class QueueInfo:
    """A queue as Cloud Tasks holds it: state, limits and retry settings, statistics."""

    settings: QueueSettings
    state: str  # RUNNING, PAUSED or DISABLED
    max_dispatches_per_second: float
    max_burst_size: int
    max_concurrent_dispatches: int
    max_attempts: int
    min_backoff: float
    max_backoff: float
    max_doublings: int
    max_retry_duration: float
    stats: QueueStats | None

    @property
    def paused(self) -> bool:
        return self.state == "PAUSED"


@dataclass(frozen=True)
class WaitingTask:
    """A task waiting in a queue, named after the django-q task it carries."""

    task_id: str  # the Cloud Task id: the django-q id, or a hop's or wake-up's name
    kind: str  # "task", "wake-up" or "unreadable"
    name: str
    func: str
    schedule_time: datetime | None
    # Due later than EARLY_TOLERANCE from now: "Run now" runs it ahead of its time.
    ahead: bool
    dispatch_count: int
    response_count: int
    last_response: str | None
    last_attempt_time: datetime | None


def inspect(qs: QueueSettings) -> QueueInfo:
    """The queue with its statistics; an emulator without them gets a count of its tasks."""
    from google.api_core import exceptions

    request = {"name": qs.queue_path, "read_mask": {"paths": ["*", "stats"]}}
    try:
        queue = _call(
            qs, "read", lambda client: client.get_queue(request=request, **ONCE), beta=True
        )
        stats = _stats(queue.stats)
    except QueueUnavailable as error:
        if not isinstance(error.__cause__, exceptions.MethodNotImplemented):
            raise
        queue = _call(qs, "read", lambda client: client.get_queue(name=qs.queue_path, **ONCE))
        stats = QueueStats(len(_list_tasks(qs, limit=None)), None, None, None, None)
    rate, retry = queue.rate_limits, queue.retry_config
    return QueueInfo(
        settings=qs,
        state=type(queue).State(queue.state).name,
        max_dispatches_per_second=rate.max_dispatches_per_second,
        max_burst_size=rate.max_burst_size,
        max_concurrent_dispatches=rate.max_concurrent_dispatches,
        max_attempts=retry.max_attempts,
        min_backoff=_seconds(retry.min_backoff),
        max_backoff=_seconds(retry.max_backoff),
        max_doublings=retry.max_doublings,
        max_retry_duration=_seconds(retry.max_retry_duration),
        stats=stats,
    )


def waiting_tasks(qs: QueueSettings, *, limit: int | None = DEFAULT_LIMIT) -> list[WaitingTask]:
    """The queue's tasks, soonest first, at most ``limit`` (None: all of them)."""
    from google.cloud.tasks_v2 import Task

    listed = _list_tasks(qs, limit=limit, view=Task.View.FULL)
    described = [_describe(qs, task, timezone.now()) for task in listed]
    return sorted(described, key=lambda task: (task.schedule_time is None, task.schedule_time))


def _list_tasks(qs: QueueSettings, *, limit: int | None, view: Any = None) -> list[Any]:
    """The queue's Cloud Tasks, at most ``limit``; ``view`` FULL includes their bodies."""

    def first_tasks(client: Any) -> list[Any]:
        request: dict[str, Any] = {"parent": qs.queue_path}
        if view is not None:
            request["response_view"] = view
        if limit is not None:
            request["page_size"] = limit
        pager = client.list_tasks(request=request, **ONCE)
        listed = []
        for task in pager:
            listed.append(task)
            if limit is not None and len(listed) >= limit:
                break
        return listed

    return _call(qs, "list the tasks of", first_tasks)  # type: ignore[no-any-return]


def check(qs: QueueSettings) -> None:
    """Read the queue once (GetQueue): raises QueueUnavailable unless Cloud Tasks answers."""
    _call(qs, "read", lambda client: client.get_queue(name=qs.queue_path, **ONCE))


def pause(qs: QueueSettings) -> None:
    """Stop dispatching; tasks can still be enqueued and wait until the queue resumes."""
    _call(qs, "pause", lambda client: client.pause_queue(name=qs.queue_path, **ONCE))


def resume(qs: QueueSettings) -> None:
    _call(qs, "resume", lambda client: client.resume_queue(name=qs.queue_path, **ONCE))


def purge(qs: QueueSettings) -> bool:
    """Delete every task of the queue (Cloud Tasks does it within a minute); False if there
    is no such queue, which has nothing to purge either."""
    from google.api_core import exceptions

    try:
        _call(qs, "purge", lambda client: client.purge_queue(name=qs.queue_path, **ONCE))
    except QueueUnavailable as error:
        if isinstance(error.__cause__, exceptions.NotFound):
            return False
        raise
    return True


def run_now(qs: QueueSettings, task_id: str) -> bool:
    """Dispatch a waiting task at once, even from a paused queue; False if it was gone (it
    ran meanwhile, or was deleted). The receiver runs a task dispatched ahead of its
    schedule time at once, hop or not (``delays.arrival``); a wake-up dispatched early
    enqueues its slot's task, which still waits for its slot."""
    return _on_task(qs, "run a task of", "run_task", task_id)


def delete(qs: QueueSettings, task_id: str) -> bool:
    """Delete a waiting task, and the stored payload it refers to; False if it was gone."""
    if not _on_task(qs, "delete a task of", "delete_task", task_id):
        return False
    payloads.discard(task_id)
    return True


def _on_task(qs: QueueSettings, verb: str, method: str, task_id: str) -> bool:
    """Call ``method`` on one task; False if there is no such task, which a screen that is
    a moment old often asks for: not a queue to create, as ``_unavailable`` would say."""
    from google.api_core import exceptions

    try:
        _call(qs, verb, lambda client: getattr(client, method)(name=qs.task_path(task_id), **ONCE))
    except QueueUnavailable as error:
        if isinstance(error.__cause__, exceptions.NotFound):
            return False
        raise
    return True


def _call(qs: QueueSettings, verb: str, call: Any, *, beta: bool = False) -> Any:
    """``call(client)``, its failures as QueueUnavailable; ``beta``: the v2beta3 client."""
    from google.api_core import exceptions
    from google.auth.exceptions import GoogleAuthError

    try:
        return call((get_beta_client if beta else get_client)(qs.emulator_host))
    except (exceptions.GoogleAPICallError, exceptions.RetryError, GoogleAuthError) as error:
        raise _unavailable(qs, verb, error) from error


def _unavailable(qs: QueueSettings, verb: str, error: Exception) -> QueueUnavailable:
    from google.api_core import exceptions
    from google.auth.exceptions import GoogleAuthError

    hint = ""
    if isinstance(error, exceptions.NotFound):
        hint = " Create the queue: python manage.py cloudtasks_setup"
    elif isinstance(error, exceptions.PermissionDenied):
        hint = " Viewing needs roles/cloudtasks.viewer; pausing, running and deleting, roles/cloudtasks.queueAdmin."
    elif isinstance(error, GoogleAuthError):
        hint = (
            " No credentials to call Cloud Tasks with: on Cloud Run, the service's account; "
            "elsewhere, gcloud auth application-default login (or, for the emulator, set "
            "CLOUD_TASKS_EMULATOR_HOST)."
        )
    elif qs.emulator_host:
        hint = f" Is the emulator at {qs.emulator_host} running?"
    message = (getattr(error, "message", None) or str(error)).rstrip(".")
    return QueueUnavailable(f"Could not {verb} queue {qs.queue_path}: {message}.{hint}")


def _stats(stats: Any) -> QueueStats:
    oldest = stats.oldest_estimated_arrival_time
    return QueueStats(
        tasks=stats.tasks_count,
        oldest_arrival=oldest if oldest and oldest.timestamp() > 0 else None,
        executed_last_minute=stats.executed_last_minute_count,
        running=stats.concurrent_dispatches_count,
        effective_rate=stats.effective_execution_rate,
    )


def _describe(qs: QueueSettings, task: Any, now: datetime) -> WaitingTask:
    kind, name, func = _contents(qs, task.http_request)
    last = task.last_attempt if "last_attempt" in task else None
    schedule_time = task.schedule_time or None
    return WaitingTask(
        task_id=task.name.rsplit("/", 1)[-1],
        kind=kind,
        name=name,
        func=func,
        schedule_time=schedule_time,
        ahead=schedule_time is not None and schedule_time - now > EARLY_TOLERANCE,
        dispatch_count=task.dispatch_count,
        response_count=task.response_count,
        last_response=_response(last.response_status) if last else None,
        last_attempt_time=(last.dispatch_time or None) if last else None,
    )


def _contents(qs: QueueSettings, http_request: Any) -> tuple[str, str, str]:
    """What a task carries: a django-q task, a schedule's wake-up, or something unreadable."""
    from .scheduling import BadSlot, Slot

    body, content_type = http_request.body, http_request.headers.get("Content-Type")
    try:
        if http_request.url == qs.schedule_url:
            slot = Slot.unsign(body)
            return "wake-up", f"schedule {slot.schedule_id}", f"slot {slot.time.isoformat()}"
        if content_type == payloads.REFERENCE_CONTENT_TYPE:
            return ("task", *payloads.named(body))  # the package stays in the database
        if content_type != CONTENT_TYPE:
            raise BadPackage(f"content type {content_type!r}")
        task = decode(body)
        return "task", str(task["name"]), func_name(task)
    except (BadPackage, CodeMissing, BadSlot, payloads.PayloadError) as error:
        return "unreadable", "", str(error)


def _response(status: Any) -> str:
    import grpc

    if status.code == 0:
        return "OK"
    names = {code.value[0]: code.name for code in grpc.StatusCode}
    return str(status.message or names.get(status.code, status.code))


def _seconds(duration: Any) -> float:
    return duration.total_seconds() if duration else 0.0
