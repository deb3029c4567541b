"""Cancelling a task: ``django_q_cloudtasks.cancel(task_id)``.

What it does depends on where the task is:

* **Waiting** in Cloud Tasks, for its first delivery or for a retry: its receipt is marked
  finished and cancelled before anything else, so that a delivery already on its way runs
  nothing, then its Cloud Task and its package are deleted. It never runs (again).
* **Running in a Cloud Run job execution**: the execution is cancelled. Cloud Run sends it
  SIGTERM, which raises ``TaskCancelled`` inside the task, and SIGKILL 10 s later; the
  Failure row says it was cancelled, and it is not retried.
* **Running in a receiver**: cancellation is cooperative. ``cancelled()`` turns true inside
  the task within seconds (the lease renewal brings the news); a task that then raises
  ``TaskCancelled`` fails as cancelled, and is not retried.
* **Finished**: nothing is done.
* **In no queue**, and never claimed (a task on its way, a hop of a delayed task, or an id
  of no task): its receipt is marked finished and cancelled all the same, so that it
  never runs.

A task whose process dies after the call is not run again: the next delivery records it as
cancelled instead.
"""

from __future__ import annotations

import enum
import logging

from . import payloads
from .conf import QueueSettings, cluster_names, queue_settings
from .exceptions import ExecutionError, QueueUnavailable
from .gcp import jobs
from .gcp.tasks import delete_task
from .models import Found, Receipt

logger = logging.getLogger("django_q_cloudtasks")


class Cancellation(enum.Enum):
    """What ``cancel()`` found, and did."""

    DELETED = "deleted"  # it was waiting: it will never run
    UNKNOWN = "unknown"  # in no queue, nor claimed: should it be on its way, it will not run
    STOPPING = "stopping"  # a job execution runs it: Cloud Run stops the execution
    ASKED = "asked"  # a receiver runs it: cancelled() turns true inside it
    FINISHED = "finished"  # it had finished: nothing to cancel

    @property
    def description(self) -> str:
        """What became of the task, in words for a message."""
        return {
            Cancellation.DELETED: "deleted from its queue: it will not run",
            Cancellation.UNKNOWN: "in no queue: should it be on its way, it will not run",
            Cancellation.STOPPING: "its Cloud Run job execution is being stopped",
            Cancellation.ASKED: "asked to stop: cancelled() is true inside it within seconds",
            Cancellation.FINISHED: "had finished: nothing to cancel",
        }[self]


def cancel(
    task_id: str, *, cluster: str | None = None, cloud_task: str | None = None
) -> Cancellation:
    """Cancel the django-q task ``task_id``: see the module's docstring.

    ``cluster``: the task's cluster, where a waiting task is looked for; by default the
    cluster of its receipt if it has one, else every cluster ``Q_CLUSTER`` defines.
    ``cloud_task``: the Cloud Task that carries it, where it is not named after the task
    (a delayed task's hop, as the admin lists it).
    """
    found, receipt = Receipt.objects.request_cancel(task_id, cluster or _main())
    if found is Found.FINISHED:
        return Cancellation.FINISHED
    if found is Found.RUNNING and receipt is not None:
        return _stop(queue_settings(receipt.cluster), task_id, receipt.execution)
    names = (
        [receipt.cluster] if receipt is not None else ([cluster] if cluster else cluster_names())
    )
    queues = {queue_settings(name).queue_path: queue_settings(name) for name in names}
    deleted = [_delete_waiting(queue, cloud_task or task_id) for queue in queues.values()]
    payloads.discard(task_id)
    logger.info("Cancelled task %s: it will not run.", task_id)
    return Cancellation.DELETED if any(deleted) or found is Found.WAITING else Cancellation.UNKNOWN


def _main() -> str:
    return cluster_names()[0]


def _stop(queue: QueueSettings, task_id: str, execution: str) -> Cancellation:
    if not queue.runs_in_job:
        logger.info("Asked task %s to stop: cancelled() is true inside it within seconds.", task_id)
        return Cancellation.ASKED
    if execution:  # else the execution, once it starts, finds the task cancelled
        try:
            jobs.cancel(queue, execution)
        except ExecutionError as error:
            # The execution's lease renewal learns of the cancellation, and stops the task.
            logger.warning("Task %s: %s It stops within seconds all the same.", task_id, error)
    logger.info("Cancelled task %s: %s stops.", task_id, execution or "its execution")
    return Cancellation.STOPPING


def _delete_waiting(queue: QueueSettings, cloud_task: str) -> bool:
    """Whether the Cloud Task was waiting in ``queue``, and is deleted."""
    try:
        return delete_task(queue, cloud_task)
    except QueueUnavailable as error:  # its receipt keeps any delivery from running it
        logger.warning("Could not delete task %s from its queue: %s", cloud_task, error)
        return False
