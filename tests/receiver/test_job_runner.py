"""A job cluster's task inside its Cloud Run job execution (``cloudtasks_execute``): the
claim adopted by one execution only, the task run once to its result row, SIGTERM raised
as TaskCancelled inside it, its Cloud Task and package deleted once it is done."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Failure, Success
from django_q.tasks import async_task

from django_q_cloudtasks import CloudTasksBroker
from django_q_cloudtasks.models import Payload, Receipt
from django_q_cloudtasks.receiver import job_runner, launcher, leases
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

EXECUTION = "worker-abcde"
JOB = "projects/test-project/locations/europe-west1/jobs/worker"


@pytest.fixture
def long(configure: Any, paused_cloud_tasks: Any) -> Any:
    """The job cluster "long" (max_attempts 2), whose queue holds what is enqueued."""
    paused_cloud_tasks.emulator.ensure_queue(f"{paused_cloud_tasks.QUEUES['tests']}-long")
    paused_cloud_tasks.client.pause_queue(name=f"{paused_cloud_tasks.QUEUES['tests']}-long")
    cluster = {
        "timeout": 60,
        "max_attempts": 2,
        "cloud_tasks": {"target": "cloud_run_job", "job": "worker", "queue": "tests-long"},
    }
    configure(q_cluster={"ALT_CLUSTERS": {"long": cluster}})
    return paused_cloud_tasks


def launched(func: str, *args: Any, named: str | None = None, **kwargs: Any) -> dict[str, str]:
    """Enqueue a task of the job cluster (with the id ``named``, if given), and claim it as
    the receiver does when it starts an execution; returns the execution's environment."""
    broker = CloudTasksBroker("long", task_id=named)
    task_id = named or async_task(func, *args, q_options={"broker": broker}, **kwargs)
    if named:
        async_task(func, *args, q_options={"broker": broker}, **kwargs)
    holder = uuid.uuid4().hex
    Receipt.objects.claim(task_id, "long", holder, launcher.LAUNCH_LEASE)
    return {
        job_runner.TASK_ENV: task_id,
        job_runner.HOLDER_ENV: holder,
        job_runner.CLOUD_TASK_ENV: task_id,
        "CLOUD_RUN_EXECUTION": EXECUTION,
        "CLOUD_RUN_TASK_ATTEMPT": "0",
    }


def cloud_tasks(long: Any) -> list[str]:
    return [
        task.name.rsplit("/", 1)[1]
        for task in long.client.list_tasks(parent=f"{long.QUEUES['tests']}-long")
    ]


def test_the_task_runs_once_to_its_success_and_leaves_nothing_behind(long, tmp_path):
    env = launched("tests.project.tasks.append", str(tmp_path / "trace"), "ran")
    task_id = env[job_runner.TASK_ENV]
    assert cloud_tasks(long) == [task_id]
    report = job_runner.run(env)
    assert report.exit_code == 0
    assert report.message.endswith("(tests.project.tasks.append): succeeded.")
    assert Success.objects.get(id=task_id).cluster == "long"
    receipt = Receipt.objects.get(task_id=task_id)
    assert (receipt.state, receipt.execution) == ("done", f"{JOB}/executions/{EXECUTION}")
    assert cloud_tasks(long) == []
    assert not Payload.objects.filter(task_id=task_id).exists()
    assert (tmp_path / "trace").read_text() == "ran"


def test_a_second_execution_for_the_same_claim_runs_nothing(long, tmp_path):
    env = launched("tests.project.tasks.append", str(tmp_path / "trace"), "ran")
    Receipt.objects.adopt(
        env[job_runner.TASK_ENV],
        env[job_runner.HOLDER_ENV],
        f"{JOB}/executions/{EXECUTION}",
        leases.LEASE,
        retried=False,
    )
    report = job_runner.run({**env, "CLOUD_RUN_EXECUTION": "worker-other"})
    assert (report.exit_code, report.message) == (
        0,
        f"Task {env[job_runner.TASK_ENV]} has finished, or another execution runs it.",
    )
    assert not (tmp_path / "trace").exists()


def test_a_later_attempt_of_the_same_execution_takes_over_at_once(long, tmp_path):
    env = launched("tests.project.tasks.append", str(tmp_path / "trace"), "ran")
    task_id = env[job_runner.TASK_ENV]
    # The first attempt adopted the claim, then died (its lease still fresh).
    Receipt.objects.adopt(
        task_id,
        env[job_runner.HOLDER_ENV],
        f"{JOB}/executions/{EXECUTION}",
        leases.LEASE,
        retried=False,
    )
    assert job_runner.run({**env, "CLOUD_RUN_TASK_ATTEMPT": "1"}).exit_code == 0
    assert Success.objects.filter(id=task_id).exists()
    assert Receipt.objects.get(task_id=task_id).lost == 1


def test_a_failure_with_attempts_left_leaves_the_task_for_the_next_delivery(long, tmp_path):
    env = launched("tests.project.tasks.count_and_fail", str(tmp_path / "trace"))
    task_id = env[job_runner.TASK_ENV]
    report = job_runner.run(env)
    assert (report.exit_code, report.message.rsplit(" ", 1)[1]) == (0, "retry.")
    assert Receipt.objects.get(task_id=task_id).state == Receipt.State.RETRY
    assert cloud_tasks(long) == [task_id]  # it delivers the task again, to a new execution
    assert Payload.objects.filter(task_id=task_id).exists()
    assert Failure.objects.get(id=task_id).attempt_count == 1


@pytest.mark.parametrize(
    ("cancel_first", "verdict", "state"),
    [
        (True, "cancelled.", "done"),  # cancel(): not retried
        (False, "retry.", "retry"),  # Cloud Run stopping it for its own reasons: retried
    ],
)
def test_sigterm_raises_task_cancelled_inside_the_task(
    long, tmp_path, cancel_first, verdict, state
):
    trace, task_id = tmp_path / "trace", uuid.uuid4().hex
    env = launched(
        "tests.project.tasks.stopped_by_sigterm",
        str(trace),
        task_id,
        cancel_first=cancel_first,
        named=task_id,
    )
    report = job_runner.run(env)
    assert report.message.endswith(verdict)
    assert trace.read_text() == "ran\n"  # stopped: it never wrote "not stopped"
    failure = Failure.objects.get(id=task_id)
    assert "TaskCancelled: " in failure.result
    assert "SIGTERM" in failure.result
    assert Receipt.objects.get(task_id=task_id).state == state


def test_a_task_cancelled_before_its_execution_started_is_not_run(long, tmp_path):
    env = launched("tests.project.tasks.append", str(tmp_path / "trace"), "ran")
    task_id = env[job_runner.TASK_ENV]
    Receipt.objects.filter(task_id=task_id).update(cancelled=timezone.now())
    assert job_runner.run(env).message.endswith("cancelled.")
    assert not (tmp_path / "trace").exists()
    assert Failure.objects.get(id=task_id).result.startswith("TaskCancelled: ")
    assert cloud_tasks(long) == []


def test_a_cancellation_the_lease_renewal_learns_of_stops_the_task(long, tmp_path, monkeypatch):
    """As when Cloud Run could not be asked to cancel the execution."""
    monkeypatch.setattr(leases, "CHECK_EVERY", 0.05)
    trace = tmp_path / "trace"
    env = launched("tests.project.tasks.clean_up_when_cancelled", str(trace), 30)
    task_id = env[job_runner.TASK_ENV]

    def cancel_once_running() -> None:
        wait_for(trace.exists)
        Receipt.objects.filter(task_id=task_id).update(cancelled=timezone.now())

    threading.Thread(target=cancel_once_running).start()
    started = time.monotonic()
    assert job_runner.run(env).message.endswith("cancelled.")
    assert time.monotonic() - started < 10  # not the 30 s the task sleeps
    assert trace.read_text().splitlines()[1] == "cleaned up"


def test_a_package_this_execution_cannot_read_counts_as_a_lost_run(long, tmp_path, monkeypatch):
    env = launched("tests.project.tasks.append", str(tmp_path / "trace"), "ran")
    task_id = env[job_runner.TASK_ENV]
    monkeypatch.setattr(Conf, "SECRET_KEY", "the job's settings have another key")
    report = job_runner.run(env)
    assert report.exit_code == 0
    assert "cannot run here" in report.message
    receipt = Receipt.objects.get(task_id=task_id)
    assert (receipt.state, receipt.lost) == ("retry", 1)
    assert not (tmp_path / "trace").exists()


def test_without_the_receivers_environment_nothing_runs():
    report = job_runner.run({})
    assert report.exit_code == 2
    assert "DJANGO_Q_CLOUDTASKS_TASK and DJANGO_Q_CLOUDTASKS_HOLDER are not set" in report.message


def test_a_task_never_claimed_runs_nothing(long):
    report = job_runner.run({job_runner.TASK_ENV: "nope", job_runner.HOLDER_ENV: "x"})
    assert (report.exit_code, report.message) == (0, "Task nope was never claimed: nothing to run.")


def test_a_second_sigterm_does_not_cut_the_tasks_clean_up_short(long, tmp_path):
    trace = tmp_path / "trace"
    env = launched("tests.project.tasks.clean_up_through_a_second_sigterm", str(trace))
    assert job_runner.run(env).message.endswith("retry.")  # no cancel() was asked for
    assert trace.read_text() == "cleaned up\n"
    assert "TaskCancelled" in Failure.objects.get(id=env[job_runner.TASK_ENV]).result


def test_a_task_that_exits_past_django_q_has_its_run_counted_as_lost(long, tmp_path):
    env = launched("tests.project.tasks.exit_with", str(tmp_path / "trace"), 3)
    with pytest.raises(SystemExit) as exited:
        job_runner.run(env)
    assert exited.value.code == 3
    receipt = Receipt.objects.get(task_id=env[job_runner.TASK_ENV])
    assert (receipt.state, receipt.lost) == ("retry", 1)  # max_attempts bounds it


def test_a_cached_failure_counts_the_executions_started_for_it(long, tmp_path):
    env = launched("tests.project.tasks.count_and_fail", str(tmp_path / "trace"), cached=True)
    task_id = env[job_runner.TASK_ENV]
    Receipt.objects.filter(task_id=task_id).update(deliveries=2)  # a second execution
    assert job_runner.run(env).message.endswith("failed.")  # max_attempts is 2
