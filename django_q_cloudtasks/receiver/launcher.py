"""A job cluster's tasks, on the receiver's side: each delivery starts the Cloud Run job
execution that runs the task, or looks after the one running it.

Cloud Tasks carries the task as for any cluster (named, scheduled, rate-limited, retried),
and stays with it until it is done:

1. The first delivery claims the task's receipt for the execution it starts, which has
   ``LAUNCH_LEASE`` to start and adopt the claim (``job_runner.py``). The execution gets the
   task's id and the claim's holder in its environment; the package stays in the database
   (``payloads.py``). The answer is 409 ``launched``, so that Cloud Tasks comes back.
2. Later deliveries find the claim held, its lease renewed by the execution, and answer 409
   ``running``: the queue's backoff sets how often they come.
3. The execution deletes the Cloud Task once the task is done; a delivery that comes first
   finds the receipt done and answers 200.
4. A delivery that finds the claim run out asks Cloud Run about the execution holding it.
   One still going (waiting to start, retrying an attempt, or cut off from the database
   for a while) keeps the task: 409 ``running``. One that ended (it died, and Cloud Run
   gave up on it) loses it: the delivery takes the claim over and starts another
   execution, unless the task has no attempts left, as a lost run counts as an attempt
   (``execution.settle``).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from django.utils import timezone

from ..conf import QueueSettings, queue_settings
from ..exceptions import ExecutionError
from ..gcp import jobs
from ..models import Claim, Receipt
from . import job_runner
from .execution import Outcome, Verdict, settle

logger = logging.getLogger("django_q_cloudtasks")

# How long an execution may take to start and adopt its claim before a later delivery
# starts another: Cloud Run starts most within a minute.
LAUNCH_LEASE = timedelta(minutes=5)


def supervise(task: dict[str, Any], *, cloud_task: str = "") -> Outcome:
    """Start an execution for a delivered task of a job cluster, or say how it is doing.
    ``cloud_task``: the delivered Cloud Task's id, which the execution deletes when done.
    Raises ExecutionError when Cloud Run refuses or does not answer."""
    queue = queue_settings(task.get("cluster"))
    task["cluster"] = queue.cluster
    task_id, holder = task["id"], uuid.uuid4().hex
    running = _running_execution(queue, task_id)
    if running is not None:
        return Outcome(Verdict.RUNNING, task_id, queue.cluster, execution=running)
    claim = Receipt.objects.claim(task_id, queue.cluster, holder, LAUNCH_LEASE)
    if claim is Claim.BUSY:  # another delivery claimed it a moment ago
        return Outcome(Verdict.RUNNING, task_id, queue.cluster)
    if claim is Claim.DONE:
        return Outcome(Verdict.DUPLICATE, task_id, queue.cluster)
    if claim is Claim.RESUMED:
        settled, _ = settle(task, queue, holder)
        if settled is not None:
            return settled
    env = {job_runner.TASK_ENV: task_id, job_runner.HOLDER_ENV: holder}
    if cloud_task:
        env[job_runner.CLOUD_TASK_ENV] = cloud_task
    try:
        execution = jobs.start(
            queue, env=env, timeout=queue.execution_timeout(task.get("timeout", queue.timeout))
        )
    except Exception:
        Receipt.objects.release(task_id, holder)  # the next delivery tries again
        raise
    if execution:
        Receipt.objects.note_execution(task_id, holder, execution)
    logger.info("Task %s (%s) runs in %s.", task["name"], task_id, execution or "an execution")
    return Outcome(Verdict.LAUNCHED, task_id, queue.cluster, execution=execution)


def _running_execution(queue: QueueSettings, task_id: str) -> str | None:
    """The execution holding the task's claim, if it runs (or is to run) the task still;
    None if the claim is free to take, or taken by no execution.

    A fresh lease says so by itself, unless the task was cancelled: an execution stopped
    before it took over its claim (still starting) leaves the launch's lease, which only
    Cloud Run can say is over.
    """
    claim = (
        Receipt.objects.filter(task_id=task_id, state=Receipt.State.RUNNING)
        .values_list("lease_until", "execution", "holder", "cancelled")
        .first()
    )
    if claim is None:
        return None
    lease_until, execution, holder, cancelled = claim
    fresh = lease_until > timezone.now()
    if fresh and cancelled is None:
        return str(execution)
    if not execution:
        # Never started, nor did Cloud Run say it would: take it over once the lease is out.
        return str(execution) if fresh else None
    try:
        found = jobs.get(queue, execution)
    except ExecutionError as error:
        # Not knowing, keep it: taking it over could run the task twice.
        logger.warning("Task %s: %s", task_id, error)
        return str(execution)
    if found is not None and not found.finished:
        if not fresh:
            logger.info("Task %s: %s is still going, its claim run out.", task_id, execution)
        return str(execution)
    if fresh:  # ended without a word: its claim is free, for this delivery to take
        Receipt.objects.let_go(task_id, holder)
    return None
