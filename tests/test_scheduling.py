"""Schedules without a cluster: the tick plans wake-ups, and a wake-up fires its slot.

Cloud Tasks here is the built-in emulator, in-process, with its queues paused so that
what was enqueued stays to be inspected. Deliveries through a live server, counting
executions, are in tests/e2e/test_schedules.py.
"""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from django_q.models import Failure, Schedule
from django_q.signing import SignedPackage

from django_q_cloudtasks import payloads, wire
from django_q_cloudtasks.exceptions import BadWakeUp
from django_q_cloudtasks.scheduling import Fired, Slot, fire, next_slot, tick
from tests.support.crashes import fire_killed_before_commit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cloud_tasks(paused_cloud_tasks: Any) -> Any:
    return paused_cloud_tasks


def make_schedule(func: str = "math.copysign", **fields: Any) -> Schedule:
    fields.setdefault("next_run", timezone.now() + timedelta(seconds=30))
    fields.setdefault("schedule_type", Schedule.MINUTES)
    fields.setdefault("minutes", 5)
    return Schedule.objects.create(func=func, **fields)


def slot_of(schedule: Schedule) -> Slot:
    schedule.refresh_from_db()
    assert schedule.next_run is not None
    return Slot(schedule.pk, schedule.next_run)


def package_of(cloud_task: Any) -> dict[str, Any]:
    return SignedPackage.loads(cloud_task.http_request.body.decode())  # type: ignore[no-any-return]


# The tick


def test_a_tick_plans_a_wake_up_at_each_due_slot(cloud_tasks):
    soon = make_schedule()
    later = make_schedule(next_run=timezone.now() + timedelta(minutes=10))
    report = tick()
    assert (report.due, report.created, report.existing) == (1, 1, 0)
    (wake_up,) = cloud_tasks.tasks()
    assert wake_up.schedule_time == soon.next_run
    assert wake_up.http_request.url == "https://tasks.example.com/_tasks/schedule/"
    assert Slot.unsign(wake_up.http_request.body) == Slot(soon.pk, soon.next_run)
    assert later.pk not in {
        Slot.unsign(t.http_request.body).schedule_id for t in cloud_tasks.tasks()
    }


def test_a_tick_writes_nothing_and_a_second_tick_plans_nothing_new(cloud_tasks):
    schedule = make_schedule()
    tick()
    report = tick()
    assert (report.due, report.created, report.existing) == (1, 0, 1)
    assert len(cloud_tasks.tasks()) == 1
    assert Schedule.objects.get(pk=schedule.pk).next_run == schedule.next_run


def test_eight_ticks_at_once_plan_each_slot_once(cloud_tasks):
    schedules = [make_schedule(next_run=timezone.now() + timedelta(seconds=n)) for n in range(50)]
    reports = []

    def run_tick() -> None:
        reports.append(tick())
        connection.close()

    threads = [threading.Thread(target=run_tick) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(report.created for report in reports) == 50
    planned = sorted(
        Slot.unsign(task.http_request.body).schedule_id for task in cloud_tasks.tasks()
    )
    assert planned == [schedule.pk for schedule in schedules]


def test_disabled_schedules_and_unknown_clusters_are_left_alone(cloud_tasks):
    make_schedule(repeats=0)
    make_schedule(cluster="some-other-deployment")
    assert tick().due == 0


def test_a_schedule_of_the_second_cluster_wakes_up_in_its_queue(cloud_tasks):
    make_schedule(cluster="second")
    tick()
    assert (len(cloud_tasks.tasks("tests")), len(cloud_tasks.tasks("second"))) == (0, 1)


def test_an_overdue_slot_whose_wake_up_is_lost_gets_a_new_one(cloud_tasks):
    slot = Slot(1, datetime(2026, 1, 1, tzinfo=UTC))
    on_time = slot.wake_up_name(slot.time + timedelta(minutes=1))
    assert slot.wake_up_name(slot.time + timedelta(minutes=9)) == on_time
    assert slot.wake_up_name(slot.time + timedelta(minutes=11)) != on_time


# Firing a slot


def test_firing_enqueues_the_slot_task_as_django_qs_scheduler_would(cloud_tasks):
    schedule = make_schedule(
        "tests.project.tasks.echo",
        name="nightly",
        args="1, 'two'",
        kwargs="flag=True",
        hook="tests.project.tasks.record_hook",
        intended_date_kwarg="slot",
    )
    slot = slot_of(schedule)
    assert fire(slot) is Fired.ENQUEUED
    (cloud_task,) = cloud_tasks.tasks()
    package = package_of(cloud_task)
    assert cloud_task.name.endswith(f"/tasks/{slot.task_id}")
    assert package["id"] == slot.task_id
    assert package["args"] == (1, "two")
    assert package["kwargs"] == {"flag": True, "slot": slot.time.isoformat()}
    assert (package["hook"], package["group"], package["cluster"]) == (
        "tests.project.tasks.record_hook",
        "nightly",
        "tests",
    )


def test_firing_moves_the_schedule_on_and_records_the_task(cloud_tasks):
    schedule = make_schedule(repeats=3)
    slot = slot_of(schedule)
    fire(slot)
    schedule.refresh_from_db()
    assert schedule.next_run == slot.time + timedelta(minutes=5)
    assert (schedule.repeats, schedule.task) == (2, slot.task_id)


def test_a_slot_fires_once_however_often_its_wake_up_arrives(cloud_tasks):
    slot = slot_of(make_schedule())
    assert [fire(slot) for _ in range(3)] == [Fired.ENQUEUED, Fired.STALE, Fired.STALE]
    assert len([t for t in cloud_tasks.tasks() if t.name.endswith(slot.task_id)]) == 1


def test_a_firing_killed_between_enqueue_and_commit_enqueues_once_when_retried(cloud_tasks):
    schedule = make_schedule()
    slot = slot_of(schedule)

    fire_killed_before_commit(slot)
    assert Schedule.objects.get(pk=schedule.pk).next_run == slot.time  # rolled back
    assert len(cloud_tasks.tasks()) == 1  # but the task was in Cloud Tasks

    assert fire(slot) is Fired.ENQUEUED  # Cloud Scheduler retries the wake-up
    assert [t.name.rsplit("/", 1)[1] for t in cloud_tasks.tasks()] == [slot.task_id]
    assert Schedule.objects.get(pk=schedule.pk).next_run == slot.time + timedelta(minutes=5)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda s: s.delete(), id="deleted"),
        pytest.param(lambda s: Schedule.objects.filter(pk=s.pk).update(repeats=0), id="disabled"),
        pytest.param(
            lambda s: Schedule.objects.filter(pk=s.pk).update(
                next_run=s.next_run + timedelta(hours=1)
            ),
            id="postponed",
        ),
    ],
)
def test_a_schedule_edited_before_its_slot_does_not_fire_the_old_slot(cloud_tasks, edit):
    schedule = make_schedule()
    tick()
    edit(schedule)
    assert fire(slot_of_wake_up(cloud_tasks)) is Fired.STALE
    assert len(cloud_tasks.tasks()) == 1  # the wake-up alone


def slot_of_wake_up(cloud_tasks: Any) -> Slot:
    (wake_up,) = cloud_tasks.tasks()
    return Slot.unsign(wake_up.http_request.body)


def test_arguments_edited_before_the_slot_are_the_ones_that_run(cloud_tasks):
    schedule = make_schedule(args="1, 2")
    tick()
    Schedule.objects.filter(pk=schedule.pk).update(args="3, -4")
    fire(slot_of_wake_up(cloud_tasks))
    task = next(t for t in cloud_tasks.tasks() if t.http_request.url.endswith("/_tasks/"))
    assert package_of(task)["args"] == (3, -4)


@pytest.mark.parametrize(
    ("field", "value"),
    [("args", "1, (2"), ("kwargs", "x=open"), ("kwargs", "[1, 2]")],
)
def test_a_broken_schedule_records_a_failure_and_moves_on(cloud_tasks, field, value):
    broken = make_schedule(**{field: value})
    slot = slot_of(broken)
    assert fire(slot) is Fired.BROKEN
    failure = Failure.objects.get(id=slot.task_id)
    assert "could not make a task" in failure.result
    broken.refresh_from_db()
    assert (broken.next_run, broken.task) == (slot.time + timedelta(minutes=5), slot.task_id)
    assert cloud_tasks.tasks() == []


def test_a_schedule_whose_next_run_cannot_be_worked_out_records_why_and_stops(cloud_tasks):
    schedule = make_schedule(schedule_type=Schedule.CRON, cron="0 3 * * *")
    Schedule.objects.filter(pk=schedule.pk).update(cron="not a cron line")
    slot = slot_of(schedule)
    assert fire(slot) is Fired.BROKEN
    assert "could not work out its next run" in Failure.objects.get(id=slot.task_id).result
    assert Schedule.objects.get(pk=schedule.pk).repeats == 0
    assert tick().due == 0


def test_a_schedule_for_a_cluster_q_cluster_does_not_define_is_broken(cloud_tasks):
    slot = slot_of(make_schedule(kwargs="q_options={'cluster': 'nowhere'}"))
    assert fire(slot) is Fired.BROKEN
    assert "'nowhere' is not defined" in Failure.objects.get(id=slot.task_id).result


def test_a_once_schedule_is_deleted_after_firing(cloud_tasks):
    slot = slot_of(make_schedule(schedule_type=Schedule.ONCE))
    fire(slot)
    assert not Schedule.objects.filter(pk=slot.schedule_id).exists()


def test_a_once_schedule_with_repeats_is_ended_not_deleted(cloud_tasks):
    slot = slot_of(make_schedule(schedule_type=Schedule.ONCE, repeats=2))
    fire(slot)
    schedule = Schedule.objects.get(pk=slot.schedule_id)
    assert (schedule.repeats, schedule.task) == (0, slot.task_id)


def test_the_last_repeat_ends_the_schedule(cloud_tasks):
    slot = slot_of(make_schedule(repeats=1))
    fire(slot)
    assert Schedule.objects.get(pk=slot.schedule_id).repeats == 0
    assert tick().due == 0


def test_a_schedules_cluster_routes_its_task_to_its_own_queue(cloud_tasks):
    fire(slot_of(make_schedule(cluster="second")))
    (task,) = cloud_tasks.tasks("second")
    assert package_of(task)["cluster"] == "second"


def test_a_job_clusters_schedule_fires_a_task_its_job_reads_from_the_database(
    cloud_tasks, configure
):
    long = {
        "timeout": 7200,
        "cloud_tasks": {"target": "cloud_run_job", "job": "worker", "queue": "second-queue"},
    }
    configure(q_cluster={"ALT_CLUSTERS": {"long": long}})
    fire(slot_of(make_schedule(cluster="long")))
    (task,) = cloud_tasks.tasks("second")
    assert task.http_request.headers["Content-Type"] == wire.REFERENCE_CONTENT_TYPE
    reference = wire.read_reference(task.http_request.body)
    assert SignedPackage.loads(payloads.stored(reference.task_id))["cluster"] == "long"


def test_an_app_engine_clusters_wake_up_goes_to_the_schedule_path_in_its_service(
    app_engine_cloud_tasks,
):
    make_schedule(cluster="worker")
    tick()
    (wake_up,) = app_engine_cloud_tasks.tasks("second")
    assert wake_up.app_engine_http_request.relative_uri == "/_tasks/schedule/"
    assert wake_up.app_engine_http_request.app_engine_routing.service == "worker"


def test_firing_plans_the_next_wake_up_when_it_falls_before_the_next_tick(cloud_tasks):
    schedule = make_schedule(minutes=1)
    slot = slot_of(schedule)
    fire(slot)
    wake_ups = [t for t in cloud_tasks.tasks() if t.http_request.url.endswith("/schedule/")]
    assert [Slot.unsign(t.http_request.body).time for t in wake_ups] == [
        slot.time + timedelta(minutes=1)
    ]


def test_a_wake_up_that_came_early_still_starts_its_task_at_the_slot(cloud_tasks):
    slot = slot_of(make_schedule(next_run=timezone.now() + timedelta(seconds=40)))
    fire(slot)
    (task,) = cloud_tasks.tasks()
    assert task.schedule_time == slot.time


# The slot after a slot: every django-q schedule type

JAN_31 = datetime(2027, 1, 31, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule_type", "extra", "expected"),
    [
        (Schedule.MINUTES, {"minutes": 15}, datetime(2027, 1, 31, 9, 15, tzinfo=UTC)),
        (Schedule.HOURLY, {}, datetime(2027, 1, 31, 10, 0, tzinfo=UTC)),
        (Schedule.DAILY, {}, datetime(2027, 2, 1, 9, 0, tzinfo=UTC)),
        (Schedule.WEEKLY, {}, datetime(2027, 2, 7, 9, 0, tzinfo=UTC)),
        (Schedule.BIWEEKLY, {}, datetime(2027, 2, 14, 9, 0, tzinfo=UTC)),
        (Schedule.MONTHLY, {}, datetime(2027, 2, 28, 9, 0, tzinfo=UTC)),
        (Schedule.BIMONTHLY, {}, datetime(2027, 3, 31, 9, 0, tzinfo=UTC)),
        (Schedule.QUARTERLY, {}, datetime(2027, 4, 30, 9, 0, tzinfo=UTC)),
        (Schedule.YEARLY, {}, datetime(2028, 1, 31, 9, 0, tzinfo=UTC)),
        (Schedule.CRON, {"cron": "30 8 * * 1"}, datetime(2027, 2, 1, 8, 30, tzinfo=UTC)),
    ],
)
def test_the_next_slot_of_each_schedule_type(schedule_type, extra, expected):
    schedule = Schedule(func="f", schedule_type=schedule_type, **extra)
    assert next_slot(schedule, JAN_31, now=JAN_31) == expected


def test_a_cron_slot_counts_from_the_slot_not_from_now():
    schedule = Schedule(func="f", schedule_type=Schedule.CRON, cron="*/5 * * * *")
    now = JAN_31 - timedelta(minutes=1)  # the 9:00 slot, fired a minute early
    assert next_slot(schedule, JAN_31, now=now) == JAN_31 + timedelta(minutes=5)


def test_with_catch_up_every_missed_slot_runs(monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "CATCH_UP", True)
    schedule = Schedule(func="f", schedule_type=Schedule.HOURLY)
    assert next_slot(schedule, JAN_31, now=JAN_31 + timedelta(days=1)) == JAN_31 + timedelta(
        hours=1
    )


def test_without_catch_up_missed_slots_are_skipped(monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "CATCH_UP", False)
    schedule = Schedule(func="f", schedule_type=Schedule.HOURLY)
    now = JAN_31 + timedelta(days=1, minutes=10)
    assert next_slot(schedule, JAN_31, now=now) == JAN_31 + timedelta(days=1, hours=1)


# Wake-up bodies


def test_a_wake_up_body_is_signed_json_never_a_pickle():
    body = Slot(7, JAN_31).sign()
    assert Slot.unsign(body) == Slot(7, JAN_31)
    payload = body.split(b":")[0]
    decoded = base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4))
    assert json.loads(decoded) == {"schedule": 7, "slot": JAN_31.isoformat()}


@pytest.mark.parametrize(
    "body",
    [b"", b"not signed", b"\xff\xfe", b'{"schedule": 7, "slot": "2027-01-31T09:00:00+00:00"}'],
)
def test_a_wake_up_body_not_signed_by_this_project_is_refused(body):
    with pytest.raises(BadWakeUp):
        Slot.unsign(body)
