"""Cloud Run job executions, started, cancelled and listed through the one policy, against
the emulator's Cloud Run; every failure an ExecutionError that says what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from django_q_cloudtasks.conf import queue_settings
from django_q_cloudtasks.emulator import Emulator
from django_q_cloudtasks.exceptions import ExecutionError
from django_q_cloudtasks.gcp import jobs
from tests.conftest import wait_for
from tests.support.jobs import noting_job, runs
from tests.support.ports import free_port, free_port_pair

JOB = "projects/test-project/locations/europe-west1/jobs/worker"


@pytest.fixture
def emulator(tmp_path: Path) -> Any:
    with Emulator(port=free_port_pair(), job_grace=1) as running:
        running.ensure_job(noting_job(JOB, tmp_path, tmp_path / "notes"))
        yield running


@pytest.fixture
def long(configure: Any, emulator: Emulator) -> Any:
    """The settings of the job cluster "long", whose job runs on the emulator."""
    cluster = {"timeout": 600, "cloud_tasks": {"target": "cloud_run_job", "job": "worker"}}
    configure(emulator_host=emulator.address, q_cluster={"ALT_CLUSTERS": {"long": cluster}})
    return queue_settings("long")


def test_an_execution_starts_with_the_tasks_environment_and_timeout(long, emulator, tmp_path):
    name = jobs.start(long, env={"DJANGO_Q_CLOUDTASKS_TASK": "t1"}, timeout=660)
    assert name.startswith(f"{JOB}/executions/worker-")
    execution = emulator.jobs.wait(name, 30)
    assert (execution.task_count, execution.timeout) == (1, 660)
    (noted,) = runs(tmp_path / "notes")
    assert noted["DJANGO_Q_CLOUDTASKS_TASK"] == "t1"


def test_without_a_timeout_the_execution_keeps_the_jobs_own(long, emulator):
    name = jobs.start(long, env={}, timeout=None)
    assert emulator.jobs.wait(name, 30).timeout == 600


def test_a_running_execution_is_listed_and_cancelled_once(long, emulator):
    name = jobs.start(long, env={"SLEEP": "60"}, timeout=None)
    (running,) = jobs.running(long)
    assert (running.name, running.finished) == (name, False)
    assert running.short_name == name.rsplit("/", 1)[1]
    assert jobs.cancel(long, name) is True
    wait_for(lambda: emulator.jobs.get_execution(name).done, timeout=10)
    assert jobs.running(long) == []
    assert jobs.cancel(long, name) is False  # finished: nothing to cancel


def test_a_missing_job_says_to_create_it(long, configure):
    configure(
        q_cluster={
            "ALT_CLUSTERS": {
                "long": {"timeout": 60, "cloud_tasks": {"target": "cloud_run_job", "job": "absent"}}
            }
        }
    )
    with pytest.raises(ExecutionError) as raised:
        jobs.start(queue_settings("long"), env={}, timeout=None)
    assert str(raised.value).startswith(
        "Could not start an execution of Cloud Run job "
        "projects/test-project/locations/europe-west1/jobs/absent: Resource 'absent' of kind "
        "'JOB'"
    )
    assert str(raised.value).endswith(
        "Create the Cloud Run job projects/test-project/locations/europe-west1/jobs/absent "
        "(see the guide Long tasks on Cloud Run Jobs, docs/how-to/long-tasks.md)."
    )


def test_an_unreachable_cloud_run_is_an_error_within_the_budget(long, configure):
    nobody = f"127.0.0.1:{free_port()}"
    configure(emulator_host=nobody)
    with pytest.raises(ExecutionError, match=f"is the emulator at {nobody} running"):
        jobs.cancel(queue_settings("long"), f"{JOB}/executions/worker-abcde")


def test_an_executions_name_is_written_under_the_job_as_the_settings_name_it(long):
    by_number = "projects/123456789/locations/europe-west1/jobs/worker/executions/worker-abcde"
    assert jobs.execution_name(long, by_number) == f"{JOB}/executions/worker-abcde"
    assert jobs.execution_name(long, "worker-abcde") == f"{JOB}/executions/worker-abcde"


def test_an_execution_is_read_or_found_missing(long, emulator):
    name = jobs.start(long, env={}, timeout=None)
    emulator.jobs.wait(name, 30)
    found = jobs.get(long, name)
    assert (found.name, found.finished, found.succeeded) == (name, True, 1)
    assert jobs.get(long, f"{JOB}/executions/worker-zzzzz") is None
