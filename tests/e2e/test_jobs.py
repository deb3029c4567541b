"""Job clusters, end to end: the built-in emulator delivers each task of the cluster "long"
to a live gunicorn, whose receiver starts an execution of the Cloud Run job
"tests-worker", which the emulator runs as a process of this project
(``manage.py cloudtasks_execute``); and cancelling tasks, there and in the receiver.

The server's request timeout is 5 s: a task that ran in it for longer would be killed.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from django_q.models import Failure, Success
from django_q.tasks import async_task

from django_q_cloudtasks import Cancellation, CloudTasksBroker, cancel
from django_q_cloudtasks.gcp.client import executions_client, jobs_client, tasks_client
from django_q_cloudtasks.models import Payload, Receipt
from tests.conftest import wait_for
from tests.e2e.conftest import PARENT, answers
from tests.project.settings import JOB_CLUSTER

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

REQUEST_TIMEOUT = 5
JOB = "projects/test-project/locations/europe-west1/jobs/tests-worker"
LONG_QUEUE = f"{PARENT}/long-queue"
# The most cancel() may take to leave its Failure row.
CANCEL_SECONDS = 15


@pytest.fixture
def job_stack(start_stack: Any, configure: Any, settings: Any) -> dict[str, str]:
    """A stack whose settings have the job cluster "long", here and in every process."""
    stack: dict[str, str] = start_stack(
        project_env={"DJQ_JOB_CLUSTER": "1"}, request_timeout=REQUEST_TIMEOUT
    )
    configure(
        q_cluster={"ALT_CLUSTERS": {**settings.Q_CLUSTER["ALT_CLUSTERS"], "long": JOB_CLUSTER}}
    )
    return stack


def long_queue_is_empty(stack: dict[str, str]) -> bool:
    return not list(tasks_client(stack["emulator_host"]).list_tasks(parent=LONG_QUEUE))


def server_pids(stack: dict[str, str]) -> set[int]:
    """gunicorn's master and its workers."""
    master = int(stack["server_pid"])
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {master, *map(int, children)}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A process that exited but was not yet waited for is a zombie: gone all the same.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_a_task_longer_than_the_servers_request_timeout_succeeds_in_a_job_execution(
    job_stack, trace
):
    seconds = REQUEST_TIMEOUT + 3
    enqueued = time.monotonic()
    task_id = async_task("tests.project.tasks.where_it_runs", str(trace), seconds, cluster="long")
    wait_for(lambda: trace.runs, timeout=60)
    print(f"the execution started the task {time.monotonic() - enqueued:.1f} s after async_task")
    success = wait_for(lambda: Success.objects.filter(id=task_id).first(), timeout=90)
    pid, execution = trace.runs[0].split()
    assert execution.startswith("tests-worker-")
    assert int(pid) not in server_pids(job_stack)
    assert success.result == {"pid": int(pid), "execution": execution}
    assert success.time_taken() >= seconds > REQUEST_TIMEOUT
    assert success.cluster == "long"
    wait_for(lambda: long_queue_is_empty(job_stack))  # the execution deleted its Cloud Task
    receipt = Receipt.objects.get(task_id=task_id)
    assert (receipt.state, receipt.execution) == ("done", f"{JOB}/executions/{execution}")
    wait_for(lambda: not Payload.objects.filter(task_id=task_id).exists())  # then its package
    assert 409 in answers(job_stack)  # "launched": the receiver only started the execution
    assert len(trace.runs) == 1


def test_a_job_process_killed_mid_task_is_retried_once_into_one_success(job_stack, trace):
    task_id = async_task(
        "tests.project.tasks.note_pid_then_sleep",
        str(trace),
        3,
        cluster="long",
        hook="tests.project.tasks.count_saves",
    )
    pid = int(wait_for(lambda: trace.runs, timeout=60)[0])
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: Success.objects.filter(id=task_id).exists(), timeout=90)
    print(f"retried by Cloud Run and finished {time.monotonic() - killed:.1f} s after the kill")
    assert len(trace.runs) == 2
    assert trace.saves == 1
    assert Success.objects.get(id=task_id).attempt_count == 1
    assert Receipt.objects.get(task_id=task_id).lost == 1
    assert not Failure.objects.filter(id=task_id).exists()


def test_the_same_task_id_enqueued_twice_runs_once(job_stack, trace):
    task_id = "4d3c2b1a4d3c2b1a4d3c2b1a4d3c2b1a"
    for _ in range(2):  # the broker names the task: the second CreateTask finds the first
        broker = CloudTasksBroker("long", task_id=task_id)
        async_task("tests.project.tasks.append", str(trace), "ran\n", q_options={"broker": broker})
    wait_for(lambda: Success.objects.filter(id=task_id).exists(), timeout=60)
    wait_for(lambda: long_queue_is_empty(job_stack))
    assert trace.runs == ["ran"]


def test_a_second_execution_started_for_the_same_claim_runs_nothing(job_stack, trace):
    task_id = async_task("tests.project.tasks.note_pid_then_sleep", str(trace), 4, cluster="long")
    wait_for(lambda: trace.runs, timeout=60)
    holder = Receipt.objects.get(task_id=task_id).holder
    # The receiver's RunJob again, as if its first answer had been lost and it was retried.
    env = [
        {"name": "DJANGO_Q_CLOUDTASKS_TASK", "value": task_id},
        {"name": "DJANGO_Q_CLOUDTASKS_HOLDER", "value": holder},
    ]
    second = jobs_client(job_stack["emulator_host"]).run_job(
        request={"name": JOB, "overrides": {"container_overrides": [{"env": env}]}}
    )
    second.result(timeout=60)  # the second execution is done
    executions = executions_client(job_stack["emulator_host"])
    assert executions.get_execution(name=second.metadata.name).succeeded_count == 1
    wait_for(lambda: Success.objects.filter(id=task_id).exists(), timeout=60)
    assert len(trace.runs) == 1


def test_cancel_stops_a_running_job_task_and_its_failure_says_cancelled(job_stack, trace):
    task_id = async_task(
        "tests.project.tasks.clean_up_when_cancelled", str(trace), 300, cluster="long"
    )
    pid = int(wait_for(lambda: trace.runs, timeout=60)[0])
    asked = time.monotonic()
    assert cancel(task_id) is Cancellation.STOPPING
    failure = wait_for(lambda: Failure.objects.filter(id=task_id).first(), timeout=CANCEL_SECONDS)
    wait_for(lambda: not alive(pid), timeout=CANCEL_SECONDS - (time.monotonic() - asked))
    print(
        f"cancelled, its Failure row saved and its process gone in {time.monotonic() - asked:.1f} s"
    )
    assert "cancelled" in failure.result.lower()
    assert "TaskCancelled" in failure.result
    assert trace.runs == [str(pid), "cleaned up"]
    wait_for(lambda: long_queue_is_empty(job_stack))  # not retried
    assert Receipt.objects.get(task_id=task_id).state == "done"
    assert Failure.objects.get(id=task_id).attempt_count == 1


def test_cancel_of_a_waiting_job_task_means_it_never_runs(job_stack, trace):
    client = tasks_client(job_stack["emulator_host"])
    client.pause_queue(name=LONG_QUEUE)
    task_id = async_task("tests.project.tasks.append", str(trace), "ran\n", cluster="long")
    assert cancel(task_id) is Cancellation.DELETED
    assert long_queue_is_empty(job_stack)
    client.resume_queue(name=LONG_QUEUE)
    assert not Payload.objects.filter(task_id=task_id).exists()
    assert Receipt.objects.get(task_id=task_id).cancelled is not None
    assert trace.runs == []


def test_cancel_of_a_waiting_task_means_it_never_runs(start_stack, trace):
    stack = start_stack()
    client = tasks_client(stack["emulator_host"])
    client.pause_queue(name=f"{PARENT}/tests")
    task_id = async_task("tests.project.tasks.append", str(trace), "ran\n")
    assert cancel(task_id) is Cancellation.DELETED
    client.resume_queue(name=f"{PARENT}/tests")
    assert not list(client.list_tasks(parent=f"{PARENT}/tests"))
    assert trace.runs == []
    assert not Success.objects.filter(id=task_id).exists()


def test_cancelled_turns_true_inside_a_receiver_task_within_15_s(start_stack, trace):
    stack = start_stack()
    task_id = async_task("tests.project.tasks.until_cancelled", str(trace))
    wait_for(lambda: trace.runs, timeout=30)
    asked = time.monotonic()
    assert cancel(task_id) is Cancellation.ASKED
    failure = wait_for(lambda: Failure.objects.filter(id=task_id).first(), timeout=CANCEL_SECONDS)
    print(
        f"cancelled() turned true, and the Failure row was saved, in {time.monotonic() - asked:.1f} s"
    )
    assert trace.runs[0] == "ran"
    assert trace.runs[1].startswith("cancelled after")
    assert "TaskCancelled" in failure.result
    wait_for(
        lambda: not list(tasks_client(stack["emulator_host"]).list_tasks(parent=f"{PARENT}/tests"))
    )
    assert Receipt.objects.get(task_id=task_id).state == "done"
    assert 500 not in answers(stack)  # answered 200 "cancelled": no retry


def test_a_failing_job_task_is_retried_to_max_attempts_and_its_hook_runs(job_stack, trace):
    task_id = async_task(
        "tests.project.tasks.count_and_fail",
        str(trace),
        cluster="long",
        hook="tests.project.tasks.count_saves",
    )
    failure = wait_for(
        lambda: Failure.objects.filter(id=task_id, attempt_count=2).first(), timeout=90
    )
    wait_for(lambda: long_queue_is_empty(job_stack))  # max_attempts 2: done with it
    assert trace.path.read_text() == "xx"
    assert "this task always fails" in failure.result
    assert trace.saves == 2  # the hook, after each attempt


def test_a_chain_runs_link_by_link_in_job_executions(job_stack, trace):
    from django_q.tasks import async_chain

    async_chain(
        [
            ("tests.project.tasks.where_it_runs", (str(trace), 0)),
            ("tests.project.tasks.where_it_runs", (str(trace), 0)),
        ],
        broker=CloudTasksBroker("long"),
    )
    wait_for(lambda: Success.objects.filter(cluster="long").count() == 2, timeout=90)
    first, second = (line.split()[1] for line in trace.runs)
    assert first != second  # each link in an execution of its own


@pytest.mark.slow
def test_an_execution_cloud_run_gives_up_on_is_started_again_by_the_next_delivery(
    start_stack, configure, settings, trace
):
    stack = start_stack(
        project_env={"DJQ_JOB_CLUSTER": "1"},
        request_timeout=REQUEST_TIMEOUT,
        emulator_options=["--job-retries", "0"],  # Cloud Run does not try it again
    )
    configure(
        q_cluster={"ALT_CLUSTERS": {**settings.Q_CLUSTER["ALT_CLUSTERS"], "long": JOB_CLUSTER}}
    )
    tasks_client(stack["emulator_host"]).update_queue(
        queue={"name": LONG_QUEUE, "retry_config": {"max_backoff": {"seconds": 5}}},
        update_mask={"paths": ["retry_config.max_backoff"]},
    )
    task_id = async_task("tests.project.tasks.note_pid_then_sleep", str(trace), 3, cluster="long")
    # An execution starts a process of its own: slow on a busy machine.
    pid = int(wait_for(lambda: trace.runs, timeout=120)[0])
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: Success.objects.filter(id=task_id).exists(), timeout=120)
    print(
        f"started again by a delivery and finished {time.monotonic() - killed:.1f} s after the kill"
    )
    assert len(trace.runs) == 2
    receipt = Receipt.objects.get(task_id=task_id)
    assert receipt.lost == 1
    executions = executions_client(stack["emulator_host"]).list_executions(parent=JOB)
    assert len(list(executions)) == 2  # the receiver started a second one
