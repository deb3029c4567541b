"""A job cluster's deliveries: the first starts a Cloud Run job execution (the emulator's)
and answers 409 "launched", later ones say how it runs, and a run that died is started again
while attempts remain."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from django_q.models import Failure

from django_q_cloudtasks.cloud_logging import RECEIVER_LOGGER
from django_q_cloudtasks.emulator import Emulator
from django_q_cloudtasks.models import Payload, Receipt
from django_q_cloudtasks.receiver import launcher
from django_q_cloudtasks.wire import REFERENCE_CONTENT_TYPE
from tests.support.jobs import noting_job, runs
from tests.support.packages import make_task, sign, stored
from tests.support.ports import free_port_pair
from tests.support.tokens import ISSUER

pytestmark = pytest.mark.django_db(transaction=True)

JOB = "projects/test-project/locations/europe-west1/jobs/worker"
CLOUD_TASK = "the-cloud-task"


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    """What each execution the receiver started was started with (tests/support/jobs.py)."""
    return tmp_path / "notes"


@pytest.fixture
def emulator(configure: Any, tmp_path: Path, notes: Path) -> Any:
    """The emulator runs the job "worker" of the job cluster "long" (max_attempts 2)."""
    with Emulator(port=free_port_pair()) as running:
        running.ensure_job(noting_job(JOB, tmp_path, notes))
        long = {
            "timeout": 3600,
            "max_attempts": 2,
            "cloud_tasks": {"target": "cloud_run_job", "job": "worker"},
        }
        configure(
            emulator_host=running.address,
            issuers=[ISSUER],
            q_cluster={"ALT_CLUSTERS": {"long": long}},
        )
        yield running


@pytest.fixture
def deliver_long(deliver: Any, emulator: Emulator) -> Any:
    """Deliver a job cluster's task as Cloud Tasks does: by reference, named."""

    def post(task: dict[str, Any], **options: Any) -> Any:
        body = stored(task["id"], sign(task).decode())
        headers = {"X-CloudTasks-TaskName": CLOUD_TASK}
        return deliver(body, content_type=REFERENCE_CONTENT_TYPE, headers=headers, **options)

    return post


def long_task(**options: Any) -> dict[str, Any]:
    return make_task("tests.project.tasks.echo", 1, cluster="long", **options)


def executions(emulator: Emulator) -> list[Any]:
    return emulator.jobs.list_executions(JOB)


def died(emulator: Emulator, task: dict[str, Any], **fields: Any) -> None:
    """The execution holding the task's claim ended without renewing it (it died)."""
    execution = Receipt.objects.get(task_id=task["id"]).execution
    assert emulator.jobs.wait(execution, 30).done
    Receipt.objects.filter(task_id=task["id"]).update(lease_until=timezone.now(), **fields)


def test_the_first_delivery_starts_an_execution_that_adopts_its_claim(
    deliver_long, emulator, notes
):
    task = long_task()
    response = deliver_long(task)
    assert response.status_code == 409  # Cloud Tasks comes back to see how it runs
    (execution,) = executions(emulator)
    assert response.json() == {
        "status": "launched",
        "task": task["id"],
        "cluster": "long",
        "execution": execution.name,
    }
    receipt = Receipt.objects.get(task_id=task["id"])
    assert (receipt.state, receipt.execution) == ("running", execution.name)
    assert receipt.lease_until - timezone.now() > launcher.LAUNCH_LEASE - timedelta(seconds=30)
    emulator.jobs.wait(execution.name, 30)
    (noted,) = runs(notes)
    assert noted["DJANGO_Q_CLOUDTASKS_TASK"] == task["id"]
    assert noted["DJANGO_Q_CLOUDTASKS_HOLDER"] == receipt.holder
    assert noted["DJANGO_Q_CLOUDTASKS_CLOUD_TASK"] == CLOUD_TASK
    assert execution.timeout == 3600 + 60  # the task's timeout, and the margin to save it


def test_a_tasks_own_timeout_sets_its_executions(deliver_long, emulator):
    deliver_long(long_task(timeout=120))
    (execution,) = executions(emulator)
    assert execution.timeout == 180


def test_a_delivery_while_the_execution_runs_answers_running_and_starts_no_other(
    deliver_long, emulator
):
    task = long_task()
    deliver_long(task)
    response = deliver_long(task, retries=1)
    (execution,) = executions(emulator)
    assert (response.status_code, response.json()["status"]) == (409, "running")
    assert response.json()["execution"] == execution.name


def test_a_delivery_after_the_task_is_done_answers_200(deliver_long, emulator):
    task = long_task()
    deliver_long(task)
    Receipt.objects.filter(task_id=task["id"]).update(state=Receipt.State.DONE)
    response = deliver_long(task, retries=1)
    assert (response.status_code, response.json()["status"]) == (200, "duplicate")
    assert len(executions(emulator)) == 1
    assert not Payload.objects.filter(task_id=task["id"]).exists()


def test_a_delivery_after_the_execution_cleaned_up_answers_duplicate(
    deliver_long, deliver, emulator
):
    task = long_task()
    deliver_long(task)
    body = stored(task["id"], sign(task).decode())  # the reference Cloud Tasks holds
    Receipt.objects.filter(task_id=task["id"]).update(state=Receipt.State.DONE)
    Payload.objects.filter(task_id=task["id"]).delete()  # as the execution does when done
    response = deliver(body, content_type=REFERENCE_CONTENT_TYPE)
    assert (response.status_code, response.json()["status"]) == (200, "duplicate")


def test_a_claim_run_out_while_cloud_run_still_runs_its_execution_is_left_to_it(
    deliver_long, emulator, notes
):
    """The database was out of reach for longer than the lease, say: the execution lives."""
    task = long_task()
    launched = deliver_long(task).json()["execution"]
    Receipt.objects.filter(task_id=task["id"]).update(lease_until=timezone.now())
    emulator.jobs.run_job(JOB, env={"SLEEP": "60"})  # a stand-in that keeps running
    running = emulator.jobs.list_executions(JOB)[0].name
    Receipt.objects.filter(task_id=task["id"]).update(execution=running)
    response = deliver_long(task, retries=1)
    assert (response.status_code, response.json()["status"]) == (409, "running")
    assert len(executions(emulator)) == 2  # no new one
    emulator.jobs.cancel_execution(running)
    emulator.jobs.wait(running, 15)
    assert deliver_long(task, retries=2).json()["status"] == "launched"  # now it is taken over
    assert launched != Receipt.objects.get(task_id=task["id"]).execution


def test_an_execution_that_died_is_started_again_and_its_run_counts_as_lost(deliver_long, emulator):
    task = long_task()
    deliver_long(task)
    died(emulator, task)
    response = deliver_long(task, retries=1)
    assert response.json()["status"] == "launched"
    assert len(executions(emulator)) == 2
    receipt = Receipt.objects.get(task_id=task["id"])
    assert (receipt.lost, receipt.execution) == (1, response.json()["execution"])


def test_a_task_whose_executions_died_until_no_attempt_is_left_fails_for_good(
    deliver_long, emulator
):
    task = long_task()
    for retries in range(2):  # max_attempts is 2: two runs, both lost
        deliver_long(task, retries=retries)
        died(emulator, task)
    response = deliver_long(task, retries=2)
    assert (response.status_code, response.json()["status"]) == (200, "failed")
    assert len(executions(emulator)) == 2
    assert "died 2 time(s)" in Failure.objects.get(id=task["id"]).result


def test_a_cancelled_task_gets_no_new_execution(deliver_long, emulator):
    task = long_task()
    deliver_long(task)
    died(emulator, task, cancelled=timezone.now())
    response = deliver_long(task, retries=1)
    assert (response.status_code, response.json()["status"]) == (200, "cancelled")
    assert len(executions(emulator)) == 1


def test_a_task_cancelled_before_its_execution_took_its_claim_ends_at_the_next_delivery(
    deliver_long, emulator
):
    """cancel() stopped the execution while it was starting: the launch's lease of 5
    minutes is not waited out, once Cloud Run says the execution ended."""
    task = long_task()
    execution = deliver_long(task).json()["execution"]
    emulator.jobs.wait(execution, 30)  # it ended without taking over its claim
    Receipt.objects.request_cancel(task["id"], "long")
    response = deliver_long(task, retries=1)
    assert (response.status_code, response.json()["status"]) == (200, "cancelled")
    assert "TaskCancelled" in Failure.objects.get(id=task["id"]).result
    assert len(executions(emulator)) == 1


def test_a_task_sent_before_its_cluster_ran_in_a_job_gets_its_payload_kept(deliver, emulator):
    task = long_task()
    assert deliver(task).json()["status"] == "launched"  # a signed package, not a reference
    assert Payload.objects.filter(task_id=task["id"]).exists()


def test_cloud_run_refusing_is_a_500_and_the_next_delivery_tries_again(
    deliver_long, configure, emulator, caplog
):
    missing = {"timeout": 60, "cloud_tasks": {"target": "cloud_run_job", "job": "missing"}}
    configure(q_cluster={"ALT_CLUSTERS": {"long": missing}})
    task = long_task()
    caplog.set_level(logging.INFO)
    response = deliver_long(task)
    assert response.status_code == 500
    assert response.json()["status"] == "not_launched"
    assert "Create the Cloud Run job" in response.json()["error"]
    # One line, an error: why it did not start, not that the task failed.
    (line,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert (line.name, line.levelname) == (RECEIVER_LOGGER, "ERROR")
    assert "could not start a Cloud Run job execution, so did not run" in line.getMessage()
    assert "Create the Cloud Run job" in line.getMessage()
    assert Receipt.objects.get(task_id=task["id"]).state == Receipt.State.RETRY
    assert Receipt.objects.get(task_id=task["id"]).lost == 0


def test_without_the_cloud_run_client_a_delivery_is_a_500_saying_what_to_install(
    deliver_long, emulator, monkeypatch
):
    from dataclasses import replace

    from django_q_cloudtasks.gcp import client

    absent = replace(client.APIS["run_v2.jobs"], module="run_v2_not_installed")
    monkeypatch.setitem(client.APIS, "run_v2.jobs", absent)
    client.forget()
    task = long_task()
    response = deliver_long(task)
    client.forget()
    assert response.status_code == 500
    assert "pip install 'django-q-cloudtasks[jobs]'" in response.json()["error"]
    assert Receipt.objects.get(task_id=task["id"]).state == Receipt.State.RETRY
