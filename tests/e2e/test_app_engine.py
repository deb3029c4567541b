"""App Engine targets, end to end: the built-in emulator delivers the tasks of the cluster
"worker" as App Engine tasks (no token, ``X-AppEngine-*`` headers) to a live gunicorn that
runs as on App Engine, and to one that does not, which refuses them."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest
from django_q.models import Failure, Success
from django_q.tasks import async_task

from django_q_cloudtasks.gcp.client import tasks_client
from django_q_cloudtasks.wire import PACKAGE_CONTENT_TYPE
from tests.conftest import wait_for
from tests.e2e.conftest import PARENT, answers
from tests.project.settings import APP_ENGINE_CLUSTER
from tests.support.packages import make_task, sign

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WORKER_QUEUE = f"{PARENT}/worker-queue"


@pytest.fixture
def stack_with(start_stack: Any, configure: Any, settings: Any) -> Any:
    """A stack with the App Engine cluster "worker", whose server is on App Engine or not."""

    def start(*, on_app_engine: bool) -> dict[str, str]:
        stack: dict[str, str] = start_stack(
            project_env={"DJQ_APP_ENGINE_CLUSTER": "1"},
            app_engine="on" if on_app_engine else "off",
        )
        alt = {**settings.Q_CLUSTER["ALT_CLUSTERS"], "worker": APP_ENGINE_CLUSTER}
        configure(q_cluster={"ALT_CLUSTERS": alt})
        return stack

    return start


def worker_tasks(stack: dict[str, str]) -> list[Any]:
    client = tasks_client(stack["emulator_host"])
    return list(client.list_tasks(request={"parent": WORKER_QUEUE, "response_view": "FULL"}))


def test_an_app_engine_task_runs_to_its_success_row(stack_with, trace):
    stack = stack_with(on_app_engine=True)
    tasks_client(stack["emulator_host"]).pause_queue(name=WORKER_QUEUE)
    task_id = async_task("tests.project.tasks.append", str(trace), "ran", cluster="worker")
    (cloud_task,) = worker_tasks(stack)
    request = cloud_task.app_engine_http_request
    assert (request.relative_uri, request.app_engine_routing.service) == ("/_tasks/", "worker")
    assert type(cloud_task).pb(cloud_task).WhichOneof("message_type") == "app_engine_http_request"
    assert cloud_task.dispatch_deadline.total_seconds() == 7215  # 2 hours: basic scaling
    tasks_client(stack["emulator_host"]).resume_queue(name=WORKER_QUEUE)
    success = wait_for(lambda: Success.objects.filter(id=task_id).first(), timeout=60)
    assert (success.cluster, success.result) == ("worker", "ran")
    assert trace.runs == ["ran"]
    assert answers(stack, at_least=1) == [200]


def test_a_failing_app_engine_task_is_retried_to_max_attempts(stack_with, trace):
    stack = stack_with(on_app_engine=True)
    task_id = async_task("tests.project.tasks.count_and_fail", str(trace), cluster="worker")
    failure = wait_for(
        lambda: Failure.objects.filter(id=task_id, attempt_count=2).first(), timeout=60
    )
    wait_for(lambda: not worker_tasks(stack))  # max_attempts 2: Cloud Tasks is done with it
    assert "this task always fails" in failure.result
    assert trace.path.read_text() == "xx"
    assert answers(stack, at_least=2) == [500, 200]


def test_a_receiver_not_on_app_engine_refuses_app_engine_deliveries_and_runs_nothing(
    stack_with, trace
):
    stack = stack_with(on_app_engine=False)
    task_id = async_task("tests.project.tasks.append", str(trace), "ran", cluster="worker")
    wait_for(lambda: len(answers(stack)) >= 3, timeout=60)  # delivered, and again, and again
    assert set(answers(stack)) == {401}
    assert not trace.path.exists()
    assert not Success.objects.filter(id=task_id).exists()
    (cloud_task,) = worker_tasks(stack)
    assert cloud_task.dispatch_count >= 3


@pytest.mark.parametrize(
    "spelling",
    [
        {"X-AppEngine-QueueName": "worker-queue", "X-AppEngine-TaskName": "t1"},
        {"X_AppEngine_QueueName": "worker-queue", "X_AppEngine_TaskName": "t1"},
    ],
    ids=["hyphens", "underscores"],
)
def test_on_app_engine_only_app_engines_own_spelling_of_its_headers_counts(
    stack_with, trace, spelling
):
    """What reaches an instance from outside: App Engine strips the hyphenated headers (so a
    request still bearing them came from inside Google); gunicorn drops the underscored
    ones, which App Engine would let through. Sent here with a body the project signed, a
    caller with such headers but no token must not get it run: the underscored spelling
    never reaches Django as App Engine's."""
    stack = stack_with(on_app_engine=True)
    task = make_task("tests.project.tasks.append", str(trace), "ran")
    task["cluster"] = "worker"
    request = urllib.request.Request(
        stack["url"],
        data=sign(task),
        headers={"Content-Type": PACKAGE_CONTENT_TYPE, **spelling},
        method="POST",
    )
    try:
        status = urllib.request.urlopen(request, timeout=30).status
    except urllib.error.HTTPError as error:
        status = error.code
    if "X-AppEngine-QueueName" in spelling:
        assert status == 200  # as App Engine's own: it ran (outside, App Engine strips it)
        assert trace.runs == ["ran"]
    else:
        assert status == 401
        assert not trace.path.exists()
