"""Each cluster's queue, read and steered (``queues.py``), against the built-in emulator."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.humanhash import humanize
from django_q.models import Schedule
from django_q.tasks import async_task

from django_q_cloudtasks import payloads, queues
from django_q_cloudtasks.conf import queue_settings
from django_q_cloudtasks.models import Payload
from django_q_cloudtasks.packages import CONTENT_TYPE
from django_q_cloudtasks.scheduling import tick
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_inspect_reads_state_settings_and_statistics(paused_cloud_tasks):
    before = timezone.now()
    async_task("tests.project.tasks.echo", 1)
    async_task("tests.project.tasks.echo", 2)
    qs = queue_settings()
    info = queues.inspect(qs)
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

    queues.resume(qs)
    assert queues.inspect(qs).state == "RUNNING"
    queues.pause(qs)
    assert queues.inspect(qs).paused


def test_waiting_tasks_name_a_task_as_django_q_does(paused_cloud_tasks):
    task_id = async_task("tests.project.tasks.echo", 1)
    (task,) = queues.waiting_tasks(queue_settings())
    assert (task.task_id, task.kind, task.name) == (task_id, "task", humanize(task_id))
    assert task.func == "tests.project.tasks.echo"
    assert (task.dispatch_count, task.response_count, task.last_response) == (0, 0, None)
    assert task.schedule_time is not None


def test_waiting_tasks_read_a_task_sent_by_reference(paused_cloud_tasks):
    task_id = async_task("tests.project.tasks.digest", os.urandom(1_100_000))
    (cloud_task,) = paused_cloud_tasks.tasks()
    assert cloud_task.http_request.headers["Content-Type"] == payloads.REFERENCE_CONTENT_TYPE
    (task,) = queues.waiting_tasks(queue_settings())
    assert (task.task_id, task.kind, task.name) == (task_id, "task", humanize(task_id))
    assert task.func == "tests.project.tasks.digest"


def test_waiting_tasks_show_a_schedules_wake_up(paused_cloud_tasks):
    slot = (timezone.now() + timedelta(seconds=30)).replace(microsecond=0)
    schedule = Schedule.objects.create(
        func="math.floor", args="1.5", schedule_type=Schedule.ONCE, next_run=slot
    )
    tick()
    (task,) = queues.waiting_tasks(queue_settings())
    assert (task.kind, task.name) == ("wake-up", f"schedule {schedule.pk}")
    assert task.func == f"slot {slot.isoformat()}"
    assert task.schedule_time == slot


def test_waiting_tasks_say_why_a_body_is_unreadable(paused_cloud_tasks):
    qs = queue_settings()
    for name, content_type in (("forged", CONTENT_TYPE), ("stranger", "text/plain")):
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
    tasks = {task.task_id: task for task in queues.waiting_tasks(qs)}
    assert {task.kind for task in tasks.values()} == {"unreadable"}
    assert "signature matches neither SECRET_KEY" in tasks["forged"].func
    assert tasks["stranger"].func == "content type 'text/plain'"


def test_run_now_dispatches_a_task_of_a_paused_queue(paused_cloud_tasks, target):
    target.answer(500)
    task_id = async_task("tests.project.tasks.echo", 1)
    qs = queue_settings()
    assert queues.run_now(qs, task_id) is True
    wait_for(lambda: queues.waiting_tasks(qs)[0].response_count == 1)
    (task,) = queues.waiting_tasks(qs)  # answered 500: it waits for its retry
    assert (task.dispatch_count, task.last_response) == (1, "HTTP status code 500")
    assert task.last_attempt_time is not None
    assert len(target.deliveries) == 1
    assert queues.inspect(qs).paused


def test_run_now_of_a_task_that_is_gone_returns_false(paused_cloud_tasks):
    assert queues.run_now(queue_settings(), "no-such-task") is False


def test_delete_discards_the_payload_of_a_task_sent_by_reference(paused_cloud_tasks):
    task_id = async_task("tests.project.tasks.digest", os.urandom(1_100_000))
    assert Payload.objects.filter(task_id=task_id).exists()
    assert queues.delete(queue_settings(), task_id) is True
    assert paused_cloud_tasks.tasks() == []
    assert not Payload.objects.filter(task_id=task_id).exists()


def test_delete_of_a_task_that_is_gone_returns_false(paused_cloud_tasks):
    task_id = async_task("tests.project.tasks.echo", 1)
    qs = queue_settings()
    assert queues.delete(qs, task_id) is True
    assert queues.delete(qs, task_id) is False


@pytest.mark.parametrize(
    "call",
    [
        queues.inspect,
        queues.waiting_tasks,
        queues.pause,
        queues.resume,
        lambda qs: queues.run_now(qs, "a-task"),
        lambda qs: queues.delete(qs, "a-task"),
    ],
    ids=["inspect", "waiting_tasks", "pause", "resume", "run_now", "delete"],
)
def test_an_unreachable_queue_fails_at_once_saying_which_and_why(configure, call):
    configure(emulator_host="127.0.0.1:9")  # nothing listens on port 9
    qs = queue_settings()
    started = time.monotonic()
    with pytest.raises(queues.QueueUnavailable) as raised:
        call(qs)
    assert time.monotonic() - started < 5  # one attempt, not the client's 20 s of retries
    assert qs.queue_path in str(raised.value)
    assert "Is the emulator at 127.0.0.1:9 running?" in str(raised.value)
