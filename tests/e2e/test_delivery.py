"""async_task() through a real Cloud Tasks emulator and HTTP delivery to a live server.

No qcluster runs: every result below was produced by the receiver view under gunicorn.
"""

import hashlib
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django_q.models import Failure, Success, Task
from django_q.tasks import async_chain, async_task, fetch, result, result_group

from django_q_cloudtasks import async_task_after
from django_q_cloudtasks.conf import queue_settings
from django_q_cloudtasks.gcp.client import tasks_client
from django_q_cloudtasks.gcp.tasks import run_task
from django_q_cloudtasks.models import Payload
from django_q_cloudtasks.wire import PACKAGE_CONTENT_TYPE
from tests.conftest import wait_for
from tests.e2e.conftest import queue_is_empty
from tests.support.packages import make_task, sign

pytestmark = pytest.mark.e2e


def test_async_task_becomes_a_success_row(e2e):
    task_id = async_task("math.copysign", 2, -2)
    assert result(task_id, wait=20_000) == -2.0
    task = fetch(task_id)
    assert (task.success, task.attempt_count, task.cluster) == (True, 1, "tests")


def test_a_task_with_5_mb_of_arguments_runs_and_its_payload_is_cleaned_up(e2e):
    data = os.urandom(5 * 1000 * 1000)  # over Cloud Tasks' 1 MiB even compressed
    task_id = async_task("tests.project.tasks.digest", data)
    assert result(task_id, wait=30_000) == hashlib.sha256(data).hexdigest()
    wait_for(lambda: not Payload.objects.filter(task_id=task_id).exists())


def test_a_failing_task_is_retried_until_max_attempts_then_left_alone(e2e, tmp_path):
    trace = tmp_path / "runs"
    task_id = async_task("tests.project.tasks.count_and_fail", str(trace))
    failure = wait_for(lambda: Failure.objects.filter(id=task_id, attempt_count=3).first())
    assert "this task always fails" in failure.result
    time.sleep(2)  # the emulator retries within 0.1 s: a fourth delivery would show by now
    assert trace.read_text() == "xxx"
    assert Task.objects.get(id=task_id).attempt_count == 3


def test_run_now_on_a_task_delayed_by_two_days_runs_it_once(e2e, trace):
    """The admin's "Run now" (RunTask): Cloud Tasks delivers the task two days early."""
    if e2e["emulator"] != "built-in":
        pytest.skip("the third-party emulator delivers at once, ignoring schedule_time")
    task_id = async_task_after(timedelta(days=2), "tests.project.tasks.append", str(trace), "ran\n")
    assert run_task(queue_settings(), task_id)
    wait_for(lambda: Success.objects.filter(id=task_id).exists())
    wait_for(lambda: queue_is_empty(e2e))
    assert trace.runs == ["ran"]


def test_a_hook_is_called_with_the_result(e2e, tmp_path):
    hook_file = tmp_path / "hook"
    task_id = async_task(
        "tests.project.tasks.echo",
        42,
        hook_path=str(hook_file),
        hook="tests.project.tasks.record_hook",
    )
    assert result(task_id, wait=20_000) == 42
    # The hook runs after the result is saved; its file exists before it is written.
    wait_for(lambda: hook_file.exists() and hook_file.read_text())
    assert hook_file.read_text() == "tests.project.tasks.echo=42"


def test_a_chain_of_three_runs_in_order(e2e, tmp_path):
    trace = str(tmp_path / "chain")
    async_chain([("tests.project.tasks.append", (trace, letter)) for letter in "abc"])
    wait_for(lambda: Path(trace).exists() and len(Path(trace).read_text()) == 3)
    assert Path(trace).read_text() == "abc"


def test_a_group_of_five_is_collected(e2e):
    for number in range(5):
        async_task("math.sqrt", number * number, group="squares")
    assert sorted(result_group("squares", count=5, wait=20_000)) == [0, 1, 2, 3, 4]


def test_a_task_for_a_second_cluster_lands_in_the_second_queue(e2e):
    client = tasks_client(e2e["emulator_host"])
    second = "projects/test-project/locations/europe-west1/queues/second-queue"
    client.pause_queue(name=second)
    try:
        task_id = async_task("math.copysign", 5, -1, cluster="second")
        queued = [task.name.rsplit("/", 1)[-1] for task in client.list_tasks(parent=second)]
        assert queued == [task_id]
    finally:
        client.resume_queue(name=second)
    assert result(task_id, wait=20_000) == -5.0
    assert fetch(task_id).cluster == "second"


def test_the_server_refuses_a_token_for_an_account_it_does_not_allow(e2e, tmp_path):
    if e2e["emulator"] != "built-in":
        pytest.skip("only the built-in emulator signs ID tokens")
    trace = tmp_path / "runs"
    queue = "projects/test-project/locations/europe-west1/queues/tests"
    client = tasks_client(e2e["emulator_host"])
    task = client.create_task(
        parent=queue,
        task={
            "http_request": {
                "url": e2e["url"],
                "headers": {"Content-Type": PACKAGE_CONTENT_TYPE},
                "body": sign(make_task("tests.project.tasks.append", str(trace), "x")),
                "oidc_token": {
                    "service_account_email": "intruder@elsewhere.iam.gserviceaccount.com",
                    "audience": e2e["url"].rsplit("/_tasks/", 1)[0],
                },
            }
        },
    )
    wait_for(lambda: client.get_task(name=task.name).dispatch_count)
    attempt = client.get_task(name=task.name).last_attempt
    assert attempt.response_status.code == 7  # PERMISSION_DENIED: the server answered 403
    client.delete_task(name=task.name)
    assert not trace.exists()
