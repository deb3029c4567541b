"""Each cluster's Cloud Tasks queue (or queues, for a cluster with shards: one view of
them all), read and steered: what the admin's queues page,
``cloudtasks_monitor`` and the broker's ``queue_size()``, ``lock_size()`` and ``ping()``
show, and the pause, resume and purge they do.

Every call takes one attempt (``api.AT_ONCE``): a screen shows an unreachable queue at
once, and reading a queue takes at most three calls, within 15 s. Every failure becomes a
:class:`QueueUnavailable` that says which queue, why, and what to do, so that a screen can
show it beside the queues that did answer.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from .. import wire
from ..conf import QueueSettings
from ..delays import EARLY_TOLERANCE
from ..exceptions import BadBody, CodeMissing, QueueUnavailable
from . import api
from .client import tasks_beta_client, tasks_client

logger = logging.getLogger("django_q_cloudtasks")

# List and Get calls share a quota of 600 a minute per region: a screen reads one page.
DEFAULT_LIMIT = 100
VIEWER = "roles/cloudtasks.viewer"
ADMIN = "roles/cloudtasks.queueAdmin"


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
    django_q_id: str  # the django-q task's id, for a task; "" for the others
    schedule_time: datetime | None
    # Due later than EARLY_TOLERANCE from now: "Run now" runs it ahead of its time.
    ahead: bool
    dispatch_count: int
    response_count: int
    last_response: str | None
    last_attempt_time: datetime | None


def inspect(qs: QueueSettings) -> QueueInfo:
    """The cluster's queue with its statistics, its shards' added up: an emulator without
    statistics gets a count of its tasks. The limits and retries are the first queue's:
    ``cloudtasks_setup`` gives every shard the same."""
    shards = [_inspect(qs, queue_path) for queue_path in qs.queue_paths]
    if len(shards) == 1:
        return shards[0]
    # The worst state of its queues: part of a cluster paused is a cluster to look at.
    state = max((shard.state for shard in shards), key=lambda state: _STATE_ORDER.get(state, 1))
    counted = [shard.stats for shard in shards if shard.stats is not None]
    return dataclasses.replace(shards[0], state=state, stats=_added(counted) if counted else None)


def _inspect(qs: QueueSettings, queue_path: str) -> QueueInfo:
    from google.api_core import exceptions  # see api.py's docstring

    try:
        queue = _call(
            qs,
            "read",
            "get_queue",
            queue_path,
            beta=True,
            request={"name": queue_path, "read_mask": {"paths": ["*", "stats"]}},
        )
        stats = _stats(queue.stats)
    except QueueUnavailable as error:
        if not isinstance(error.__cause__, exceptions.MethodNotImplemented):
            raise
        queue = _call(qs, "read", "get_queue", queue_path, name=queue_path)
        stats = QueueStats(len(_list_tasks(qs, queue_path, limit=None)), None, None, None, None)
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


_STATE_ORDER = {"RUNNING": 0, "STATE_UNSPECIFIED": 1, "PAUSED": 2, "DISABLED": 3}


def _added(stats: list[QueueStats]) -> QueueStats:
    def total(values: list[Any]) -> Any:
        return None if any(value is None for value in values) else sum(values)

    arrivals = [s.oldest_arrival for s in stats if s.oldest_arrival is not None]
    return QueueStats(
        tasks=sum(s.tasks for s in stats),
        oldest_arrival=min(arrivals) if arrivals else None,
        executed_last_minute=total([s.executed_last_minute for s in stats]),
        running=total([s.running for s in stats]),
        effective_rate=total([s.effective_rate for s in stats]),
    )


def check(qs: QueueSettings) -> None:
    """Read each queue once (GetQueue): raises QueueUnavailable unless Cloud Tasks answers."""
    for queue_path in qs.queue_paths:
        _call(qs, "read", "get_queue", queue_path, name=queue_path)


def waiting_tasks(qs: QueueSettings, *, limit: int | None = DEFAULT_LIMIT) -> list[WaitingTask]:
    """The cluster's waiting tasks, in all its queues, soonest first, at most ``limit``
    (None: all of them)."""
    listed = [
        task
        for queue_path in qs.queue_paths
        for task in _list_tasks(qs, queue_path, limit=limit, full=True)
    ]
    described = [_describe(qs, task, timezone.now()) for task in listed]
    described.sort(key=lambda task: (task.schedule_time is None, task.schedule_time))
    return described if limit is None else described[:limit]


def pause(qs: QueueSettings) -> None:
    """Stop dispatching; tasks can still be enqueued and wait until the queue resumes."""
    for queue_path in qs.queue_paths:
        _call(qs, "pause", "pause_queue", queue_path, name=queue_path)


def resume(qs: QueueSettings) -> None:
    for queue_path in qs.queue_paths:
        _call(qs, "resume", "resume_queue", queue_path, name=queue_path)


def purge(qs: QueueSettings) -> bool:
    """Delete every task of the cluster's queues (Cloud Tasks does it within a minute);
    False if there is no such queue, which has nothing to purge either."""
    from google.api_core import exceptions  # see api.py's docstring

    purged = False
    for queue_path in qs.queue_paths:
        try:
            _call(qs, "purge", "purge_queue", queue_path, name=queue_path)
        except QueueUnavailable as error:
            if isinstance(error.__cause__, exceptions.NotFound):
                continue
            raise
        purged = True
    return purged


def _list_tasks(
    qs: QueueSettings, queue_path: str, *, limit: int | None, full: bool = False
) -> list[Any]:
    """The queue's Cloud Tasks, at most ``limit``; ``full``: with their bodies."""
    request: dict[str, Any] = {"parent": queue_path}
    if full:
        request["response_view"] = "FULL"
    if limit is not None:
        request["page_size"] = limit
    pager = _call(qs, "list the tasks of", "list_tasks", queue_path, request=request)
    listed = []
    try:
        for task in pager:  # further pages are further calls
            listed.append(task)
            if limit is not None and len(listed) >= limit:
                break
    except api.failures() as error:
        raise _unavailable(qs, queue_path, "list the tasks of", error) from error
    return listed


def _call(
    qs: QueueSettings,
    verb: str,
    method: str,
    queue_path: str,
    *,
    beta: bool = False,
    **request: Any,
) -> Any:
    """``method`` of the v2 client (``beta``: v2beta3), under the one policy."""
    try:
        client = (tasks_beta_client if beta else tasks_client)(qs.emulator_host)
        return api.call(getattr(client, method), api.AT_ONCE, **request)
    except api.failures() as error:
        raise _unavailable(qs, queue_path, verb, error) from error


def _unavailable(
    qs: QueueSettings, queue_path: str, verb: str, error: BaseException
) -> QueueUnavailable:
    needs = VIEWER if verb in ("read", "list the tasks of") else ADMIN
    return QueueUnavailable(
        f"Could not {verb} queue {queue_path}: " + api.explain(error, qs, api.AT_ONCE, needs=needs)
    )


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
    kind, name, func, django_q_id = _contents(qs, *_request(task))
    last = task.last_attempt if "last_attempt" in task else None
    schedule_time = task.schedule_time or None
    return WaitingTask(
        task_id=task.name.rsplit("/", 1)[-1],
        kind=kind,
        name=name,
        func=func,
        django_q_id=django_q_id,
        schedule_time=schedule_time,
        ahead=schedule_time is not None and schedule_time - now > EARLY_TOLERANCE,
        dispatch_count=task.dispatch_count,
        response_count=task.response_count,
        last_response=_response(last.response_status) if last else None,
        last_attempt_time=(last.dispatch_time or None) if last else None,
    )


def _request(task: Any) -> tuple[Any, str]:
    """A task's request, and where it goes: a URL, or a path inside App Engine."""
    if "app_engine_http_request" in task:
        return task.app_engine_http_request, task.app_engine_http_request.relative_uri
    return task.http_request, task.http_request.url


def _contents(qs: QueueSettings, request: Any, destination: str) -> tuple[str, str, str, str]:
    """What a task carries (a django-q task, a schedule's wake-up, or something unreadable):
    its kind, name, function and django-q id. A big task is named by its reference: its
    package, megabytes, stays in the database."""
    body, content_type = request.body, request.headers.get("Content-Type")
    try:
        if destination == qs.schedule_url:
            schedule_id, slot = wire.read_wake_up(body)
            return "wake-up", f"schedule {schedule_id}", f"slot {slot.isoformat()}", ""
        if content_type == wire.REFERENCE_CONTENT_TYPE:
            reference = wire.read_reference(body)
            return (
                "task",
                reference.name or reference.task_id,
                reference.func or ("(its package is kept in the database)"),
                reference.task_id,
            )
        if content_type != wire.PACKAGE_CONTENT_TYPE:
            return "unreadable", "", f"content type {content_type!r}", ""
        task = wire.read_package(body)
        return "task", str(task["name"]), wire.func_name(task), str(task["id"])
    except (BadBody, CodeMissing) as error:
        return "unreadable", "", str(error), ""


def _response(status: Any) -> str:
    import grpc  # loaded with the client library already

    if status.code == 0:
        return "OK"
    names = {code.value[0]: code.name for code in grpc.StatusCode}
    return str(status.message or names.get(status.code, status.code))


def _seconds(duration: Any) -> float:
    return duration.total_seconds() if duration else 0.0
