"""Tasks that run later: async_task_after, and hops for times beyond Cloud Tasks' 30 days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from django_q.models import Success
from django_q.signing import SignedPackage

from django_q_cloudtasks import async_task_after
from django_q_cloudtasks.delays import HOP, MAX_SCHEDULE_AHEAD, Arrival, arrival, next_hop, resolve
from django_q_cloudtasks.exceptions import EnqueueError
from tests.support.packages import make_task

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)


def name_of(cloud_task) -> str:
    return cloud_task.name.rsplit("/", 1)[1]


def test_a_countdown_becomes_the_schedule_time(paused_cloud_tasks):
    before = timezone.now()
    task_id = async_task_after(timedelta(minutes=10), "math.copysign", 2, -2)
    (cloud_task,) = paused_cloud_tasks.tasks()
    assert name_of(cloud_task) == task_id
    assert before + timedelta(minutes=10) <= cloud_task.schedule_time
    assert cloud_task.schedule_time <= timezone.now() + timedelta(minutes=10)


def test_a_time_becomes_the_schedule_time_and_options_still_apply(paused_cloud_tasks):
    at = timezone.now() + timedelta(days=3)
    async_task_after(
        at, "math.copysign", 2, -2, cluster="second", hook="tests.project.tasks.record_hook"
    )
    (cloud_task,) = paused_cloud_tasks.tasks("second")
    assert cloud_task.schedule_time == at
    package = SignedPackage.loads(cloud_task.http_request.body.decode())
    assert (package["cluster"], package["hook"], package["run_after"]) == (
        "second",
        "tests.project.tasks.record_hook",
        at,
    )


def test_a_time_beyond_thirty_days_is_reached_in_hops(paused_cloud_tasks):
    at = timezone.now() + timedelta(days=45)
    task_id = async_task_after(at, "math.copysign", 2, -2)
    (cloud_task,) = paused_cloud_tasks.tasks()
    assert name_of(cloud_task) == f"{task_id}-1"
    assert cloud_task.schedule_time == at - HOP


def test_hops_lead_to_the_time_asked_even_when_delivered_late():
    run_after = NOW + timedelta(days=100)
    names, now = [], NOW
    while True:
        name, schedule_time = next_hop("abc", run_after, now)
        assert schedule_time is not None
        assert schedule_time - now <= MAX_SCHEDULE_AHEAD
        names.append(name)
        if name == "abc":
            break
        now = schedule_time + timedelta(hours=20)  # every hop arrives late
    assert names == ["abc-3", "abc-2", "abc-1", "abc"]
    assert schedule_time == run_after


def test_a_time_in_the_past_runs_now():
    assert next_hop("abc", NOW - timedelta(seconds=1), NOW) == ("abc", None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(hours=1), NOW + timedelta(hours=1)),
        (90, NOW + timedelta(seconds=90)),
        (1.5, NOW + timedelta(seconds=1.5)),
        (NOW + timedelta(days=2), NOW + timedelta(days=2)),
    ],
)
def test_run_after_takes_a_time_a_timedelta_or_seconds(value, expected):
    assert resolve(value, NOW) == expected


def test_a_naive_time_is_refused():
    with pytest.raises(ValueError, match="no time zone"):
        resolve(datetime(2027, 1, 1, 12, 0), NOW)


@pytest.mark.parametrize("value", ["10", None, True])
def test_anything_else_is_refused(value):
    with pytest.raises(TypeError, match="run_after must be"):
        resolve(value, NOW)


def test_a_task_is_early_only_beyond_a_few_minutes():
    assert arrival({"id": "abc", "run_after": NOW + timedelta(minutes=6)}, now=NOW) is Arrival.HOP
    assert arrival({"id": "abc", "run_after": NOW + timedelta(minutes=4)}, now=NOW) is Arrival.DUE
    assert arrival({"id": "abc"}, now=NOW) is Arrival.DUE


def test_the_receiver_forwards_an_early_hop_and_runs_nothing(paused_cloud_tasks, deliver):
    run_after = timezone.now() + timedelta(days=40)
    task = make_task("math.copysign", 2, -2, run_after=run_after, cluster="tests")
    response = deliver(task)
    assert response.status_code == 200
    assert response.json()["status"] == "forwarded"
    (cloud_task,) = paused_cloud_tasks.tasks()
    assert name_of(cloud_task) == f"{task['id']}-1"
    assert not Success.objects.filter(id=task["id"]).exists()

    assert deliver(task).status_code == 200  # the same hop, delivered twice
    assert len(paused_cloud_tasks.tasks()) == 1


def test_the_receiver_runs_the_last_hop(deliver):
    task = make_task("math.copysign", 2, -2, run_after=timezone.now() + timedelta(seconds=30))
    assert deliver(task).json()["status"] == "succeeded"
    assert Success.objects.get(id=task["id"]).result == -2.0


def test_an_enqueue_error_names_the_django_q_task_not_the_hop(configure):
    configure(emulator_host="127.0.0.1:9", enqueue_timeout=1)
    with pytest.raises(EnqueueError) as raised:
        async_task_after(timedelta(days=45), "math.copysign", 2, -2)
    assert len(raised.value.task_id) == 32
    assert "-" not in raised.value.task_id
    assert f"task {raised.value.task_id} to" in str(raised.value)
