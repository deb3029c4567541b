"""A job cluster's task, inside the Cloud Run job execution the receiver started for it
(``launcher.py``): ``python manage.py cloudtasks_execute``, the job's command.

The execution's environment names the task and the claim the receiver took for it. The run:

1. adopts the claim. Only one execution does, so a task runs once even if two executions
   were started for it; a later attempt of the same execution (Cloud Run retries an attempt
   that died) takes over at once, and its earlier run counts as lost;
2. reads the package from the database (``payloads.py``) and checks its signature;
3. runs the task as the receiver does (``execution.py``), in the main thread, so that
   django-q's timeout holds, its claim renewed while it runs;
4. on SIGTERM, which Cloud Run sends to an execution it cancels, raises ``TaskCancelled``
   inside the task's function, once: a second signal does not cut its clean-up short;
5. once the task is done, deletes its Cloud Task, which would otherwise come back to the
   receiver once more to learn that, then its package.

It exits 0 once the task has an outcome (a failure to retry included: Cloud Tasks' next
delivery starts another execution after its backoff). An exception that escapes (the
database down) ends it with status 1, so that Cloud Run tries the attempt again; what the
task itself raises past django-q (``SystemExit``) ends it with its own status, its run
counted as lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import FrameType

from .. import payloads, wire
from ..conf import QueueSettings, queue_settings
from ..exceptions import BadBody, CodeMissing, QueueUnavailable, TaskCancelled
from ..gcp.tasks import delete_task
from ..models import Receipt
from . import execution
from .leases import LEASE

logger = logging.getLogger("django_q_cloudtasks")

# What the receiver puts in the execution's environment.
TASK_ENV = "DJANGO_Q_CLOUDTASKS_TASK"  # the django-q task id
HOLDER_ENV = "DJANGO_Q_CLOUDTASKS_HOLDER"  # the claim's holder token
CLOUD_TASK_ENV = "DJANGO_Q_CLOUDTASKS_CLOUD_TASK"  # the Cloud Task that delivered it
STOPPED = "The Cloud Run execution running the task was stopped (SIGTERM)."


@dataclass(frozen=True)
class Report:
    """What the run did, for the command to print, and its exit code."""

    exit_code: int
    message: str


def run(environ: Mapping[str, str]) -> Report:
    """Run the task ``environ`` names, once."""
    task_id, holder = environ.get(TASK_ENV), environ.get(HOLDER_ENV)
    if not task_id or not holder:
        return Report(
            2,
            f"{TASK_ENV} and {HOLDER_ENV} are not set: this command runs in a Cloud Run job "
            "execution that the receiver starts for a task.",
        )
    cluster = Receipt.objects.filter(task_id=task_id).values_list("cluster", flat=True).first()
    if cluster is None:
        return Report(0, f"Task {task_id} was never claimed: nothing to run.")
    queue = queue_settings(cluster)
    retried = int(environ.get("CLOUD_RUN_TASK_ATTEMPT") or 0) > 0
    if not Receipt.objects.adopt(
        task_id, holder, _execution(queue, environ), LEASE, retried=retried
    ):
        return Report(0, f"Task {task_id} has finished, or another execution runs it.")
    try:
        task = wire.read_package(_package(task_id))
    except (BadBody, CodeMissing) as error:
        # The receiver read it: this execution's image or settings differ from the service's.
        Receipt.objects.release(task_id, holder, lost=True)
        logger.error("Task %s cannot run in this execution: %s", task_id, error)
        return Report(0, f"Task {task_id} cannot run here: {error} Its run counts as lost.")
    task["cluster"] = queue.cluster
    outcome, lost = execution.settle(task, queue, holder)
    if outcome is None:
        claims = Receipt.objects.filter(task_id=task_id).values_list("deliveries", flat=True)[0]
        with _stopped_by_sigterm() as stop:
            outcome = execution.run_claimed(
                task,
                queue,
                holder,
                previous_attempts=claims - 1,  # the executions started before this one
                lost=lost,
                hold_for=queue.execution_timeout(task.get("timeout", queue.timeout)),
                on_cancel=stop.from_renewal,
                reconnect=True,
            )
    if outcome.done:
        _clean_up(queue, task_id, environ.get(CLOUD_TASK_ENV, ""))
    return Report(0, f"Task {task['name']} ({wire.func_name(task)}): {outcome.verdict.value}.")


def _execution(queue: QueueSettings, environ: Mapping[str, str]) -> str:
    """This execution's resource name, from what Cloud Run sets; made up when run by hand."""
    short = environ.get("CLOUD_RUN_EXECUTION") or f"by-hand-{os.getpid()}"
    return f"{queue.job}/executions/{short}"


def _package(task_id: str) -> bytes:
    package = payloads.stored(task_id)
    if package is None:  # the receiver read it before starting the execution
        raise BadBody(f"The package of task {task_id} is not in the database.")
    return package.encode()


class _Stop:
    """How this run stops: on SIGTERM, ``TaskCancelled`` raised once inside the task."""

    def __init__(self) -> None:
        self.signalled = threading.Event()

    def on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        first = not self.signalled.is_set()
        self.signalled.set()
        if first and execution.in_function():
            raise TaskCancelled(STOPPED)
        logger.warning("SIGTERM again, or while the result is saved: that goes on first.")

    def from_renewal(self) -> None:
        """A cancellation the lease renewal learnt of: stop the task as Cloud Run's SIGTERM
        does, should cancelling the execution have failed. A real signal, to the main
        thread: it interrupts a sleep or a blocking call, as Cloud Run's does."""
        if not self.signalled.is_set():
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)


@contextlib.contextmanager
def _stopped_by_sigterm() -> Iterator[_Stop]:
    """While the block runs, SIGTERM stops the task (``_Stop``)."""
    stop = _Stop()
    previous = signal.signal(signal.SIGTERM, stop.on_sigterm)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def _clean_up(queue: QueueSettings, task_id: str, cloud_task: str) -> None:
    """The Cloud Task first: while it is there, a delivery of it finds the task done by its
    receipt, and needs the package for that no more than it needs it after."""
    if cloud_task:
        try:
            delete_task(queue, cloud_task)
        except QueueUnavailable as error:  # its next delivery finds the task done
            logger.warning("Could not delete Cloud Task %s: %s", cloud_task, error)
    payloads.discard(task_id)
