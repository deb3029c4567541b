"""The example's background tasks: plain functions, run by the receiver when Cloud Tasks
delivers them. Each shows one django-q feature."""

import os
import time

from django.db.models import F

from django_q_cloudtasks import TaskCancelled

from .models import Counter, Notification


def slow_report(seconds: float) -> str:
    """A task that takes a while: the request that enqueued it did not wait."""
    time.sleep(seconds)
    return f"report ready after {seconds:g} s"


def flaky_import(key: str, failures: int) -> str:
    """Fails its first ``failures`` attempts; Cloud Tasks delivers it again each time."""
    Counter.objects.get_or_create(key=key)
    Counter.objects.filter(key=key).update(value=F("value") + 1)
    attempt = Counter.objects.get(key=key).value
    if attempt <= failures:
        raise ConnectionError(f"the upstream server is not ready (attempt {attempt})")
    return f"imported on attempt {attempt}"


def broken_export() -> None:
    """Always fails: after max_attempts it stays a Failure in the admin."""
    raise ValueError("the export target refuses every file")


def pipeline_step(step: str) -> str:
    """One link of a chain; the next link is enqueued when this one finishes."""
    return f"{step} done"


def thumbnail(size: int) -> int:
    """One member of a group; the group's results are collected together."""
    return size * size


def notify(task) -> None:  # type: ignore[no-untyped-def]
    """A hook: runs after its task, with the task's result."""
    outcome = "succeeded" if task.success else "failed"
    Notification.objects.create(task_id=task.id, message=f"{task.name} {outcome}: {task.result}")


def long_export(seconds: float, label: str = "export") -> str:
    """Work longer than the web server lets a request last: enqueued on the cluster "long",
    it runs in a Cloud Run job execution. Cancelled, it is stopped there: TaskCancelled is
    raised inside it, and it cleans up before it goes. It notes its start and its end under
    ``label``."""
    Notification.objects.create(task_id=label, message="export started")
    started = time.monotonic()
    try:
        while time.monotonic() - started < seconds:
            time.sleep(0.5)  # a chunk of the export
    except TaskCancelled:
        Notification.objects.create(task_id=label, message="export cancelled: cleaned up")
        raise
    return f"exported in {seconds:g} s, in execution {os.environ.get('CLOUD_RUN_EXECUTION')}"


def heartbeat() -> str:
    """Run by a schedule."""
    return "alive"
