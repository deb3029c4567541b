"""10,000 tasks through the built-in emulator into a gunicorn receiver with 4 workers on
PostgreSQL: every one runs once and is saved once, none is lost."""

from __future__ import annotations

import collections
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django_q.models import Success, Task
from django_q.tasks import async_task

from tests.conftest import wait_for
from tests.e2e.conftest import answers, queue_is_empty

# Its load would slow the timed schedule test down: the two run one after the other.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("cpu-bound or timed"),
    pytest.mark.django_db(transaction=True),
]

TASKS = 10_000
WORKERS = 4


def test_10000_tasks_each_run_and_saved_exactly_once(start_stack, trace, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("the load test runs on PostgreSQL: SQLite takes one writer at a time")
    monkeypatch.setattr(logging.getLogger("django-q"), "disabled", True)  # a line per enqueue
    stack = start_stack(workers=WORKERS)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as enqueuers:
        task_ids = list(
            enqueuers.map(
                lambda number: async_task("tests.project.tasks.append", str(trace), f"{number}\n"),
                range(TASKS),
            )
        )
    enqueued = time.monotonic()
    wait_for(lambda: Success.objects.count() == TASKS, timeout=900, interval=1)
    finished = time.monotonic()
    wait_for(lambda: queue_is_empty(stack))

    print(
        f"{TASKS} tasks: enqueued in {enqueued - started:.1f} s, all saved "
        f"{finished - started:.1f} s after the first enqueue "
        f"({TASKS / (finished - started):.0f} tasks/s end to end); "
        f"answers: {dict(collections.Counter(answers(stack)))}"
    )
    runs = collections.Counter(int(line) for line in trace.runs)
    assert len(runs) == TASKS  # none lost
    assert set(runs.values()) == {1}  # none ran twice
    assert set(Task.objects.values_list("id", flat=True)) == set(task_ids)
    assert set(Task.objects.values_list("attempt_count", flat=True)) == {1}
