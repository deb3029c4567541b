"""The API clients: one per process, API and endpoint, made on first use.

Google's client libraries are imported when a client is first made, not before: importing
``google.cloud.tasks_v2`` costs about 0.35 s and 58 MB, which a process that only receives
tasks never pays. Clients are dropped in a forked child (gunicorn ``--preload``), because a
gRPC channel must not cross a fork.

In emulator mode a client talks plain gRPC to the emulator, with a channel of its own that
tries again within a second when the emulator went away: a restarted emulator is reached
at once, by every process that had a client of the last one.
"""

from __future__ import annotations

import importlib
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..exceptions import MissingExtra

if TYPE_CHECKING:
    from google.cloud.tasks_v2 import CloudTasksClient

# The most an emulator channel waits before it connects again, in milliseconds.
EMULATOR_RECONNECT_MS = 1000


@dataclass(frozen=True)
class _Api:
    module: str  # under google.cloud
    client_class: str
    service: str  # the package of its service under services/, for an emulator's transport
    extra: str | None  # the optional extra that installs the library, if it is one


APIS = {
    "tasks_v2": _Api("tasks_v2", "CloudTasksClient", "cloud_tasks", None),
    "tasks_v2beta3": _Api("tasks_v2beta3", "CloudTasksClient", "cloud_tasks", None),
    "scheduler_v1": _Api("scheduler_v1", "CloudSchedulerClient", "cloud_scheduler", "scheduler"),
    "run_v2.jobs": _Api("run_v2", "JobsClient", "jobs", "jobs"),
    "run_v2.executions": _Api("run_v2", "ExecutionsClient", "executions", "jobs"),
}

_clients: dict[tuple[str, str | None], Any] = {}
_lock = threading.Lock()


def tasks_client(emulator_host: str | None) -> CloudTasksClient:
    """The Cloud Tasks v2 client, talking to Google or, over plain gRPC, to an emulator."""
    return _cached("tasks_v2", emulator_host)  # type: ignore[no-any-return]


def tasks_beta_client(emulator_host: str | None) -> Any:
    """The Cloud Tasks v2beta3 client: the only API version that reports queue statistics."""
    return _cached("tasks_v2beta3", emulator_host)


def scheduler_client() -> Any:
    """The Cloud Scheduler client, of the optional ``scheduler`` extra."""
    return _cached("scheduler_v1", None)


def jobs_client(emulator_host: str | None) -> Any:
    """The Cloud Run Admin API's jobs client, of the optional ``jobs`` extra. The emulator
    serves it beside Cloud Tasks."""
    return _cached("run_v2.jobs", emulator_host)


def executions_client(emulator_host: str | None) -> Any:
    """The Cloud Run Admin API's executions client, of the optional ``jobs`` extra."""
    return _cached("run_v2.executions", emulator_host)


def held() -> list[tuple[str, str | None]]:
    """The clients this process holds, as (API, emulator host or None) pairs."""
    return list(_clients)


def forget(emulator_host: str | None = None) -> None:
    """Drop this process's clients of an emulator (None: all of them): the next call makes
    new ones."""
    with _lock:
        for key in [key for key in _clients if emulator_host in (None, key[1])]:
            del _clients[key]


def _cached(api: str, emulator_host: str | None) -> Any:
    key = (api, emulator_host)
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key) or _make(api, emulator_host)
            _clients[key] = client
    return client


def _make(key: str, emulator_host: str | None) -> Any:
    api = APIS[key]
    try:
        module = importlib.import_module(f"google.cloud.{api.module}")
    except ImportError as error:
        package = f"django-q-cloudtasks[{api.extra}]" if api.extra else "django-q-cloudtasks"
        raise MissingExtra(
            f"google.cloud.{api.module} is not installed: pip install '{package}'"
        ) from error
    client_class = getattr(module, api.client_class)
    if emulator_host is None:
        return client_class()
    import grpc  # with the client library: the same cost, paid with it

    transports = importlib.import_module(f"{module.__name__}.services.{api.service}.transports")
    transport_class = getattr(transports, api.client_class.removesuffix("Client") + "GrpcTransport")
    channel = grpc.insecure_channel(
        emulator_host,
        options=[
            # A pool of its own: gRPC otherwise shares one connection per address among
            # every channel, and with it one connection's backoff.
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", EMULATOR_RECONNECT_MS),
        ],
    )
    return client_class(transport=transport_class(channel=channel))


def _forget_after_fork() -> None:
    global _lock
    _clients.clear()
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
