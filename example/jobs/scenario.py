"""The demo: one of each kind of task, and what each must end up as.

Both the page's button and ``manage.py demo`` enqueue through :func:`enqueue`, and check
progress with the expectations it returns.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django_q.models import Failure, Schedule, Success
from django_q.tasks import async_chain, async_task, count_group, result_group, schedule

from django_q_cloudtasks import async_task_after, cancel
from django_q_cloudtasks.models import Receipt

HEARTBEAT = "demo heartbeat"
DELAY = 15
# The demo server lets a request last 15 s (gunicorn --timeout): the long export lasts more.
LONG_EXPORT_SECONDS = 25


@dataclass(frozen=True)
class Expectation:
    label: str
    met: Callable[[], bool]


def enqueue() -> list[Expectation]:
    """Enqueue the demo tasks; returns what each must have become once Cloud Tasks is done."""
    run = uuid.uuid4().hex[:8]
    started = timezone.now()

    slow = async_task("jobs.tasks.slow_report", 3)
    flaky = async_task("jobs.tasks.flaky_import", f"import-{run}", 2)
    broken = async_task("jobs.tasks.broken_export")
    pipeline = f"pipeline-{run}"
    async_chain(
        [("jobs.tasks.pipeline_step", (step,)) for step in ("fetch", "resize", "publish")],
        group=pipeline,
    )
    thumbnails = f"thumbnails-{run}"
    for size in range(1, 6):
        async_task("jobs.tasks.thumbnail", size, group=thumbnails)
    hooked = async_task("jobs.tasks.slow_report", 1, hook="jobs.tasks.notify")
    export = async_task("jobs.tasks.long_export", LONG_EXPORT_SECONDS, cluster="long")
    doomed_label = f"doomed-export-{run}"
    doomed = async_task("jobs.tasks.long_export", 600, doomed_label, cluster="long")
    delayed = async_task_after(timedelta(seconds=DELAY), "jobs.tasks.slow_report", 0)
    Schedule.objects.filter(name=HEARTBEAT).delete()
    schedule(
        "jobs.tasks.heartbeat",
        name=HEARTBEAT,
        schedule_type=Schedule.MINUTES,
        minutes=1,
        next_run=started,
    )

    def succeeded(task_id: str, attempts: int = 1) -> Callable[[], bool]:
        return lambda: Success.objects.filter(id=task_id, attempt_count=attempts).exists()

    return [
        Expectation("slow report: runs 3 s, then succeeds", succeeded(slow)),
        Expectation("flaky import: fails twice, succeeds on attempt 3", succeeded(flaky, 3)),
        Expectation(
            "broken export: fails 3 times, then stays a Failure",
            lambda: Failure.objects.filter(id=broken, attempt_count=3).exists(),
        ),
        Expectation(
            "chain: fetch -> resize -> publish, in order",
            lambda: (
                [t.result for t in Success.objects.filter(group=pipeline).order_by("started")]
                == ["fetch done", "resize done", "publish done"]
            ),
        ),
        Expectation(
            "group: 5 thumbnails collected",
            lambda: (
                count_group(thumbnails) == 5
                and sorted(result_group(thumbnails)) == [1, 4, 9, 16, 25]
            ),
        ),
        Expectation(
            "hook: notified after its task",
            lambda: _notified(hooked),
        ),
        Expectation(
            f"delayed: runs {DELAY} s after it was enqueued",
            lambda: _ran_after(delayed, started + timedelta(seconds=DELAY)),
        ),
        Expectation(
            f"long export: {LONG_EXPORT_SECONDS} s in a Cloud Run job execution, longer than "
            "a request may last",
            lambda: "in execution demo-worker-" in _result(Success, export),
        ),
        Expectation(
            "cancelled export: stopped in its job execution, a Failure saying so",
            lambda: _cancelled_once_running(doomed, doomed_label),
        ),
        Expectation(
            "schedule: heartbeat fired",
            lambda: Success.objects.filter(
                func="jobs.tasks.heartbeat", started__gte=started
            ).exists(),
        ),
    ]


def _ran_after(task_id: str, earliest: datetime) -> bool:
    return Success.objects.filter(id=task_id, stopped__gte=earliest).exists()


def _notified(task_id: str) -> bool:
    from .models import Notification

    return Notification.objects.filter(task_id=task_id).exists()


def _cancelled_once_running(task_id: str, label: str) -> bool:
    """Cancel the task once it runs in its execution, as the page's Cancel button does; then
    whether it cleaned up, and its Failure row says it was cancelled."""
    from .models import Notification

    notes = set(Notification.objects.filter(task_id=label).values_list("message", flat=True))
    if (
        "export started" in notes
        and not Receipt.objects.filter(task_id=task_id, cancelled__isnull=False).exists()
    ):
        cancel(task_id)
    return "export cancelled: cleaned up" in notes and "TaskCancelled" in _result(Failure, task_id)


def _result(model: type[Success] | type[Failure], task_id: str) -> str:
    """A result row's result, as text ("" while there is none): django-q pickles it."""
    row = model.objects.filter(id=task_id).first()
    return str(row.result) if row else ""


def running_in_jobs() -> list[Receipt]:
    """The tasks Cloud Run job executions run now, for the page."""
    return list(
        Receipt.objects.filter(state=Receipt.State.RUNNING)
        .exclude(execution="")
        .order_by("claimed")
    )
