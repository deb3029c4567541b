"""``manage.py cloudtasks_emulator``, run as users run it: a process of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django_q_cloudtasks.gcp.client import executions_client, jobs_client, tasks_client
from tests.support.ports import free_port_pair

ROOT = Path(__file__).resolve().parents[2]
QUEUES = "projects/test-project/locations/europe-west1/queues"


@contextmanager
def emulator_command(
    *arguments: str, **env_vars: str
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """Runs the command until it says it is ready; yields it and what it printed."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.project.settings",
        **env_vars,
    }
    env.pop("CLOUD_TASKS_EMULATOR_HOST", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "cloudtasks_emulator", *arguments],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    printed: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            printed.append(line.rstrip())
            if "Quit with CONTROL-C" in line:
                break
        yield process, printed
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
        printed.extend(output.splitlines())


def test_it_creates_the_projects_queues_and_keeps_them_in_its_state_file(tmp_path):
    port, state = free_port_pair(), tmp_path / "state.jsonl"
    address = f"127.0.0.1:{port}"
    with emulator_command(address, "--state", str(state)) as (process, printed):
        assert f"  queue {QUEUES}/tests (created)" in printed
        assert f"  queue {QUEUES}/second-queue (created)" in printed
        assert f"  ID-token certificates: http://127.0.0.1:{port + 1}/certs" in printed
        client = tasks_client(address)
        client.pause_queue(name=f"{QUEUES}/tests")
        client.create_task(
            parent=f"{QUEUES}/tests", task={"http_request": {"url": "http://127.0.0.1:9/"}}
        )
    assert process.returncode == 0
    assert printed[-1] == "Emulator stopped."

    with emulator_command(address, "--state", str(state)) as (_, printed):
        assert f"  queue {QUEUES}/tests" in printed  # there already, not created again
        assert len(list(tasks_client(address).list_tasks(parent=f"{QUEUES}/tests"))) == 1


def test_it_makes_the_queues_as_cloudtasks_setup_would_and_mends_a_kept_one(tmp_path):
    port, state = free_port_pair(), tmp_path / "state.jsonl"
    address, tests_queue = f"127.0.0.1:{port}", f"{QUEUES}/tests"
    with emulator_command(address, "--state", str(state)):
        retry = tasks_client(address).get_queue(name=tests_queue).retry_config
        assert retry.max_attempts == -1  # Cloud Tasks' default is 100
        tasks_client(address).update_queue(
            queue={"name": tests_queue, "retry_config": {"max_attempts": 5}},
            update_mask={"paths": ["retry_config.max_attempts"]},
        )

    with emulator_command(address, "--state", str(state)) as (_, printed):
        assert f"  queue {tests_queue} (updated)" in printed
        assert f"  queue {QUEUES}/second-queue" in printed  # as the settings want it already
        assert tasks_client(address).get_queue(name=tests_queue).retry_config.max_attempts == -1


def test_its_queues_have_the_settings_queue_options():
    address = f"127.0.0.1:{free_port_pair()}"
    options = {
        "rate_limits": {"max_dispatches_per_second": 2.5, "max_concurrent_dispatches": 7},
        "retry_config": {"min_backoff": 0.5, "max_backoff": 60, "max_doublings": 4},
    }
    with emulator_command(address, DJQ_QUEUE_OPTIONS=json.dumps(options)):
        for queue in ("tests", "second-queue"):  # the second cluster inherits them
            made = tasks_client(address).get_queue(name=f"{QUEUES}/{queue}")
            rate, retry = made.rate_limits, made.retry_config
            assert (rate.max_dispatches_per_second, rate.max_concurrent_dispatches) == (2.5, 7)
            assert (retry.min_backoff.total_seconds(), retry.max_backoff.total_seconds()) == (
                0.5,
                60,
            )
            assert (retry.max_doublings, retry.max_attempts) == (4, -1)


def test_an_address_in_use_is_a_clear_error():
    port = free_port_pair()
    with (
        emulator_command(f"127.0.0.1:{port}"),
        emulator_command(f"127.0.0.1:{port}") as (second, printed),
    ):
        pass
    assert second.returncode == 1
    assert any("is another emulator running there?" in line for line in printed)


def test_it_calls_the_projects_tick_every_minute_unless_told_otherwise():
    with emulator_command(f"127.0.0.1:{free_port_pair()}") as (_, printed):
        assert "  tick: POST https://tasks.example.com/_tasks/tick/ every 60 s" in printed
    with emulator_command(f"127.0.0.1:{free_port_pair()}", "--tick-every", "0") as (_, printed):
        assert not any("tick:" in line for line in printed)


def test_it_runs_the_cloud_run_job_of_each_job_cluster_with_this_projects_code():
    address = f"127.0.0.1:{free_port_pair()}"
    job = "projects/test-project/locations/europe-west1/jobs/tests-worker"
    with emulator_command(address, DJQ_JOB_CLUSTER="1") as (_, printed):
        assert f"  queue {QUEUES}/long-queue (created)" in printed
        assert f"  Cloud Run job {job}: {sys.executable} -m django cloudtasks_execute" in printed
        operation = jobs_client(address).run_job(name=job)  # without a task to run
        operation.result(timeout=60)
        execution = executions_client(address).get_execution(name=operation.metadata.name)
    # cloudtasks_execute ran, found no task named in its environment, and exited 2.
    assert execution.failed_count == 1
    assert any(
        "DJANGO_Q_CLOUDTASKS_TASK and DJANGO_Q_CLOUDTASKS_HOLDER are not set" in line
        for line in printed
    )


def test_a_negative_number_of_job_retries_is_refused():
    with emulator_command(f"127.0.0.1:{free_port_pair()}", "--job-retries", "-1") as (
        process,
        printed,
    ):
        pass
    assert process.returncode == 1
    assert "--job-retries must be 0 or more." in printed[-1]
