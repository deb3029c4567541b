"""The execution side: run one delivered task with django-q's own worker and monitor.

``django_q.worker.worker`` and ``django_q.monitor.monitor`` loop over anything with
``get`` and ``put``. Handing them a one-task mailbox runs exactly that task inside the
request, with everything django-q does around it: the pre_execute and post_execute
signals, the timeout, hooks, chains, groups, cached results and the Success or Failure
row. The receipt around the run keeps a task from running twice; its lease, renewed while
the task runs (``leases.py``), lets a retry take over from a delivery that died.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Success, Task
from django_q.monitor import monitor
from django_q.worker import worker

from ..broker import CloudTasksBroker
from ..conf import QueueSettings, queue_settings
from ..models import Claim, Receipt
from .leases import LEASE, keeper
from .status import writer


class Verdict(enum.Enum):
    SUCCEEDED = "succeeded"  # done: Cloud Tasks forgets the task
    FAILED = "failed"  # done: no attempts left, or failures are acknowledged
    RETRY = "retry"  # failed: Cloud Tasks should deliver it again
    DUPLICATE = "duplicate"  # it had already finished: nothing ran
    BUSY = "busy"  # another delivery is running it: nothing ran


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    task_id: str
    cluster: str
    attempt: int | None = None

    @property
    def done(self) -> bool:
        return self.verdict in (Verdict.SUCCEEDED, Verdict.FAILED, Verdict.DUPLICATE)


class _Mailbox:
    """The queue django-q's loops read from and write to; "STOP" when empty."""

    def __init__(self, *items: Any) -> None:
        self.items = list(items)

    def get(self) -> Any:
        return self.items.pop(0) if self.items else "STOP"

    def put(self, item: Any) -> None:
        self.items.append(item)


class _Timer:
    """Stands in for the cluster's shared-memory timer; nothing watches it here."""

    value = -1

    def get_lock(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()


def execute(task: dict[str, Any], *, previous_attempts: int = 0) -> Outcome:
    """Run a decoded django-q task once, unless it already ran or is running elsewhere.

    ``previous_attempts`` is Cloud Tasks' retry count, the attempt number of results
    that leave no row (cached tasks).
    """
    queue = queue_settings(task.get("cluster"))
    task["cluster"] = queue.cluster  # the Task row records the cluster that ran it
    task_id, holder = task["id"], uuid.uuid4().hex
    claim = Receipt.objects.claim(task_id, queue.cluster, holder, LEASE)
    if claim is Claim.BUSY:
        return Outcome(Verdict.BUSY, task_id, queue.cluster)
    if claim is Claim.DONE:
        return Outcome(Verdict.DUPLICATE, task_id, queue.cluster)
    if claim is Claim.RESUMED and _succeeded_before(task_id):
        Receipt.objects.finish(task_id, holder)
        return Outcome(Verdict.DUPLICATE, task_id, queue.cluster)

    # Past the dispatch deadline Cloud Tasks has retried already: stop holding the claim.
    deadline = timedelta(seconds=queue.deadline_for(task.get("timeout", queue.timeout)))
    with (
        _released_on_error(task_id, holder),
        keeper.holding(task_id, holder, until=timezone.now() + deadline),
        writer.in_flight(),  # qinfo and qmonitor count it (status.py)
        _watching_saves() as saved,
    ):
        _run(task, queue)
        outcome = _judge(task, queue, previous_attempts, saved.get(task_id))
    if outcome.done:
        Receipt.objects.finish(task_id, holder)
    else:
        Receipt.objects.release(task_id, holder)
    return outcome


def _run(task: dict[str, Any], queue: QueueSettings) -> None:
    results = _Mailbox()
    worker(_Mailbox(task), results, _Timer(), timeout=queue.timeout)
    # The worker puts the same dict it was given, now holding the result.
    monitor(results, broker=CloudTasksBroker(queue.cluster))


class _QuietDjangoQ(logging.Filter):
    """Run one task at a time, django-q's worker and monitor log six INFO lines for it: each
    starting, processing, stopping. The receiver's own line says the same in one, so in
    the receiver those are dropped; django-q's warnings and errors, a failed task's
    traceback among them, are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or getattr(_running, "saves", None) is None


def quiet_django_q() -> None:
    """Drop django-q's INFO lines about each task the receiver runs (at start-up: apps.py)."""
    django_q_logger = logging.getLogger("django-q")
    if not any(isinstance(f, _QuietDjangoQ) for f in django_q_logger.filters):
        django_q_logger.addFilter(_QuietDjangoQ())


def _judge(
    task: dict[str, Any], queue: QueueSettings, previous_attempts: int, saved: _Row | None
) -> Outcome:
    """Whether Cloud Tasks is done with the task, from the result django-q just stored:
    ``saved``, the row as this thread saved it, if it did."""
    task_id, success = task["id"], bool(task["success"])
    must_save = not task.get("cached") and (not success or task.get("save", Conf.SAVE_LIMIT >= 0))
    if must_save and (saved is None or saved.success != success):
        # No save seen (django-q logs and swallows errors while saving, and leaves a row
        # that succeeded before as it is): read what the database holds.
        found = Task.objects.filter(id=task_id).values_list("success", "attempt_count").first()
        saved = _Row(*found) if found else None
        if saved is None or saved.success != success:
            # Without the row the result would be lost: ask for the task again.
            return Outcome(Verdict.RETRY, task_id, queue.cluster)
    attempt = saved.attempt_count if must_save and saved else previous_attempts + 1
    if success:
        return Outcome(Verdict.SUCCEEDED, task_id, queue.cluster, attempt)
    out_of_attempts = 0 < queue.max_attempts <= attempt
    if task.get("ack_failure") or queue.ack_failures or out_of_attempts:
        return Outcome(Verdict.FAILED, task_id, queue.cluster, attempt)
    return Outcome(Verdict.RETRY, task_id, queue.cluster, attempt)


@dataclass(frozen=True)
class _Row:
    success: bool
    attempt_count: int


# The thread's task in the receiver, while it runs: ``saves`` holds the Task rows saved.
_running = threading.local()


@contextlib.contextmanager
def _watching_saves() -> Iterator[dict[str, _Row]]:
    """The Task rows this thread saves while the block runs, by id: django-q's monitor
    saves the result in this thread, so the verdict needs no query to read it back."""
    rows: dict[str, _Row] = {}
    _running.saves = rows
    try:
        yield rows
    finally:
        _running.saves = None


@receiver(post_save, sender="django_q.Task", dispatch_uid="django_q_cloudtasks.saved")
def _note_save(sender: Any, instance: Any, **kwargs: Any) -> None:
    rows = getattr(_running, "saves", None)
    if rows is not None:
        rows[instance.id] = _Row(bool(instance.success), instance.attempt_count)


def _succeeded_before(task_id: str) -> bool:
    """A delivery that died after saving its Success row must not run the task again."""
    return bool(Success.objects.filter(id=task_id).exists())


@contextlib.contextmanager
def _released_on_error(task_id: str, holder: str) -> Iterator[None]:
    try:
        yield
    except BaseException:
        # The database may be what failed: then the lease, no longer renewed, runs out.
        with contextlib.suppress(Exception):
            Receipt.objects.release(task_id, holder)
        raise
