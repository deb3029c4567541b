"""The receive side: what becomes of one delivery, from its body to its answer.

The views (``views.py``) authenticate the caller, then hand the delivery to
:func:`take_task` or :func:`take_wake_up` and turn the :class:`Result` into an HTTP
answer; replaying a dead letter (``deadletters.py``) takes the same steps. A task:

1. is read: a reference's package loaded from the database (``payloads.py``), and its
   django-q signature verified before anything is unpickled (``wire.py``);
2. runs with its cluster's settings, or the main cluster's when ``Q_CLUSTER`` does not
   define its cluster, as a qcluster started under that name does;
3. is sent on to its next hop when its time has not come (``delays.py``), unless it was
   asked for ahead of its time (the admin's "Run now"), or ran on such a request already
   and failed: its retries run at once too;
4. runs once (``execution.py``), and the verdict becomes the answer; a job cluster's task
   runs in a Cloud Run job execution instead, which the delivery starts or looks after
   (``launcher.py``).

A body that can never run is *rejected*: the view keeps it as a dead letter and answers
2xx, since retrying could not change that. A signed package that names code this
revision lacks is retried instead, up to ``MISSING_CODE_RETRIES`` times: during a rollout
or a traffic split, a later delivery may reach a revision that has it.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from .. import payloads, scheduling, wire
from ..broker import CloudTasksBroker
from ..conf import QueueSettings, cluster_names, queue_settings
from ..delays import EARLY_TOLERANCE, Arrival, arrival
from ..exceptions import (
    BadBody,
    CodeMissing,
    EnqueueError,
    ExecutionError,
    MissingExtra,
    PayloadGone,
    PayloadPending,
)
from ..models import Receipt
from . import launcher
from .execution import Verdict, execute

logger = logging.getLogger("django_q_cloudtasks")

# Deliveries of a package naming missing code before it becomes a dead letter: with Cloud
# Tasks' default backoff (0.1 s, doubling up to 3,600 s), 8.8 hours from the first to the
# last, time for a rollout to finish or a traffic split to send one to the new revision.
MISSING_CODE_RETRIES = 24
# The numbers Cloud Tasks sends in its headers: a count, and seconds since the epoch.
COUNT = re.compile(r"[0-9]{1,9}")
EPOCH_SECONDS = re.compile(r"[0-9]{1,11}(\.[0-9]{1,9})?")

HTTP_STATUS = {
    Verdict.SUCCEEDED: 200,
    Verdict.FAILED: 200,
    Verdict.CANCELLED: 200,
    Verdict.DUPLICATE: 200,
    Verdict.RETRY: 500,
    Verdict.BUSY: 409,
    # A job execution runs the task: Cloud Tasks comes back, after its backoff, to see.
    Verdict.LAUNCHED: 409,
    Verdict.RUNNING: 409,
}


@dataclass(frozen=True)
class Delivery:
    """One delivery: its body, and what Cloud Tasks' headers say of the Cloud Task.

    The headers are informational, never an identity: the caller was authenticated by its
    token, or by App Engine (``receiver/auth.py``), and the body is trusted only once its
    own signature checks out.
    """

    body: bytes
    content_type: str = ""
    retries: int = 0  # earlier attempts of this Cloud Task
    cloud_task: str = ""  # the Cloud Task's id
    queue: str = ""
    scheduled: datetime | None = None  # the Cloud Task's own schedule time
    replayed: bool = False  # an operator's replay of a dead letter
    # The queue App Engine vouched for, for a task that came with no token.
    app_engine_queue: str | None = None

    @classmethod
    def from_request(cls, request: HttpRequest, *, app_engine_queue: str | None = None) -> Delivery:
        """What Cloud Tasks' headers say: ``X-CloudTasks-*`` for an HTTP task, the same as
        ``X-AppEngine-*`` for an App Engine task."""
        app_engine = (
            "X-AppEngine-TaskName" in request.headers
            and "X-CloudTasks-TaskName" not in request.headers
        )
        prefix = "X-AppEngine-" if app_engine else "X-CloudTasks-"

        def header(name: str) -> str:
            return request.headers.get(prefix + name, "")

        retries, eta = header("TaskRetryCount"), header("TaskETA")
        return cls(
            body=request.body,
            content_type=request.content_type or "",
            retries=int(retries) if COUNT.fullmatch(retries) else 0,
            cloud_task=header("TaskName"),
            queue=header("QueueName"),
            scheduled=(
                datetime.fromtimestamp(float(eta), UTC) if EPOCH_SECONDS.fullmatch(eta) else None
            ),
            app_engine_queue=app_engine_queue,
        )

    def forced(self, now: datetime) -> bool:
        """Whether someone asked for this delivery ahead of the Cloud Task's time: Cloud
        Tasks' RunTask (the admin's "Run now"), or a replay."""
        return self.replayed or (
            self.scheduled is not None and self.scheduled - now > EARLY_TOLERANCE
        )


@dataclass(frozen=True)
class Result:
    """What became of a delivery: the HTTP status that tells Cloud Tasks, and the answer."""

    http_status: int
    status: str | None = None  # succeeded, failed, duplicate, retry, busy, forwarded...
    error: str | None = None
    task: dict[str, Any] | None = None  # the task, once its package was verified
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def rejected(self) -> bool:
        """The body can never run: the view keeps it as a dead letter."""
        return self.status == "rejected"

    @property
    def final(self) -> bool:
        """Cloud Tasks is done with the delivery: it answered 2xx and was not rejected."""
        return 200 <= self.http_status < 300 and not self.rejected

    @property
    def outcome(self) -> str:
        return self.status or "retry"  # a result without a status is a 500

    def answer(self) -> dict[str, Any]:
        """The JSON body of the answer."""
        body = {"status": self.status, **self.details, "error": self.error}
        return {key: value for key, value in body.items() if value is not None}


def take_task(delivery: Delivery) -> Result:
    """Read, then forward or run, one delivered task."""
    by_reference = delivery.content_type == wire.REFERENCE_CONTENT_TYPE
    reference = None
    try:
        if by_reference:
            reference = wire.read_reference(delivery.body)
            package = payloads.load(reference).encode()
        else:
            package = delivery.body
        task = wire.read_package(package)
    except (PayloadPending, PayloadGone) as error:
        # The package goes once the task is done: a delivery after that is a duplicate.
        if reference is not None and _finished(reference.task_id):
            return Result(200, "duplicate", details={"task": reference.task_id})
        if isinstance(error, PayloadPending):
            logger.warning("A task delivery came early: %s", error)
            return Result(500, error=str(error))
        logger.error("Abandoned a task delivery: %s", error)
        return Result(200, "abandoned", str(error))
    except CodeMissing as error:
        return _missing_code(delivery, error)
    except BadBody as error:
        return Result(200, "rejected", str(error))

    queue = _cluster_of(task)
    if misrouted := _misrouted(delivery, task, queue):
        return Result(200, "rejected", misrouted)
    task["cluster"] = queue.cluster
    now = timezone.now()
    how = arrival(task, now=now, forced=delivery.forced(now), cloud_task=delivery.cloud_task)
    if how is Arrival.HOP and Receipt.objects.filter(task_id=task["id"]).exists():
        how = Arrival.FORCED  # it ran on request, and failed: its retries run now too
    if how is Arrival.HOP:
        return _forward(package, task, queue)
    if queue.runs_in_job and delivery.replayed:
        # Cloud Tasks looks after a job's execution: a replay hands the task back to it,
        # under a name of its own, as the task's own stays taken for a while.
        return _forward(package, task, queue, name=f"{task['id']}-replayed-{uuid.uuid4().hex[:8]}")
    if how is not Arrival.DUE:
        _log_early(task, how, now)
    if queue.runs_in_job:
        if not by_reference:  # enqueued before its cluster ran in a job
            payloads.store(task["id"], package.decode("ascii"))
        try:
            outcome = launcher.supervise(task, cloud_task=delivery.cloud_task)
        except (ExecutionError, MissingExtra) as error:  # Cloud Run refused; E021
            return Result(500, "not_launched", str(error), task=task)
    else:
        outcome = execute(task, previous_attempts=delivery.retries)
    if (by_reference or queue.runs_in_job) and outcome.done:
        payloads.discard(outcome.task_id)
    details = {"task": outcome.task_id, "cluster": outcome.cluster, "attempt": outcome.attempt}
    if outcome.execution:
        details["execution"] = outcome.execution
    return Result(HTTP_STATUS[outcome.verdict], outcome.verdict.value, task=task, details=details)


def take_wake_up(delivery: Delivery) -> Result:
    """Fire the schedule slot a wake-up carries (``scheduling.py``)."""
    try:
        slot = scheduling.Slot.unsign(delivery.body)
    except BadBody as error:
        return Result(200, "rejected", str(error))
    try:
        fired = scheduling.fire(slot)
    except EnqueueError as error:
        logger.error("Schedule %s, slot %s: %s", slot.schedule_id, slot.time, error)
        return Result(500, error=str(error))
    details = {"schedule": slot.schedule_id, "slot": slot.time.isoformat(), "task": slot.task_id}
    return Result(200, fired.value, details=details)


def _finished(task_id: str) -> bool:
    return bool(Receipt.objects.filter(task_id=task_id, state=Receipt.State.DONE).exists())


def _missing_code(delivery: Delivery, error: CodeMissing) -> Result:
    if delivery.replayed:
        return Result(200, "rejected", f"{error} Deploy the code it needs, then replay it.")
    if delivery.retries + 1 >= MISSING_CODE_RETRIES:
        return Result(
            200,
            "rejected",
            f"{error} It was delivered {delivery.retries + 1} times. Deploy the code it "
            "needs, then replay this dead letter.",
        )
    logger.warning(
        "Cloud Task %r (delivery %d of at most %d): %s",
        delivery.cloud_task,
        delivery.retries + 1,
        MISSING_CODE_RETRIES,
        error,
    )
    return Result(500, "retry", f"{error} Cloud Tasks delivers it again.")


def _forward(
    package: bytes, task: dict[str, Any], queue: QueueSettings, *, name: str | None = None
) -> Result:
    """Send a task that is still far from its time on to its next hop; with ``name``, to a
    Cloud Task of that name, due now."""
    try:
        CloudTasksBroker(queue.cluster).forward(package.decode("ascii"), task, name=name)
    except EnqueueError as error:
        return Result(500, "not_forwarded", str(error), task=task)
    details: dict[str, Any] = {"task": task["id"]}
    if name is None:
        details["run_after"] = task["run_after"].isoformat()
    else:
        details["cloud_task"] = name
    return Result(200, "forwarded", task=task, details=details)


def _log_early(task: dict[str, Any], how: Arrival, now: datetime) -> None:
    ahead = _rounded(task["run_after"] - now)
    if how is Arrival.FORCED:
        logger.info(
            "Task %s (%s) runs now, %s before its time: it was asked for ahead of it.",
            task["name"],
            wire.func_name(task),
            ahead,
        )
    else:
        logger.warning(
            "Task %s (%s) came %s before its time by this server's clock, as its last hop, "
            'which cannot wait under its own name: it runs now. A "Run now", or is a clock '
            "wrong?",
            task["name"],
            wire.func_name(task),
            ahead,
        )


_unknown_clusters: set[str] = set()
_unknown_clusters_lock = threading.Lock()


def _cluster_of(task: dict[str, Any]) -> QueueSettings:
    """The settings a task runs with: its cluster's; for a cluster ``Q_CLUSTER`` does not
    define (removed from ``ALT_CLUSTERS``, say), the main cluster's, said once per name."""
    name = task.get("cluster")
    if name is not None and name not in cluster_names():
        with _unknown_clusters_lock:
            first = name not in _unknown_clusters
            _unknown_clusters.add(name)
        if first:
            logger.warning(
                "Q_CLUSTER defines no cluster %r (removed from ALT_CLUSTERS?): its tasks run "
                "with the main cluster's settings, as a qcluster under that name would.",
                name,
            )
    return queue_settings(name)


def _misrouted(delivery: Delivery, task: dict[str, Any], queue: QueueSettings) -> str | None:
    """Why a task App Engine vouched for may not run here, if it may not: it must have come
    through its own cluster's queue, as an App Engine task. (A task of a cluster no longer
    in ``Q_CLUSTER`` runs with the main cluster's settings, as any delivery would.)"""
    name = task.get("cluster")
    if delivery.app_engine_queue is None or (name is not None and name not in cluster_names()):
        return None
    if queue.app_engine is not None and delivery.app_engine_queue in queue.queue_ids:
        return None
    return (
        f"The task of cluster {queue.cluster!r} came as an App Engine task of queue "
        f"{delivery.app_engine_queue!r}, where its cluster does not send its tasks."
    )


def _rounded(duration: timedelta) -> timedelta:
    return timedelta(seconds=round(duration.total_seconds()))
