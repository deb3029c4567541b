"""Delivery: real HTTP requests to a loopback endpoint, with the real service's headers,
retries, deadlines and rate limits."""

from __future__ import annotations

import time

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2

from tests.conftest import wait_for
from tests.emulator.conftest import QUEUE, golden, set_retry

CLOUD_TASKS_HEADERS = ("user-agent", "x-cloudtasks-")


def _cloud_tasks_headers(delivery):
    return {
        name.lower(): value
        for name, value in delivery.headers.items()
        if name.lower().startswith(CLOUD_TASKS_HEADERS)
    }


def test_attempts_carry_the_headers_the_real_service_sends(api, create, target):
    recording = next(r for r in golden("dispatch.json") if r["requestType"] == "http")
    target.answer(*(attempt["status"] for attempt in recording["attempts"][:-1]))
    create("recorded")
    wait_for(lambda: len(target.deliveries) == len(recording["attempts"]))
    for attempt, delivery in zip(recording["attempts"], target.deliveries, strict=True):
        expected = {
            name.lower(): value.replace("{queue}", "work").replace("{task}", "recorded")
            for name, value in attempt["headers"].items()
        }
        eta = _cloud_tasks_headers(delivery).pop("x-cloudtasks-tasketa")
        assert expected.pop("x-cloudtasks-tasketa") == "{eta}"
        assert abs(float(eta) - delivery.received) < 5
        actual = _cloud_tasks_headers(delivery)
        del actual["x-cloudtasks-tasketa"]
        assert actual == expected, f"attempt {attempt['attempt']}"


@pytest.mark.parametrize(
    "recording",
    [r for r in golden("headers.json") if r["requestType"] == "http"],
    ids=lambda r: r["name"],
)
def test_a_tasks_own_headers_arrive_as_sent(api, create, target, recording):
    create("headers", http_request={"headers": recording["sent"]})
    delivery = wait_for(lambda: target.deliveries and target.deliveries[0])
    for name, value in recording["createFull"]["headers"].items():
        assert delivery.header(name) == value
    assert delivery.header("content-type") == recording["sent"].get("content-type")
    assert delivery.body == b"payload"


def test_failed_attempts_are_retried_with_the_queues_backoff(api, create, target):
    set_retry(api, min_backoff={"seconds": 1}, max_doublings=1, max_backoff={"seconds": 10})
    target.answer(500, 500, 500)
    create("backoff")
    wait_for(lambda: len(target.deliveries) == 4, timeout=15)
    gaps = [
        b.received - a.finished
        for a, b in zip(target.deliveries, target.deliveries[1:], strict=False)
    ]
    # 1 s, doubled once to 2 s, then growing by 2 s: 4 s.
    for gap, expected in zip(gaps, [1, 2, 4], strict=True):
        assert expected - 0.05 < gap < expected + 0.75


def test_a_task_is_dropped_once_its_queue_gives_up(api, create, target):
    set_retry(api, max_attempts=2, min_backoff={"nanos": 100_000_000})
    target.answer(500, 500, 500)
    name = create("doomed").name
    wait_for(lambda: len(target.deliveries) == 2)
    time.sleep(0.5)
    assert len(target.deliveries) == 2
    with pytest.raises(exceptions.NotFound, match="existed recently"):
        api.get_task(name=name)


def test_a_task_records_its_attempts(api, create, target):
    api.pause_queue(name=QUEUE)
    set_retry(api, min_backoff={"seconds": 60})
    target.answer(404)
    name = create("counted").name
    api.run_task(name=name)  # RunTask delivers even from a paused queue
    wait_for(lambda: api.get_task(name=name).dispatch_count == 1)
    task = api.get_task(name=name)
    assert (task.dispatch_count, task.response_count) == (1, 1)
    assert task.last_attempt.response_status.code == 5  # NOT_FOUND
    assert task.first_attempt.dispatch_time == task.last_attempt.dispatch_time
    assert task.schedule_time.timestamp() > time.time() + 50  # next try after min_backoff


def test_no_answer_within_the_dispatch_deadline_is_a_failed_attempt(api, create, target):
    target.delay = 16
    set_retry(api, max_attempts=1)
    started = time.monotonic()
    name = create("slow", dispatch_deadline={"seconds": 15}).name
    wait_for(lambda: target.deliveries)
    with pytest.raises(exceptions.NotFound):
        wait_for(lambda: api.get_task(name=name) and None, timeout=20)
    assert 14.5 < time.monotonic() - started < 17


def test_a_paused_queue_keeps_its_tasks_until_resumed(api, create, target):
    api.pause_queue(name=QUEUE)
    create("held")
    time.sleep(0.5)
    assert target.deliveries == []
    api.resume_queue(name=QUEUE)
    wait_for(lambda: target.deliveries)


def test_a_task_waits_for_its_schedule_time(api, create, target):
    task = create("later", delay=1.5)
    delivery = wait_for(lambda: target.deliveries and target.deliveries[0])
    assert delivery.received >= task.schedule_time.timestamp()
    assert delivery.received - task.schedule_time.timestamp() < 0.5


def test_dispatches_run_concurrently_up_to_the_queues_limit(api, create, target):
    target.delay = 0.5
    api.update_queue(
        queue={"name": QUEUE, "rate_limits": {"max_concurrent_dispatches": 3}},
        update_mask={"paths": ["rate_limits.max_concurrent_dispatches"]},
    )
    for number in range(9):
        create(f"parallel-{number}")
    wait_for(lambda: len([d for d in target.deliveries if d.finished]) == 9)
    assert target.most_in_flight == 3


def test_dispatches_per_second_are_capped_by_the_queues_rate(api, create, target):
    api.pause_queue(name=QUEUE)
    api.update_queue(
        queue={"name": QUEUE, "rate_limits": {"max_dispatches_per_second": 4}},
        update_mask={"paths": ["rate_limits.max_dispatches_per_second"]},
    )
    for number in range(12):
        create(f"paced-{number}")
    api.resume_queue(name=QUEUE)
    wait_for(lambda: len(target.deliveries) == 12)
    times = sorted(d.received for d in target.deliveries)
    # A burst of 4, then one every 0.25 s: the last of 12 about 2 s after the first.
    assert 1.8 < times[-1] - times[0] < 3.0


def test_purging_deletes_waiting_tasks(api, create, target):
    api.pause_queue(name=QUEUE)
    for number in range(3):
        create(f"purged-{number}")
    api.purge_queue(name=QUEUE)
    api.resume_queue(name=QUEUE)
    assert list(api.list_tasks(parent=QUEUE)) == []
    time.sleep(0.3)
    assert target.deliveries == []


def test_a_succeeded_task_is_deleted_and_its_name_kept_from_reuse(api, create, target):
    name = create("once").name
    wait_for(lambda: target.deliveries)
    wait_for(lambda: not list(api.list_tasks(parent=QUEUE)))
    with pytest.raises(exceptions.AlreadyExists):
        create("once")
    with pytest.raises(exceptions.NotFound, match="existed recently"):
        api.get_task(request={"name": name, "response_view": tasks_v2.Task.View.FULL})
