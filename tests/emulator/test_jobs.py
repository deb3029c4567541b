"""Cloud Run Jobs in the emulator, through the official client (google-cloud-run): each
execution's tasks are local processes, with Cloud Run's environment, timeout, retries and
cancellation (SIGTERM, then SIGKILL after the grace)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions

from django_q_cloudtasks.emulator import Emulator
from django_q_cloudtasks.gcp.client import executions_client, jobs_client
from tests.conftest import wait_for
from tests.support.jobs import noting_job, runs
from tests.support.ports import free_port_pair

JOB = "projects/test-project/locations/europe-west1/jobs/worker"
GRACE = 1.0


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    return tmp_path / "notes"


@pytest.fixture
def emulator(tmp_path: Path, notes: Path) -> Any:
    with Emulator(port=free_port_pair(), job_grace=GRACE) as running:
        running.ensure_job(noting_job(JOB, tmp_path, notes, max_retries=2))
        yield running


@pytest.fixture
def run(emulator: Emulator) -> Any:
    """RunJob with ``env`` overrides (and others); returns the long-running operation."""

    def start(env: dict[str, str] | None = None, **overrides: Any) -> Any:
        container = {"env": [{"name": k, "value": v} for k, v in (env or {}).items()]}
        request = {"name": JOB, "overrides": {"container_overrides": [container], **overrides}}
        return jobs_client(emulator.address).run_job(request=request)

    return start


def finished(emulator: Emulator, operation: Any, timeout: float = 30) -> Any:
    """The execution, once done, as the client reads it."""
    operation.result(timeout=timeout)
    return executions_client(emulator.address).get_execution(name=operation.metadata.name)


def test_an_execution_runs_the_jobs_command_with_cloud_runs_environment(emulator, run, notes):
    operation = run({"GIVEN": "by the override"})
    name = operation.metadata.name
    assert name.startswith(f"{JOB}/executions/worker-")
    execution = finished(emulator, operation)
    assert (execution.succeeded_count, execution.failed_count, execution.retried_count) == (1, 0, 0)
    assert execution.completion_time is not None
    (noted,) = runs(notes)
    assert noted == {
        "argv": [],
        "CLOUD_RUN_JOB": "worker",
        "CLOUD_RUN_EXECUTION": name.rsplit("/", 1)[1],
        "CLOUD_RUN_TASK_INDEX": "0",
        "CLOUD_RUN_TASK_ATTEMPT": "0",
        "CLOUD_RUN_TASK_COUNT": "1",
        "GIVEN": "by the override",
    }


def test_each_of_an_executions_tasks_is_a_process_of_its_own(emulator, run, notes):
    execution = finished(emulator, run(task_count=3))
    assert execution.succeeded_count == 3
    assert sorted(noted["CLOUD_RUN_TASK_INDEX"] for noted in runs(notes)) == ["0", "1", "2"]


def test_args_overrides_replace_the_commands_arguments(emulator, run, notes):
    container = {"args": ["--one", "two"]}
    request = {"name": JOB, "overrides": {"container_overrides": [container]}}
    finished(emulator, jobs_client(emulator.address).run_job(request=request))
    assert runs(notes)[0]["argv"] == ["--one", "two"]


def test_a_failed_task_is_tried_again_up_to_the_jobs_max_retries(emulator, run, notes):
    execution = finished(emulator, run({"FAIL_UNTIL_ATTEMPT": "2"}))
    assert [noted["CLOUD_RUN_TASK_ATTEMPT"] for noted in runs(notes)] == ["0", "1", "2"]
    assert (execution.succeeded_count, execution.retried_count, execution.failed_count) == (1, 2, 0)


def test_a_task_that_fails_every_attempt_fails_the_execution(emulator, run, notes):
    execution = finished(emulator, run({"FAIL_UNTIL_ATTEMPT": "9"}))
    assert len(runs(notes)) == 3  # the first attempt and max_retries 2
    assert (execution.succeeded_count, execution.retried_count, execution.failed_count) == (0, 2, 1)
    assert execution.conditions[0].state.name == "CONDITION_FAILED"


def test_a_task_past_its_timeout_gets_sigterm_and_fails(emulator, run, notes):
    started = time.monotonic()
    execution = finished(emulator, run({"SLEEP": "30"}, timeout={"seconds": 1}))
    assert time.monotonic() - started < 20
    assert len(runs(notes)) == 3  # each attempt timed out
    assert Path(f"{notes}.term").read_text() == "ttt"
    assert execution.failed_count == 1
    assert execution.template.timeout.total_seconds() == 1


def test_a_cancelled_execution_gets_sigterm_and_is_not_retried(emulator, run, notes):
    operation = run({"SLEEP": "60"})
    name = operation.metadata.name
    executions = executions_client(emulator.address)
    wait_for(lambda: runs(notes))
    executions.cancel_execution(name=name)
    execution = finished(emulator, operation, timeout=GRACE + 10)
    assert Path(f"{notes}.term").read_text() == "t"
    assert (execution.cancelled_count, execution.retried_count, execution.failed_count) == (1, 0, 0)
    assert len(runs(notes)) == 1


def test_a_task_that_ignores_sigterm_is_killed_after_the_grace(emulator, run, notes):
    operation = run({"SLEEP": "60", "IGNORE_TERM": "1"})
    wait_for(lambda: runs(notes))
    cancelled = time.monotonic()
    executions_client(emulator.address).cancel_execution(name=operation.metadata.name)
    execution = finished(emulator, operation, timeout=GRACE + 10)
    assert GRACE <= time.monotonic() - cancelled < GRACE + 5
    assert execution.cancelled_count == 1


def test_cancelling_a_finished_execution_is_refused(emulator, run):
    operation = run()
    finished(emulator, operation)
    with pytest.raises(exceptions.FailedPrecondition, match="has already completed"):
        executions_client(emulator.address).cancel_execution(name=operation.metadata.name)


def test_executions_are_listed_newest_first(emulator, run):
    first, second = run(), run()
    listed = executions_client(emulator.address).list_executions(parent=JOB)
    assert [e.name for e in listed] == [second.metadata.name, first.metadata.name]
    finished(emulator, first)
    finished(emulator, second)


def test_a_job_is_read_as_cloud_run_shows_it(emulator):
    job = jobs_client(emulator.address).get_job(name=JOB)
    assert job.name == JOB
    assert job.template.template.max_retries == 2
    assert job.template.template.timeout.total_seconds() == 600  # Cloud Run's default


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (
            lambda jobs, _: jobs.run_job(name=f"{JOB}-missing"),
            exceptions.NotFound,
            "Resource 'worker-missing' of kind 'JOB' in region 'europe-west1' in project "
            "'test-project' does not exist.",
        ),
        (
            lambda _, executions: executions.get_execution(name=f"{JOB}/executions/worker-zzzzz"),
            exceptions.NotFound,
            "Resource 'worker-zzzzz' of kind 'EXECUTION' does not exist.",
        ),
        (
            lambda jobs, _: jobs.run_job(
                request={"name": JOB, "overrides": {"timeout": {"seconds": 168 * 3600 + 1}}}
            ),
            exceptions.InvalidArgument,
            "at most 168 hours",
        ),
        (
            lambda jobs, _: jobs.run_job(request={"name": JOB, "overrides": {"task_count": 10001}}),
            exceptions.InvalidArgument,
            "task_count must be between 1 and 10000",
        ),
    ],
)
def test_a_wrong_call_is_refused_as_cloud_run_refuses_it(emulator, call, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        call(jobs_client(emulator.address), executions_client(emulator.address))


def test_a_tasks_output_goes_to_the_emulators_log(emulator, run, caplog):
    with caplog.at_level(logging.INFO, logger="django_q_cloudtasks.emulator"):
        execution = finished(emulator, run())
    short = execution.name.rsplit("/", 1)[1]
    assert f"[{short}/0] hello from the task" in caplog.text


def test_stopping_the_emulator_stops_its_executions(tmp_path, notes):
    emulator = Emulator(port=free_port_pair(), job_grace=GRACE).start()
    emulator.ensure_job(noting_job(JOB, tmp_path, notes))
    execution = emulator.jobs.run_job(JOB, env={"SLEEP": "60"})
    wait_for(lambda: runs(notes))
    emulator.stop()
    assert execution.done
    assert execution.cancelled == 1
    assert not execution.processes


def test_a_command_that_cannot_start_fails_its_attempts(tmp_path):
    from django_q_cloudtasks.emulator.jobs import JobRecord

    with Emulator(port=free_port_pair(), job_grace=GRACE) as emulator:
        emulator.ensure_job(JobRecord(JOB, [str(tmp_path / "no-such-command")], max_retries=1))
        execution = emulator.jobs.wait(emulator.jobs.run_job(JOB).name, 10)
    assert (execution.done, execution.failed, execution.retried) == (True, 1, 1)


def test_the_processes_a_task_started_go_with_it(tmp_path):
    """As a container's do: here, a child left running when the task's own process ends."""
    from django_q_cloudtasks.emulator.jobs import JobRecord

    child = tmp_path / "child"
    script = f"sleep 60 & echo $! > {child}; exit 0"
    with Emulator(port=free_port_pair(), job_grace=GRACE) as emulator:
        emulator.ensure_job(JobRecord(JOB, ["sh", "-c", script]))
        emulator.jobs.wait(emulator.jobs.run_job(JOB).name, 10)
        pid = int(child.read_text())
        wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), timeout=5)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True
