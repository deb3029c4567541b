"""Schedules without a cluster, end to end: ticks plan wake-ups in a real emulator, which
delivers them and the slots' tasks to a live server. Each task leaves a trace per run,
so these tests count executions, not enqueues.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from django_q.models import Failure, Schedule, Success

from django_q_cloudtasks.scheduling import Slot, fire, tick
from tests.conftest import wait_for
from tests.e2e.conftest import start_command
from tests.support.crashes import fire_killed_before_commit

pytestmark = pytest.mark.e2e

# Long enough that no second slot falls within a tick's look-ahead during a test.
INTERVAL = 10


def appending_schedule(trace: Path, **fields: Any) -> Schedule:
    fields.setdefault("next_run", timezone.now() - timedelta(seconds=1))
    return Schedule.objects.create(
        func="tests.project.tasks.append",
        args=repr((str(trace), "x")),
        schedule_type=Schedule.MINUTES,
        minutes=INTERVAL,
        **fields,
    )


def runs(trace: Path) -> str:
    return trace.read_text() if trace.exists() else ""


def settle() -> None:
    """Give a duplicate delivery, had there been one, the time to show."""
    time.sleep(3)


def test_eight_tick_processes_at_once_run_each_of_fifty_slots_once(e2e, tmp_path):
    traces = [tmp_path / f"schedule-{n}" for n in range(50)]
    schedules = [appending_schedule(trace) for trace in traces]

    ticks = [start_command(e2e, "cloudtasks_tick") for _ in range(8)]
    outputs = [process.communicate(timeout=120)[0].decode() for process in ticks]
    assert [process.returncode for process in ticks] == [0] * 8, outputs
    wait_for(lambda: all(runs(trace) for trace in traces), timeout=120)
    settle()
    assert [runs(trace) for trace in traces] == ["x"] * 50

    for schedule in schedules:
        schedule.refresh_from_db()
        assert schedule.next_run > timezone.now() + timedelta(minutes=INTERVAL - 1)
    assert Success.objects.filter(id__in=[s.task for s in schedules]).count() == 50


def test_a_broken_schedule_fails_alone(e2e, tmp_path):
    traces = [tmp_path / f"good-{n}" for n in range(5)]
    for trace in traces:
        appending_schedule(trace)
    bad_arguments = appending_schedule(tmp_path / "bad", name="bad arguments")
    Schedule.objects.filter(pk=bad_arguments.pk).update(args="(1,")
    missing = Schedule.objects.create(
        func="tests.project.tasks.no_such_function",
        name="missing function",
        next_run=timezone.now() - timedelta(seconds=1),
        schedule_type=Schedule.MINUTES,
        minutes=INTERVAL,
    )

    report = tick()
    assert (report.due, report.failed) == (7, {})
    wait_for(lambda: all(runs(trace) for trace in traces), timeout=60)
    wait_for(lambda: Failure.objects.filter(group="missing function").exists(), timeout=60)
    settle()
    assert [runs(trace) for trace in traces] == ["x"] * 5
    assert "could not make a task" in Failure.objects.get(group="bad arguments").result
    for broken in (bad_arguments, missing):
        broken.refresh_from_db()
        assert broken.next_run > timezone.now()  # moved on like the others


def test_a_firing_killed_after_enqueue_and_before_commit_runs_its_task_once(e2e, tmp_path):
    trace = tmp_path / "runs"
    schedule = appending_schedule(trace)
    slot = Slot(schedule.pk, schedule.next_run)

    fire_killed_before_commit(slot)
    wait_for(lambda: runs(trace), timeout=60)  # the task was enqueued, and ran

    fire(slot)  # the wake-up, retried, enqueues the same task again
    settle()
    assert runs(trace) == "x"
    schedule.refresh_from_db()
    assert schedule.task == slot.task_id


@pytest.mark.slow
@pytest.mark.xdist_group("cpu-bound or timed")  # not beside the load test (test_load.py)
@pytest.mark.django_db(transaction=True)
def test_an_every_minute_schedule_fires_three_times_each_within_two_seconds_of_its_slot(
    start_stack, tmp_path
):
    """What is measured is the scheduling, not a cold process: one receiver process, which
    first fires a slot of its own (importing the API client, verifying its first token)."""
    start_stack(workers=1)  # the built-in emulator, which honours schedule_time
    warm_up = tmp_path / "warm-up"
    Schedule.objects.create(
        func="tests.project.tasks.stamp",
        args=repr(str(warm_up)),
        schedule_type=Schedule.ONCE,
        next_run=timezone.now(),
    )
    tick()
    wait_for(lambda: runs(warm_up), timeout=60)
    trace = tmp_path / "starts"
    first_slot = timezone.now() + timedelta(seconds=10)
    Schedule.objects.create(
        func="tests.project.tasks.stamp",
        args=repr(str(trace)),
        schedule_type=Schedule.MINUTES,
        minutes=1,
        next_run=first_slot,
    )
    tick()  # then the emulator's own ticks, every minute, and each firing plans the next
    wait_for(
        lambda: len(runs(trace).split()) >= 3, timeout=first_slot.timestamp() - time.time() + 150
    )
    starts = [float(line) for line in runs(trace).split()]
    slots = [(first_slot + timedelta(minutes=n)).timestamp() for n in range(3)]
    lateness = [round(start - slot, 3) for start, slot in zip(starts, slots, strict=False)]
    print(f"seconds after each slot: {lateness}")
    assert len(starts) == 3, lateness
    assert all(0 <= late <= 2 for late in lateness), lateness
