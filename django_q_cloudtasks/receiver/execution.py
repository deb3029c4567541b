"""The execution side: run one delivered task with django-q's own worker and monitor.

``django_q.worker.worker`` and ``django_q.monitor.monitor`` loop over anything with
``get`` and ``put``. Handing them a one-task mailbox runs exactly that task inside the
request (or inside a Cloud Run job execution, ``job_runner.py``), with everything django-q
does around it: the pre_execute and post_execute signals, the timeout, hooks, chains,
groups, cached results and the Success or Failure row (saved by ``results.py``, in one
statement for a task's first result, committed with the receipt's finish for a first
success). The receipt around the run keeps a
task from running twice; its lease, renewed while the task runs (``leases.py``), lets a
retry take over from a delivery that died.

A run that died counts as an attempt: once a task's failures and lost runs reach
``max_attempts``, it fails for good, with a Failure row saying so, instead of running
again. A task that ``cancel()`` stopped fails for good too, with a Failure row saying it
was cancelled.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connections
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Success, Task
from django_q.signals import pre_execute
from django_q.worker import worker

from ..broker import CloudTasksBroker
from ..conf import QueueSettings, queue_settings
from ..exceptions import TaskCancelled
from ..models import Claim, Receipt
from ..targets import MAX_JOB_TIMEOUT
from . import results
from .leases import LEASE, keeper
from .results import Mailbox
from .status import writer


class Verdict(enum.Enum):
    SUCCEEDED = "succeeded"  # done: Cloud Tasks forgets the task
    FAILED = "failed"  # done: no attempts left, or failures are acknowledged
    CANCELLED = "cancelled"  # done: cancel() stopped it
    RETRY = "retry"  # failed: Cloud Tasks should deliver it again
    DUPLICATE = "duplicate"  # it had already finished: nothing ran
    BUSY = "busy"  # another delivery is running it: nothing ran
    LAUNCHED = "launched"  # a Cloud Run job execution was started to run it
    RUNNING = "running"  # a Cloud Run job execution is running it


DONE = frozenset({Verdict.SUCCEEDED, Verdict.FAILED, Verdict.CANCELLED, Verdict.DUPLICATE})


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    task_id: str
    cluster: str
    attempt: int | None = None
    execution: str = ""  # the Cloud Run job execution that runs it, for a job cluster

    @property
    def done(self) -> bool:
        return self.verdict in DONE


class _Timer:
    """Stands in for the cluster's shared-memory timer; nothing watches it here. django-q's
    worker takes its lock as soon as the task's function has returned or raised, which ends
    the time the function runs (:func:`in_function`)."""

    value = -1

    def get_lock(self) -> contextlib.nullcontext[None]:
        _running.in_function = False
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
    lost = 0
    if claim is Claim.RESUMED:
        settled, lost = settle(task, queue, holder)
        if settled is not None:
            return settled
    # Past the dispatch deadline Cloud Tasks has retried already: stop holding the claim.
    deadline = queue.deadline_for(task.get("timeout", queue.timeout))
    return run_claimed(
        task,
        queue,
        holder,
        previous_attempts=previous_attempts,
        lost=lost,
        hold_for=deadline,
        first_run=claim is Claim.RUN,
    )


def settle(task: dict[str, Any], queue: QueueSettings, holder: str) -> tuple[Outcome | None, int]:
    """For a claim taken over from an earlier run: the outcome, if the task must not run
    again (it succeeded, was cancelled, or has no attempts left), and the runs lost so far."""
    task_id = task["id"]
    if _succeeded_before(task_id):  # a run that died after saving its Success row
        Receipt.objects.finish(task_id, holder)
        return Outcome(Verdict.DUPLICATE, task_id, queue.cluster), 0
    lost, cancelled = Receipt.objects.filter(task_id=task_id).values_list("lost", "cancelled")[0]
    if cancelled is not None:
        return fail_without_running(task, queue, holder, TaskCancelled(), Verdict.CANCELLED), lost
    failures = Task.objects.filter(id=task_id).values_list("attempt_count", flat=True).first()
    attempts = (failures or 0) + lost
    if lost and 0 < queue.max_attempts <= attempts:
        error = (
            f"The process running it died {lost} time(s), or its run ended without an "
            "outcome (out of memory? killed? a job execution that never got to run it? see "
            f"its logs): with {attempts} attempt(s) of max_attempts {queue.max_attempts}, it "
            "is not run again."
        )
        return fail_without_running(task, queue, holder, error, Verdict.FAILED), lost
    return None, lost


def run_claimed(
    task: dict[str, Any],
    queue: QueueSettings,
    holder: str,
    *,
    previous_attempts: int,
    lost: int,
    hold_for: int | None,
    on_cancel: Callable[[], None] | None = None,
    reconnect: bool = False,
    first_run: bool = False,
) -> Outcome:
    """Run a task whose claim ``holder`` holds, and finish or release the claim by the
    verdict. The claim is kept alive for ``hold_for`` seconds at most (None: as long as a
    Cloud Run job's task may run); ``on_cancel`` is called when a cancellation is learnt;
    ``reconnect``: save the result on a new database connection (a job execution, where a
    signal may interrupt the task anywhere); ``first_run``: no delivery ran it before, so
    it has no row yet (``results.py``)."""
    task_id = task["id"]
    until = timezone.now() + timedelta(seconds=hold_for or MAX_JOB_TIMEOUT)
    with (
        _released_on_error(task_id, holder),
        keeper.holding(task_id, holder, until=until, on_cancel=on_cancel),
        writer.in_flight(),  # qinfo and qmonitor count it (status.py)
        _watching_saves(task_id) as saved,
    ):
        finished = _run(task, queue, holder, reconnect=reconnect, first_run=first_run)
        outcome = _judge(task, queue, previous_attempts, saved.get(task_id), lost)
    if outcome.done:
        if not finished:  # a first success's row commits with the finish (results.py)
            Receipt.objects.finish(task_id, holder)
    else:
        Receipt.objects.release(task_id, holder)
    return outcome


def fail_without_running(
    task: dict[str, Any],
    queue: QueueSettings,
    holder: str,
    error: BaseException | str,
    verdict: Verdict,
) -> Outcome:
    """Record a task's failure for good without running it, as django-q records any
    failure (its Failure row, hook, chain and post_execute signal), and finish its claim."""
    task.update(result=_result_of(error), success=False, stopped=timezone.now())
    with _watching_saves(task["id"]):
        results.save(task, CloudTasksBroker(queue.cluster), first_run=False)
    Receipt.objects.finish(task["id"], holder)
    return Outcome(verdict, task["id"], queue.cluster)


def in_function() -> bool:
    """Whether this thread is running a task's own function now (not django-q's work around
    it): a signal handler may then raise into the task."""
    return bool(getattr(_running, "in_function", False))


def cancelled() -> bool:
    """Whether ``cancel()`` asked the task running in this thread to stop.

    Inside a receiver it turns true within seconds of the call (the lease renewal brings
    the news), so that a long loop can stop: raise ``TaskCancelled`` to end the task as
    cancelled. Outside a task it is False.
    """
    task_id = getattr(_running, "task_id", None)
    return task_id is not None and keeper.is_cancelled(task_id)


def _run(
    task: dict[str, Any], queue: QueueSettings, holder: str, *, reconnect: bool, first_run: bool
) -> bool:
    """Run the task and save its result; True if its receipt was finished with it."""
    try:
        # The worker puts the same dict it was given, once it holds the result.
        worker(Mailbox(task), Mailbox(), _Timer(), timeout=queue.timeout)
    except TaskCancelled as error:  # a job execution's SIGTERM, between pre_execute and the call
        task.update(result=_result_of(error), success=False, stopped=timezone.now())
    finally:
        _running.in_function = False
    if reconnect:
        # A signal may have cut a query of the task's short, leaving its connection busy:
        # the result is saved on a new one.
        connections.close_all()
    return results.save(task, CloudTasksBroker(queue.cluster), first_run=first_run, holder=holder)


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
    task: dict[str, Any],
    queue: QueueSettings,
    previous_attempts: int,
    saved: _Row | None,
    lost: int = 0,
) -> Outcome:
    """Whether Cloud Tasks is done with the task, from the result django-q just stored:
    ``saved``, the row as this thread saved it, if it did; ``lost``, the earlier runs that
    died, which count as attempts."""
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
    attempt = saved.attempt_count + lost if must_save and saved else previous_attempts + 1
    if success:
        return Outcome(Verdict.SUCCEEDED, task_id, queue.cluster, attempt)
    if keeper.is_cancelled(task_id) or _cancel_asked(task_id):
        return Outcome(Verdict.CANCELLED, task_id, queue.cluster, attempt)
    out_of_attempts = 0 < queue.max_attempts <= attempt
    if task.get("ack_failure") or queue.ack_failures or out_of_attempts:
        return Outcome(Verdict.FAILED, task_id, queue.cluster, attempt)
    return Outcome(Verdict.RETRY, task_id, queue.cluster, attempt)


@dataclass(frozen=True)
class _Row:
    success: bool
    attempt_count: int


# The thread's task in the receiver, while it runs: ``task_id``, ``saves``, the Task rows
# saved, and ``in_function``, whether the task's own function runs now.
_running = threading.local()


@contextlib.contextmanager
def _watching_saves(task_id: str) -> Iterator[dict[str, _Row]]:
    """The Task rows this thread saves while the block runs, by id: django-q's monitor
    saves the result in this thread, so the verdict needs no query to read it back."""
    rows: dict[str, _Row] = {}
    _running.saves, _running.task_id = rows, task_id
    try:
        yield rows
    finally:
        _running.saves = _running.task_id = None
        _running.in_function = False


@receiver(pre_execute, dispatch_uid="django_q_cloudtasks.function_starts")
def _note_function_starts(sender: Any, task: dict[str, Any], **kwargs: Any) -> None:
    if getattr(_running, "task_id", None) == task.get("id"):
        _running.in_function = True


def _cancel_asked(task_id: str) -> bool:
    return bool(Receipt.objects.filter(task_id=task_id, cancelled__isnull=False).exists())


def _result_of(error: BaseException | str) -> str:
    """A failure's result, as django-q's worker writes one: the error and how it came."""
    return error if isinstance(error, str) else f"{type(error).__name__}: {error}"


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
    except BaseException as error:
        # The database may be what failed: then the lease, no longer renewed, runs out.
        # What django-q's worker does not catch (the task's own SystemExit) ended the run
        # without an outcome: it counts as an attempt, as a death does.
        with contextlib.suppress(Exception):
            Receipt.objects.release(task_id, holder, lost=not isinstance(error, Exception))
        raise
