"""Packages over Cloud Tasks' 1 MiB: kept in the database, sent as a signed reference,
deleted once the task is done; above ``max_package_bytes``, refused at enqueue."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import timedelta

import pytest
from django.core import signing
from django.utils import timezone
from django_q.models import Success
from django_q.signing import SignedPackage
from django_q.tasks import async_task

from django_q_cloudtasks import CloudTasksBroker, async_task_after, wire
from django_q_cloudtasks.exceptions import EnqueueError
from django_q_cloudtasks.models import Payload, prune
from tests.conftest import assert_rejected
from tests.project.tasks import LeavesATrace
from tests.support.packages import stored

pytestmark = pytest.mark.django_db(transaction=True)

FIVE_MB = 5 * 1000 * 1000


@pytest.fixture(scope="module")
def five_mb() -> bytes:
    return os.urandom(FIVE_MB)  # random: compression cannot shrink it under 1 MiB


def delivery_of(cloud_task) -> dict:
    """What Cloud Tasks would POST for a listed task: its body and content type."""
    request = cloud_task.http_request
    return {"task": request.body, "content_type": request.headers["Content-Type"]}


def test_a_5_mb_task_travels_by_reference_and_runs(paused_cloud_tasks, deliver, five_mb):
    task_id = async_task("tests.project.tasks.digest", five_mb)
    (cloud_task,) = paused_cloud_tasks.tasks()
    assert len(cloud_task.http_request.body) < 1024
    assert cloud_task.http_request.headers["Content-Type"] == wire.REFERENCE_CONTENT_TYPE
    assert len(Payload.objects.get(task_id=task_id).package) > FIVE_MB

    response = deliver(**delivery_of(cloud_task))
    assert response.json()["status"] == "succeeded"
    assert Success.objects.get(id=task_id).result == hashlib.sha256(five_mb).hexdigest()
    assert not Payload.objects.filter(task_id=task_id).exists()  # cleaned up once done


def test_a_failure_to_retry_keeps_the_payload_for_the_next_delivery(
    paused_cloud_tasks, deliver, five_mb, tmp_path
):
    trace = tmp_path / "trace"
    task_id = async_task("tests.project.tasks.count_and_fail", str(trace), padding=five_mb)
    (cloud_task,) = paused_cloud_tasks.tasks()
    assert deliver(**delivery_of(cloud_task)).status_code == 500
    assert Payload.objects.filter(task_id=task_id).exists()
    statuses = [deliver(**delivery_of(cloud_task), retries=n).status_code for n in (1, 2)]
    assert statuses == [500, 200]  # the third attempt is the last
    assert not Payload.objects.filter(task_id=task_id).exists()


def test_a_package_over_max_package_bytes_is_refused_at_enqueue(
    paused_cloud_tasks, configure, five_mb
):
    configure(max_package_bytes=2 * 1024 * 1024)
    with pytest.raises(EnqueueError, match=r"over the limit of 2,097,152 \(max_package_bytes\)"):
        async_task("tests.project.tasks.digest", five_mb)
    assert paused_cloud_tasks.tasks() == []
    assert not Payload.objects.exists()


def test_a_payload_whose_task_could_not_be_enqueued_is_deleted(configure, five_mb):
    configure(emulator_host="127.0.0.1:9", enqueue_timeout=1)  # nothing listens on port 9
    with pytest.raises(EnqueueError):
        async_task("tests.project.tasks.digest", five_mb)
    assert not Payload.objects.exists()


def test_a_big_task_enqueued_again_under_its_id_keeps_the_package_its_cloud_task_refers_to(
    paused_cloud_tasks, deliver, five_mb
):
    broker = CloudTasksBroker("tests", task_id="4d3c2b1a4d3c2b1a4d3c2b1a4d3c2b1a")
    for _ in range(2):  # Cloud Tasks keeps the first task (ALREADY_EXISTS) and its body
        async_task("tests.project.tasks.digest", five_mb, q_options={"broker": broker})
    (cloud_task,) = paused_cloud_tasks.tasks()
    assert deliver(**delivery_of(cloud_task)).json()["status"] == "succeeded"


def test_a_failed_enqueue_of_a_task_already_enqueued_keeps_its_payload(
    paused_cloud_tasks, configure, five_mb
):
    broker = CloudTasksBroker("tests", task_id="4d3c2b1a4d3c2b1a4d3c2b1a4d3c2b1a")
    async_task("tests.project.tasks.digest", five_mb, q_options={"broker": broker})
    configure(emulator_host="127.0.0.1:1", enqueue_timeout=0.5)  # nothing answers there
    with pytest.raises(EnqueueError):
        async_task("tests.project.tasks.digest", five_mb, q_options={"broker": broker})
    assert Payload.objects.filter(task_id="4d3c2b1a4d3c2b1a4d3c2b1a4d3c2b1a").exists()


def test_a_reference_delivered_before_its_payload_committed_is_retried(deliver):
    body = stored("t1", "package")
    Payload.objects.all().delete()  # as if the enqueuing transaction had not committed yet
    response = deliver(body, content_type=wire.REFERENCE_CONTENT_TYPE)
    assert response.status_code == 500
    assert "has not committed" in response.json()["error"]


def test_a_reference_whose_payload_never_came_is_abandoned(deliver):
    stale = {"task": "t1", "sha256": "0" * 64, "stored": time.time() - 3600}
    body = signing.dumps(stale, salt=wire.REFERENCE_SALT).encode()
    response = deliver(body, content_type=wire.REFERENCE_CONTENT_TYPE)
    assert (response.status_code, response.json()["status"]) == (200, "abandoned")


def test_a_payload_swapped_after_enqueue_is_refused_unread(deliver, tmp_path):
    body = stored("t1", "the package that was sent")
    canary = tmp_path / "canary"
    swapped = SignedPackage.dumps(LeavesATrace(str(canary)))  # signed, yet not the one sent
    Payload.objects.filter(task_id="t1").update(package=swapped)
    response = deliver(body, content_type=wire.REFERENCE_CONTENT_TYPE)
    assert_rejected(response, "is not the one sent")
    assert not canary.exists()


@pytest.mark.parametrize(
    "body",
    [
        b"not signed at all",
        signing.dumps(
            {"task": "t1", "sha256": "0" * 64, "stored": 0}, salt="another salt"
        ).encode(),
        signing.dumps({"task": "t1"}, salt=wire.REFERENCE_SALT).encode(),
        "\u00e9".encode(),
    ],
    ids=["not signed", "another salt", "not a reference", "not ascii"],
)
def test_a_reference_this_project_did_not_sign_is_rejected(deliver, body):
    assert_rejected(deliver(body, content_type=wire.REFERENCE_CONTENT_TYPE))


def test_a_big_task_forwarded_towards_its_time_keeps_its_payload(
    paused_cloud_tasks, deliver, five_mb
):
    task_id = async_task_after(timedelta(days=40), "tests.project.tasks.digest", five_mb)
    (first_hop,) = paused_cloud_tasks.tasks()
    assert first_hop.http_request.headers["Content-Type"] == wire.REFERENCE_CONTENT_TYPE
    assert deliver(**delivery_of(first_hop)).json()["status"] == "forwarded"
    assert Payload.objects.filter(task_id=task_id).exists()  # the next hop still needs it


def test_payloads_older_than_cloud_tasks_keeps_tasks_are_pruned():
    stored("old", "package")
    stored("new", "package")
    Payload.objects.filter(task_id="old").update(created=timezone.now() - timedelta(days=33))
    assert prune() == 1
    assert list(Payload.objects.values_list("task_id", flat=True)) == ["new"]
