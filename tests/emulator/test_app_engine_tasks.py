"""App Engine tasks in the emulator, through the official client: delivered to the app's
address given at start-up, with the headers App Engine sends (compared with the recordings
of the real service), no token, App Engine's deadline rules, and their routing kept."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2

from django_q_cloudtasks.emulator import Emulator
from django_q_cloudtasks.gcp.client import tasks_client
from tests.conftest import wait_for
from tests.emulator.conftest import QUEUE, golden
from tests.support.ports import free_port_pair
from tests.support.target import Target

APP_ENGINE_HEADERS = ("x-appengine-", "user-agent")


@pytest.fixture
def emulator_options(target: Target) -> dict[str, Any]:
    """The app listens where the target does: the emulator delivers there."""
    return {"app_engine_url": target.url.removesuffix("/work")}


@pytest.fixture
def create_app_engine(api: tasks_v2.CloudTasksClient) -> Any:
    """Create an App Engine task for the path /work; keywords set its request's fields."""

    def make(task_id: str | None = None, **request: Any) -> tasks_v2.Task:
        task: dict[str, Any] = {
            "app_engine_http_request": {"relative_uri": "/work", "body": b"payload", **request}
        }
        if task_id:
            task["name"] = f"{QUEUE}/tasks/{task_id}"
        return api.create_task(parent=QUEUE, task=task)

    return make


def app_engine_headers(delivery: Any) -> dict[str, str]:
    return {
        name.lower(): value
        for name, value in delivery.headers.items()
        if name.lower().startswith(APP_ENGINE_HEADERS)
    }


def test_attempts_carry_the_headers_app_engine_sends(create_app_engine, target):
    recording = next(r for r in golden("dispatch.json") if r["requestType"] == "appengine")
    target.answer(*(attempt["status"] for attempt in recording["attempts"][:-1]))
    create_app_engine("recorded")
    wait_for(lambda: len(target.deliveries) == len(recording["attempts"]), timeout=30)
    for attempt, delivery in zip(recording["attempts"], target.deliveries, strict=True):
        expected = {
            name.lower(): value.replace("{queue}", "work").replace("{task}", "recorded")
            for name, value in attempt["headers"].items()
        }
        actual = app_engine_headers(delivery)
        eta = actual.pop("x-appengine-tasketa")
        assert expected.pop("x-appengine-tasketa") == "{eta}"
        assert abs(float(eta) - delivery.received) < 5
        assert actual == expected, f"attempt {attempt['attempt']}"
        assert delivery.path == "/work"
        assert delivery.header("Authorization") is None  # App Engine tasks carry no token


@pytest.mark.parametrize(
    "recording",
    [r for r in golden("headers.json") if r["requestType"] == "appengine"],
    ids=lambda r: r["name"],
)
def test_a_tasks_headers_are_kept_as_app_engine_keeps_them(
    api, create_app_engine, target, recording
):
    api.pause_queue(name=QUEUE)
    # The recorded task's body: its 17 bytes are the Content-Length the service kept.
    created = create_app_engine("headers", headers=recording["sent"], body=b'{"hello":"world"}')
    kept = dict(
        api.get_task(
            request={"name": created.name, "response_view": "FULL"}
        ).app_engine_http_request.headers
    )
    assert kept == recording["getFull"]["headers"]
    api.resume_queue(name=QUEUE)
    delivery = wait_for(lambda: target.deliveries and target.deliveries[0])
    assert delivery.header("X-Mixed-Case") == "preserve-me"


def test_its_routing_is_kept_and_its_host_shown(api, create_app_engine):
    api.pause_queue(name=QUEUE)
    created = create_app_engine(app_engine_routing={"service": "worker", "version": "v2"})
    routing = api.get_task(name=created.name).app_engine_http_request.app_engine_routing
    assert (routing.service, routing.version, routing.instance) == ("worker", "v2", "")
    assert routing.host == "v2.worker.test-project.appspot.com"


def test_its_dispatch_deadline_may_reach_24_hours_and_15_seconds(api, create_app_engine):
    api.pause_queue(name=QUEUE)
    day = datetime.timedelta(hours=24, seconds=15)
    task = {"app_engine_http_request": {"relative_uri": "/work"}, "dispatch_deadline": day}
    assert api.create_task(parent=QUEUE, task=task).dispatch_deadline == day
    task["dispatch_deadline"] = day + datetime.timedelta(seconds=1)
    with pytest.raises(exceptions.InvalidArgument, match="24 hours 15 seconds"):
        api.create_task(parent=QUEUE, task=task)


def test_a_relative_uri_must_be_a_path(api):
    task = {"app_engine_http_request": {"relative_uri": "work"}}
    with pytest.raises(exceptions.InvalidArgument, match='must begin with "/"'):
        api.create_task(parent=QUEUE, task=task)


def test_without_the_apps_address_app_engine_tasks_are_refused(tmp_path: Path):
    with Emulator(port=free_port_pair()) as emulator:
        emulator.ensure_queue(QUEUE)
        api = tasks_client(emulator.address)
        task = {"app_engine_http_request": {"relative_uri": "/work"}}
        with pytest.raises(exceptions.FailedPrecondition, match="--app-engine-url"):
            api.create_task(parent=QUEUE, task=task)


def test_app_engine_tasks_outlive_a_restart_in_the_state_file(tmp_path: Path, target: Target):
    state, port = tmp_path / "state.jsonl", free_port_pair()
    app = target.url.removesuffix("/work")
    with Emulator(port=port, state_path=state, app_engine_url=app) as emulator:
        emulator.ensure_queue(QUEUE)
        api = tasks_client(emulator.address)
        api.pause_queue(name=QUEUE)
        task = {
            "name": f"{QUEUE}/tasks/kept",
            "app_engine_http_request": {
                "relative_uri": "/work",
                "app_engine_routing": {"service": "worker"},
            },
        }
        api.create_task(parent=QUEUE, task=task)
    with Emulator(port=port, state_path=state, app_engine_url=app) as emulator:
        kept = tasks_client(emulator.address).get_task(name=f"{QUEUE}/tasks/kept")
        assert kept.app_engine_http_request.app_engine_routing.service == "worker"
        assert kept.app_engine_http_request.relative_uri == "/work"
    with pytest.raises(ValueError, match=r"holds App Engine tasks.*--app-engine-url"):
        Emulator(port=free_port_pair(), state_path=state)


def test_the_service_owns_the_app_engine_headers_the_length_and_the_user_agents_end(
    api, create_app_engine, target
):
    api.pause_queue(name=QUEUE)
    given = {
        "User-Agent": "mysite/1.0",
        "Content-Length": "999",
        "X-AppEngine-QueueName": "made-up",
        "X-Own": "kept",
    }
    created = create_app_engine("owned", headers=given, body=b"12345")
    kept = dict(api.get_task(name=created.name).app_engine_http_request.headers)
    assert kept == {
        "User-Agent": "mysite/1.0 AppEngine-Google; (+http://code.google.com/appengine)",
        "Content-Length": "5",
        "X-Own": "kept",
        "Content-Type": "application/octet-stream",
    }
    api.resume_queue(name=QUEUE)
    delivery = wait_for(lambda: target.deliveries and target.deliveries[0])
    assert delivery.header("X-AppEngine-QueueName") == "work"
    assert delivery.header("User-Agent") == kept["User-Agent"]
