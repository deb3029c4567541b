"""``cancel(task_id)``: a waiting task never runs, a task in a job execution is stopped, a
task in a receiver sees ``cancelled()`` turn true, a finished one is left alone."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from django_q.models import Failure
from django_q.tasks import async_task

from django_q_cloudtasks import Cancellation, CloudTasksBroker, cancel, cancelled
from django_q_cloudtasks.models import Payload, Receipt
from django_q_cloudtasks.receiver import leases
from tests.conftest import wait_for
from tests.support.jobs import noting_job, runs
from tests.support.packages import make_task
from tests.support.ports import free_port

pytestmark = pytest.mark.django_db(transaction=True)

JOB = "projects/test-project/locations/europe-west1/jobs/worker"


def waiting(cloud_tasks: Any, cluster: str = "tests") -> list[str]:
    return [task.name.rsplit("/", 1)[1] for task in cloud_tasks.tasks(cluster)]


def test_a_waiting_task_is_deleted_and_never_runs(paused_cloud_tasks, deliver, tmp_path):
    trace = tmp_path / "trace"
    task_id = async_task("tests.project.tasks.append", str(trace), "ran")
    assert waiting(paused_cloud_tasks) == [task_id]
    assert cancel(task_id) is Cancellation.DELETED
    assert waiting(paused_cloud_tasks) == []
    receipt = Receipt.objects.get(task_id=task_id)
    assert (receipt.state, receipt.cancelled is not None) == ("done", True)
    # A delivery already on its way when the task was deleted runs nothing.
    task = make_task("tests.project.tasks.append", str(trace), "ran")
    task["id"] = task_id
    assert deliver(task).json()["status"] == "duplicate"
    assert not trace.exists()


def test_a_task_in_no_queue_is_kept_from_ever_running(paused_cloud_tasks, deliver, tmp_path):
    trace = tmp_path / "trace"
    task = make_task("tests.project.tasks.append", str(trace), "ran")  # never enqueued
    assert cancel(task["id"]) is Cancellation.UNKNOWN
    assert deliver(task).json()["status"] == "duplicate"  # as if it were on its way
    assert not trace.exists()


def test_a_waiting_task_is_looked_for_in_every_clusters_queue(paused_cloud_tasks):
    task_id = async_task("tests.project.tasks.echo", 1, cluster="second")
    assert cancel(task_id) is Cancellation.DELETED
    assert waiting(paused_cloud_tasks, "second") == []


def test_a_waiting_big_task_loses_its_payload(paused_cloud_tasks, configure):
    configure(
        q_cluster={
            "ALT_CLUSTERS": {
                "long": {
                    "timeout": 60,
                    "cloud_tasks": {"target": "cloud_run_job", "job": "worker", "queue": "tests"},
                }
            }
        }
    )
    task_id = async_task("tests.project.tasks.echo", 1, cluster="long")
    assert Payload.objects.filter(task_id=task_id).exists()
    assert cancel(task_id) is Cancellation.DELETED
    assert not Payload.objects.filter(task_id=task_id).exists()


def test_a_task_waiting_for_a_retry_is_not_retried(paused_cloud_tasks, deliver, tmp_path):
    trace = tmp_path / "trace"
    task = make_task("tests.project.tasks.count_and_fail", str(trace))
    broker = CloudTasksBroker("tests", task_id=task["id"])
    async_task("tests.project.tasks.count_and_fail", str(trace), q_options={"broker": broker})
    assert deliver(task).status_code == 500  # failed; Cloud Tasks would deliver it again
    assert cancel(task["id"]) is Cancellation.DELETED
    assert waiting(paused_cloud_tasks) == []
    assert deliver(task, retries=1).json()["status"] == "duplicate"
    assert trace.read_text() == "x"


def test_a_finished_task_is_left_as_it_is(deliver):
    task = make_task("tests.project.tasks.echo", 1)
    deliver(task)
    assert cancel(task["id"]) is Cancellation.FINISHED
    assert Receipt.objects.get(task_id=task["id"]).cancelled is None


def test_a_task_running_in_the_receiver_sees_cancelled_and_stops_as_cancelled(
    deliver, tmp_path, monkeypatch
):
    monkeypatch.setattr(leases, "CHECK_EVERY", 0.05)
    trace = tmp_path / "trace"
    task = make_task("tests.project.tasks.until_cancelled", str(trace), 20)
    asked: list[Cancellation] = []

    def cancel_once_running() -> None:
        wait_for(trace.exists)
        asked.append(cancel(task["id"]))

    threading.Thread(target=cancel_once_running).start()
    started = time.monotonic()
    response = deliver(task)
    assert time.monotonic() - started < 10
    assert asked == [Cancellation.ASKED]
    assert (response.status_code, response.json()["status"]) == (200, "cancelled")
    assert trace.read_text().splitlines()[1].startswith("cancelled after")
    assert "TaskCancelled" in Failure.objects.get(id=task["id"]).result
    assert deliver(task, retries=1).json()["status"] == "duplicate"


def test_cancelled_is_false_outside_a_task():
    assert cancelled() is False


@pytest.fixture
def job(configure: Any, tmp_path: Path) -> Any:
    """The job cluster "long", and an execution of its job running on the emulator."""
    from django_q_cloudtasks.emulator import Emulator
    from tests.support.ports import free_port_pair

    with Emulator(port=free_port_pair(), job_grace=1) as emulator:
        emulator.ensure_job(noting_job(JOB, tmp_path, tmp_path / "notes"))
        long = {"timeout": 60, "cloud_tasks": {"target": "cloud_run_job", "job": "worker"}}
        configure(emulator_host=emulator.address, q_cluster={"ALT_CLUSTERS": {"long": long}})
        execution = emulator.jobs.run_job(JOB, env={"SLEEP": "60"})
        wait_for(lambda: runs(tmp_path / "notes"))
        task_id = uuid.uuid4().hex
        Receipt.objects.claim(task_id, "long", "the-launcher", leases.LEASE)
        Receipt.objects.adopt(task_id, "the-launcher", execution.name, leases.LEASE, retried=False)
        yield emulator, execution, task_id


def test_a_task_running_in_a_job_execution_has_the_execution_cancelled(job):
    emulator, execution, task_id = job
    assert cancel(task_id) is Cancellation.STOPPING
    assert emulator.jobs.wait(execution.name, 10).cancelled == 1
    assert Receipt.objects.get(task_id=task_id).cancelled is not None


def test_an_execution_cloud_run_cannot_be_asked_to_cancel_still_stops(job, configure, caplog):
    *_, task_id = job
    configure(emulator_host=f"127.0.0.1:{free_port()}")
    with caplog.at_level(logging.WARNING, logger="django_q_cloudtasks"):
        assert cancel(task_id) is Cancellation.STOPPING
    assert "It stops within seconds all the same." in caplog.text
    assert Receipt.objects.get(task_id=task_id).cancelled is not None  # its renewal sees it


def test_a_queue_that_cannot_be_reached_still_keeps_the_task_from_running(
    configure, caplog, tmp_path
):
    configure(emulator_host=f"127.0.0.1:{free_port()}")
    task = make_task("tests.project.tasks.append", str(tmp_path / "trace"), "ran")
    with caplog.at_level(logging.WARNING, logger="django_q_cloudtasks"):
        assert cancel(task["id"]) is Cancellation.UNKNOWN  # no queue could say
    assert "Could not delete task" in caplog.text
    assert Receipt.objects.get(task_id=task["id"]).cancelled is not None


def test_what_cancel_finds_comes_from_the_receipts_own_change():
    from django_q_cloudtasks.models import Found

    Receipt.objects.claim("waiting", "tests", "d1", leases.LEASE)
    Receipt.objects.release("waiting", "d1")
    Receipt.objects.claim("running", "tests", "d2", leases.LEASE)
    Receipt.objects.claim("done", "tests", "d3", leases.LEASE)
    Receipt.objects.finish("done", "d3")
    found = {
        task_id: Receipt.objects.request_cancel(task_id, "tests")[0]
        for task_id in ("waiting", "running", "done", "new")
    }
    assert found == {
        "waiting": Found.WAITING,
        "running": Found.RUNNING,
        "done": Found.FINISHED,
        "new": Found.NOTHING,
    }
    states = dict(Receipt.objects.values_list("task_id", "state"))
    assert states == {"waiting": "done", "running": "running", "done": "done", "new": "done"}
    assert Receipt.objects.get(task_id="done").cancelled is None  # finished before
    assert Receipt.objects.request_cancel("running", "tests")[0] is Found.RUNNING  # again
