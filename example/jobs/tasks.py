"""The example's background tasks: plain functions, run by the receiver when Cloud Tasks
delivers them. Each shows one django-q feature."""

import time

from django.db.models import F

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


def heartbeat() -> str:
    """Run by a schedule."""
    return "alive"
