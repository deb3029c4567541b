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

from django_q_cloudtasks import async_task_after

HEARTBEAT = "demo heartbeat"
DELAY = 15


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
