"""Each cluster's queue, read and steered (``queue_admin.py``), against the built-in emulator."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from django_q.humanhash import humanize
from django_q.models import Schedule
from django_q.tasks import async_task

from django_q_cloudtasks import wire
from django_q_cloudtasks.conf import queue_settings
from django_q_cloudtasks.exceptions import QueueUnavailable
from django_q_cloudtasks.gcp import queue_admin, tasks
from django_q_cloudtasks.scheduling import tick
from django_q_cloudtasks.wire import PACKAGE_CONTENT_TYPE
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_inspect_reads_state_settings_and_statistics(paused_cloud_tasks):
    before = timezone.now()
    async_task("tests.project.tasks.echo", 1)
    async_task("tests.project.tasks.echo", 2)
    qs = queue_settings()
    info = queue_admin.inspect(qs)
    assert info.settings == qs
    assert (info.state, info.paused) == ("PAUSED", True)
    # The emulator's queues have Cloud Tasks' defaults.
    assert (info.max_dispatches_per_second, info.max_burst_size) == (500.0, 100)
    assert (info.max_concurrent_dispatches, info.max_attempts) == (1000, 100)
    assert (info.min_backoff, info.max_backoff, info.max_doublings) == (0.1, 3600.0, 16)
    assert info.max_retry_duration == 0.0
    assert info.stats is not None
    assert (info.stats.tasks, info.stats.running, info.stats.executed_last_minute) == (2, 0, 0)
    assert info.stats.effective_rate == 0.0  # paused
    assert info.stats.oldest_arrival is not None
    assert before - timedelta(seconds=1) <= info.stats.oldest_arrival <= timezone.now()

    queue_admin.resume(qs)
    assert queue_admin.inspect(qs).state == "RUNNING"
    queue_admin.pause(qs)
    assert queue_admin.inspect(qs).paused


def test_waiting_tasks_name_a_task_as_django_q_does(paused_cloud_tasks):
    task_id = async_task("tests.project.tasks.echo", 1)
    (task,) = queue_admin.waiting_tasks(queue_settings())
    assert (task.task_id, task.kind, task.name) == (task_id, "task", humanize(task_id))
    assert task.func == "tests.project.tasks.echo"
    assert (task.dispatch_count, task.response_count, task.last_response) == (0, 0, None)
    assert task.schedule_time is not None


def test_waiting_tasks_read_a_task_sent_by_reference(paused_cloud_tasks):
    task_id = async_task("tests.project.tasks.digest", os.urandom(1_100_000))
    (cloud_task,) = paused_cloud_tasks.tasks()
    assert cloud_task.http_request.headers["Content-Type"] == wire.REFERENCE_CONTENT_TYPE
    (task,) = queue_admin.waiting_tasks(queue_settings())
    assert (task.task_id, task.kind, task.name) == (task_id, "task", humanize(task_id))
    assert task.func == "tests.project.tasks.digest"


def test_waiting_tasks_show_a_schedules_wake_up(paused_cloud_tasks):
    slot = (timezone.now() + timedelta(seconds=30)).replace(microsecond=0)
    schedule = Schedule.objects.create(
        func="math.floor", args="1.5", schedule_type=Schedule.ONCE, next_run=slot
    )
    tick()
    (task,) = queue_admin.waiting_tasks(queue_settings())
    assert (task.kind, task.name) == ("wake-up", f"schedule {schedule.pk}")
    assert task.func == f"slot {slot.isoformat()}"
    assert task.schedule_time == slot


def test_waiting_app_engine_tasks_are_named_as_the_others(app_engine_cloud_tasks):
    task_id = async_task("tests.project.tasks.echo", 1, cluster="worker")
    Schedule.objects.create(
        func="math.floor",
        schedule_type=Schedule.ONCE,
        next_run=timezone.now() + timedelta(seconds=30),
        cluster="worker",
    )
    tick()
    listed = {task.kind: task for task in queue_admin.waiting_tasks(queue_settings("worker"))}
    assert (listed["task"].name, listed["task"].django_q_id) == (humanize(task_id), task_id)
    assert listed["task"].func == "tests.project.tasks.echo"
    assert listed["wake-up"].name.startswith("schedule ")


def test_waiting_tasks_say_why_a_body_is_unreadable(paused_cloud_tasks):
    qs = queue_settings()
    for name, content_type in (("forged", PACKAGE_CONTENT_TYPE), ("stranger", "text/plain")):
        paused_cloud_tasks.client.create_task(
            parent=qs.queue_path,
            task={
                "name": qs.task_path(name),
                "http_request": {
                    "url": qs.url,
                    "body": b"not a package",
                    "headers": {"Content-Type": content_type},
                },
            },
        )
    tasks = {task.task_id: task for task in queue_admin.waiting_tasks(qs)}
    assert {task.kind for task in tasks.values()} == {"unreadable"}
    assert "signature matches neither SECRET_KEY" in tasks["forged"].func
    assert tasks["stranger"].func == "content type 'text/plain'"


@pytest.mark.parametrize(
    "call",
    [
        queue_admin.inspect,
        queue_admin.check,
        queue_admin.waiting_tasks,
        queue_admin.pause,
        queue_admin.resume,
        queue_admin.purge,
        lambda qs: tasks.run_task(qs, "a-task"),
        lambda qs: tasks.delete_task(qs, "a-task"),
    ],
    ids=["inspect", "check", "waiting_tasks", "pause", "resume", "purge", "run", "delete"],
)
def test_an_unreachable_queue_fails_at_once_saying_which_and_why(configure, call):
    configure(emulator_host="127.0.0.1:9")  # nothing listens on port 9
    qs = queue_settings()
    started = time.monotonic()
    with pytest.raises(QueueUnavailable) as raised:
        call(qs)
    assert time.monotonic() - started < 5  # one attempt, not the client's 20 s of retries
    assert qs.queue_path in str(raised.value)
    assert "is the emulator at 127.0.0.1:9 running?" in str(raised.value)


def per_queue(cloud_tasks: Any) -> dict[str, int]:
    """The number of tasks each of the main cluster's queues holds."""
    return {
        path.rsplit("/", 1)[1]: len(list(cloud_tasks.client.list_tasks(parent=path)))
        for path in queue_settings().queue_paths
    }


def test_a_cluster_with_shards_is_read_and_steered_as_one_queue(sharded_cloud_tasks):
    task_ids = [async_task("tests.project.tasks.echo", n) for n in range(30)]
    spread = per_queue(sharded_cloud_tasks)
    assert sum(spread.values()) == 30
    assert all(spread.values()), spread
    qs = queue_settings()
    info = queue_admin.inspect(qs)
    assert (info.state, info.stats.tasks) == ("PAUSED", 30)
    listed = queue_admin.waiting_tasks(qs, limit=None)
    assert sorted(task.task_id for task in listed) == sorted(task_ids)
    assert [task.schedule_time for task in listed] == sorted(task.schedule_time for task in listed)
    assert len(queue_admin.waiting_tasks(qs, limit=10)) == 10

    assert queue_admin.purge(qs) is True
    wait_for(lambda: not any(per_queue(sharded_cloud_tasks).values()))
    queue_admin.resume(qs)
    assert queue_admin.inspect(qs).state == "RUNNING"
    # One queue of the cluster paused is the cluster's state: it is what to look at.
    sharded_cloud_tasks.client.pause_queue(name=qs.queue_paths[2])
    assert queue_admin.inspect(qs).paused
    queue_admin.pause(qs)
    states = [sharded_cloud_tasks.client.get_queue(name=path).state for path in qs.queue_paths]
    assert {type(state)(state).name for state in states} == {"PAUSED"}
