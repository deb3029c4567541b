"""Tasks run now or deleted (``gcp/tasks.py``): the admin's "Run now" and "Delete", and the
broker's delete(), against the built-in emulator."""

from __future__ import annotations

import os
import re
import uuid

import grpc
import pytest
from django_q.tasks import async_task

from django_q_cloudtasks.broker import CloudTasksBroker
from django_q_cloudtasks.conf import queue_settings
from django_q_cloudtasks.exceptions import QueueUnavailable
from django_q_cloudtasks.gcp import queue_admin, tasks
from django_q_cloudtasks.models import Payload
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_run_now_dispatches_a_task_of_a_paused_queue(paused_cloud_tasks, target):
    target.answer(500)
    task_id = async_task("tests.project.tasks.echo", 1)
    qs = queue_settings()
    assert tasks.run_task(qs, task_id) is True
    wait_for(lambda: queue_admin.waiting_tasks(qs)[0].response_count == 1)
    (task,) = queue_admin.waiting_tasks(qs)  # answered 500: it waits for its retry
    assert (task.dispatch_count, task.last_response) == (1, "HTTP status code 500")
    assert task.last_attempt_time is not None
    assert len(target.deliveries) == 1
    assert queue_admin.inspect(qs).paused


def test_run_now_of_a_task_that_is_gone_returns_false(paused_cloud_tasks):
    assert tasks.run_task(queue_settings(), "no-such-task") is False


def test_deleting_a_task_sent_by_reference_discards_its_payload(paused_cloud_tasks):
    """The admin's Delete and the broker's delete() are one."""
    task_id = async_task("tests.project.tasks.digest", os.urandom(1_100_000))
    assert Payload.objects.filter(task_id=task_id).exists()
    assert CloudTasksBroker().delete(task_id) is True
    assert paused_cloud_tasks.tasks() == []
    assert not Payload.objects.filter(task_id=task_id).exists()


def test_delete_of_a_task_that_is_gone_returns_false(paused_cloud_tasks):
    task_id = async_task("tests.project.tasks.echo", 1)
    qs = queue_settings()
    assert tasks.delete_task(qs, task_id) is True
    assert tasks.delete_task(qs, task_id) is False


def test_an_app_engine_clusters_task_goes_to_the_receivers_path_in_its_service(
    app_engine_cloud_tasks,
):
    task_id = async_task("tests.project.tasks.echo", 1, cluster="worker")
    (cloud_task,) = app_engine_cloud_tasks.tasks("second")
    assert cloud_task.name.endswith(f"/tasks/{task_id}")
    request = cloud_task.app_engine_http_request
    assert request.relative_uri == "/_tasks/"
    assert (request.app_engine_routing.service, request.app_engine_routing.version) == (
        "worker",
        "",
    )
    assert request.headers["Content-Type"] == "application/vnd.django-q.package"
    assert cloud_task.dispatch_deadline.total_seconds() == 315  # its timeout, and 15 s
    assert type(cloud_task).pb(cloud_task).WhichOneof("message_type") == "app_engine_http_request"


def test_a_big_app_engine_task_travels_by_reference(app_engine_cloud_tasks):
    task_id = async_task("tests.project.tasks.digest", os.urandom(1_100_000), cluster="worker")
    (cloud_task,) = app_engine_cloud_tasks.tasks("second")
    request = cloud_task.app_engine_http_request
    assert (
        request.headers["Content-Type"] == "application/vnd.django-q-cloudtasks.payload-reference"
    )
    assert Payload.objects.filter(task_id=task_id).exists()


def enqueue(name: str) -> bool:
    qs = queue_settings()
    return tasks.create_task(
        qs, name=name, uri=qs.url, body=b"{}", content_type="application/json", deadline=30
    )


def test_a_retried_enqueue_lands_in_its_first_shard_and_is_deduplicated_there(
    sharded_cloud_tasks,
):
    qs = queue_settings()
    names = [uuid.uuid4().hex for _ in range(12)]
    for name in names:
        assert enqueue(name) is True
        assert enqueue(name) is False  # Cloud Tasks' ALREADY_EXISTS, in the same queue
    found = {
        task.name.rsplit("/", 1)[1]: path
        for path in qs.queue_paths
        for task in sharded_cloud_tasks.client.list_tasks(parent=path)
    }
    assert found == {name: qs.queue_path_for(name) for name in names}
    assert len(set(found.values())) > 1


def test_a_task_enqueued_before_the_cluster_had_shards_is_still_found(
    sharded_cloud_tasks, configure
):
    sharded = queue_settings()
    name = next(
        name
        for name in (uuid.uuid4().hex for _ in range(1000))
        if sharded.queue_path_for(name) != sharded.queue_path
    )
    configure(shards=1)
    assert enqueue(name) is True  # into the cluster's one queue, "tests"
    configure(shards=3)
    assert tasks.delete_task(queue_settings(), name) is True
    assert tasks.delete_task(queue_settings(), name) is False


@pytest.mark.parametrize(
    ("act", "method", "role"),
    [
        (tasks.delete_task, "DeleteTask", "roles/cloudtasks.taskDeleter"),
        (tasks.run_task, "RunTask", "roles/cloudtasks.taskRunner"),
    ],
)
def test_a_refusal_names_the_role_the_call_takes(cloud_tasks, act, method, role):
    cloud_tasks.fail(method, grpc.StatusCode.PERMISSION_DENIED)
    with pytest.raises(QueueUnavailable, match=rf"It needs {re.escape(role)}"):
        act(queue_settings(), uuid.uuid4().hex)
