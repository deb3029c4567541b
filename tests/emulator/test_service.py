"""The gRPC API, through the official client library: what it answers, and how it refuses.

Every refusal is compared with a recording of the real service (``realcloud.json``).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2

from django_q_cloudtasks.gcp.client import tasks_beta_client
from tests.emulator.conftest import PARENT, QUEUE, golden

OTHER = f"{PARENT}/queues/other"
GONE = f"{PARENT}/queues/gone"


def _created_then_deleted(api: tasks_v2.CloudTasksClient, queue: str = GONE) -> str:
    api.create_queue(parent=PARENT, queue={"name": queue})
    api.delete_queue(name=queue)
    return queue


def _finished_task(api: tasks_v2.CloudTasksClient, create: Callable[..., Any]) -> str:
    api.pause_queue(name=QUEUE)
    name = create("done").name
    api.delete_task(name=name)
    return name


# Each recorded case of the real service, replayed against the emulator.
SCENARIOS: dict[str, Callable[[tasks_v2.CloudTasksClient, Callable[..., Any]], Any]] = {
    "queue/create/already-exists": lambda api, _: api.create_queue(
        parent=PARENT, queue={"name": QUEUE}
    ),
    "queue/create/invalid-name": lambda api, _: api.create_queue(
        parent=PARENT, queue={"name": f"{PARENT}/queues/not a valid name"}
    ),
    "queue/create/invalid-parent": lambda api, _: api.create_queue(
        parent="not-a-valid-parent", queue={"name": QUEUE}
    ),
    "queue/create/recently-deleted": lambda api, _: api.create_queue(
        parent=PARENT, queue={"name": _created_then_deleted(api)}
    ),
    "queue/delete/not-found": lambda api, _: api.delete_queue(name=OTHER),
    "queue/get/not-found": lambda api, _: api.get_queue(name=OTHER),
    "queue/get/recently-deleted": lambda api, _: api.get_queue(name=_created_then_deleted(api)),
    "queue/pause/not-found": lambda api, _: api.pause_queue(name=OTHER),
    "queue/purge/not-found": lambda api, _: api.purge_queue(name=OTHER),
    "queue/resume/not-found": lambda api, _: api.resume_queue(name=OTHER),
    "task/create/already-exists": lambda api, create: (create("twice"), create("twice")),
    "task/create/invalid-name": lambda api, create: create("not a valid id"),
    "task/create/queue-mismatch": lambda api, create: api.create_task(
        parent=QUEUE, task={"name": f"{QUEUE}-other/tasks/x", "http_request": {"url": "http://x/"}}
    ),
    "task/create/queue-not-found": lambda api, create: create("x", queue=OTHER),
    "task/create/queue-recently-deleted": lambda api, create: create(
        "x", queue=_created_then_deleted(api)
    ),
    "task/delete/not-found": lambda api, _: api.delete_task(name=f"{QUEUE}/tasks/nothing"),
    "task/get/not-found": lambda api, _: api.get_task(name=f"{QUEUE}/tasks/nothing"),
    "task/get/recently-deleted": lambda api, create: api.get_task(name=_finished_task(api, create)),
    "task/run/not-found": lambda api, _: api.run_task(name=f"{QUEUE}/tasks/nothing"),
}
GRPC_CODE = {
    "AlreadyExists": grpc.StatusCode.ALREADY_EXISTS,
    "InvalidArgument": grpc.StatusCode.INVALID_ARGUMENT,
    "PermissionDenied": grpc.StatusCode.PERMISSION_DENIED,
    "FailedPrecondition": grpc.StatusCode.FAILED_PRECONDITION,
    "NotFound": grpc.StatusCode.NOT_FOUND,
}


def test_every_recorded_case_has_a_scenario():
    assert sorted(case["name"] for case in golden("realcloud.json")) == sorted(SCENARIOS)


@pytest.mark.parametrize("case", golden("realcloud.json"), ids=lambda case: case["name"])
def test_refusals_match_the_real_service(api, create, case):
    with pytest.raises(exceptions.GoogleAPICallError) as refused:
        SCENARIOS[case["name"]](api, create)
    expected = case["template"].replace("{queue_path}", QUEUE)
    assert refused.value.grpc_status_code == GRPC_CODE[case["code"]]
    assert refused.value.message == expected


def test_queues_are_created_listed_paused_resumed_and_deleted(api):
    created = api.create_queue(
        parent=PARENT,
        queue={
            "name": OTHER,
            "retry_config": {"max_attempts": 5, "min_backoff": {"seconds": 2}},
            "rate_limits": {"max_dispatches_per_second": 3},
        },
    )
    assert (created.retry_config.max_attempts, created.retry_config.min_backoff) == (
        5,
        datetime.timedelta(seconds=2),
    )
    assert created.retry_config.max_backoff == datetime.timedelta(hours=1)  # Cloud Tasks' default
    assert (created.rate_limits.max_dispatches_per_second, created.rate_limits.max_burst_size) == (
        3,
        3,
    )
    assert [q.name for q in api.list_queues(parent=PARENT)] == [OTHER, QUEUE]
    assert api.pause_queue(name=OTHER).state == tasks_v2.Queue.State.PAUSED
    assert api.resume_queue(name=OTHER).state == tasks_v2.Queue.State.RUNNING
    api.delete_queue(name=OTHER)
    assert [q.name for q in api.list_queues(parent=PARENT)] == [QUEUE]


def test_update_queue_changes_only_the_masked_fields_and_creates_a_missing_queue(api):
    updated = api.update_queue(
        queue={"name": QUEUE, "retry_config": {"max_attempts": 7, "max_doublings": 1}},
        update_mask={"paths": ["retry_config.max_attempts"]},
    )
    assert (updated.retry_config.max_attempts, updated.retry_config.max_doublings) == (7, 16)
    fresh = api.update_queue(queue={"name": OTHER, "rate_limits": {"max_concurrent_dispatches": 2}})
    assert fresh.rate_limits.max_concurrent_dispatches == 2
    assert api.get_queue(name=OTHER).name == OTHER


def test_tasks_are_listed_in_pages_and_the_basic_view_leaves_out_the_body(api, emulator, create):
    api.pause_queue(name=QUEUE)
    for number in range(5):
        create(f"task-{number}", delay=number)
    first = api.list_tasks(request={"parent": QUEUE, "page_size": 2})
    assert [t.name.rsplit("/", 1)[-1] for t in first] == [f"task-{n}" for n in range(5)]
    assert all(t.http_request.body == b"" and t.view == tasks_v2.Task.View.BASIC for t in first)
    full = api.get_task(
        request={"name": f"{QUEUE}/tasks/task-0", "response_view": tasks_v2.Task.View.FULL}
    )
    assert full.http_request.body == b"payload"


def test_an_unnamed_task_gets_a_name_and_is_not_deduplicated(api, create):
    api.pause_queue(name=QUEUE)
    first, second = create(), create()
    assert first.name != second.name
    assert first.name.startswith(f"{QUEUE}/tasks/")


def test_a_name_stays_taken_after_the_task_is_deleted(api, create):
    api.pause_queue(name=QUEUE)
    name = create("once").name
    api.delete_task(name=name)
    with pytest.raises(exceptions.AlreadyExists):
        create("once")


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"http_request": {"url": "ftp://example.com/"}}, "absolute http or https URL"),
        ({"dispatch_deadline": {"seconds": 5}}, "between 15 seconds and 30 minutes"),
        ({"http_request": {"body": b"x" * (1024 * 1024 + 1)}}, "exceeds the maximum"),
    ],
)
def test_invalid_tasks_are_refused(create, fields, words):
    with pytest.raises(exceptions.InvalidArgument, match=words):
        create("bad", **fields)


def test_a_schedule_time_more_than_30_days_ahead_is_refused(create):
    with pytest.raises(exceptions.InvalidArgument, match="30 days"):
        create("far", delay=31 * 24 * 3600)


def test_v2beta3_reports_queue_statistics_only_when_asked(api, emulator, create):
    api.pause_queue(name=QUEUE)
    create("waiting-1", delay=5)
    create("waiting-2", delay=10)
    beta = tasks_beta_client(emulator.address)
    plain = beta.get_queue(name=QUEUE)
    assert "stats" not in plain
    stats = beta.get_queue(request={"name": QUEUE, "read_mask": {"paths": ["stats"]}}).stats
    assert stats.tasks_count == 2
    assert stats.effective_execution_rate == 0  # paused
    soonest = api.get_task(name=f"{QUEUE}/tasks/waiting-1").schedule_time
    assert stats.oldest_estimated_arrival_time == soonest
    listed = beta.list_queues(request={"parent": PARENT, "read_mask": {"paths": ["stats"]}})
    assert [q.stats.tasks_count for q in listed] == [2]
