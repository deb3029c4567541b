from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import tasks_v2

from django_q_cloudtasks.emulator import Emulator
from django_q_cloudtasks.gcp.client import tasks_client
from tests.support.ports import free_port_pair
from tests.support.target import Target

# Recordings of the real service, kept in the repository with their licence (see its README).
RECORDINGS = Path(__file__).resolve().parent / "recordings"
PARENT = "projects/test-project/locations/europe-west1"
QUEUE = f"{PARENT}/queues/work"


def golden(name: str) -> list[dict[str, Any]]:
    """Recordings of the real Cloud Tasks service."""
    return json.loads((RECORDINGS / name).read_text())  # type: ignore[no-any-return]


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    """Keyword arguments of the ``emulator`` fixture's Emulator; override to change them."""
    return {}


@pytest.fixture
def emulator(emulator_options: dict[str, Any]) -> Iterator[Emulator]:
    """A fresh emulator with one empty queue, QUEUE, run with Cloud Tasks' defaults."""
    with Emulator(port=free_port_pair(), dedup_window=600, **emulator_options) as running:
        running.ensure_queue(QUEUE)
        yield running


@pytest.fixture
def api(emulator: Emulator) -> tasks_v2.CloudTasksClient:
    """The official client library, talking gRPC to the emulator."""
    return tasks_client(emulator.address)


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target().start()
    yield server
    server.stop()


@pytest.fixture
def create(api: tasks_v2.CloudTasksClient, target: Target) -> Callable[..., tasks_v2.Task]:
    """Create an HTTP task for ``target``; keywords set Task fields, ``queue`` the parent."""

    def make(
        task_id: str | None = None,
        *,
        queue: str = QUEUE,
        delay: float | None = None,
        **fields: Any,
    ) -> tasks_v2.Task:
        task: dict[str, Any] = {"http_request": {"url": target.url, "body": b"payload"}}
        if task_id:
            task["name"] = f"{queue}/tasks/{task_id}"
        if delay is not None:
            task["schedule_time"] = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
                seconds=delay
            )
        for key, value in fields.items():
            if key == "http_request":
                task["http_request"].update(value)
            else:
                task[key] = value
        return api.create_task(parent=queue, task=task)

    return make


def set_retry(api: tasks_v2.CloudTasksClient, queue: str = QUEUE, **retry: Any) -> None:
    api.update_queue(
        queue={"name": queue, "retry_config": retry},
        update_mask={"paths": [f"retry_config.{key}" for key in retry]},
    )
