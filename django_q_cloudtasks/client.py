"""The Cloud Tasks API client: one per process and endpoint, made on first use.

``google.cloud.tasks_v2`` is imported here and nowhere else, and only when a task is
enqueued or a queue inspected: the receiver, which only runs tasks, never pays for it.
Clients are dropped in a forked child (gunicorn ``--preload``), because a gRPC channel
must not cross a fork.
"""

from __future__ import annotations

import importlib
import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.cloud.tasks_v2 import CloudTasksClient

_clients: dict[tuple[str, str | None], Any] = {}
_lock = threading.Lock()


def get_client(emulator_host: str | None) -> CloudTasksClient:
    """The v2 client, talking to Google or, over plain gRPC, to an emulator."""
    return _cached("v2", emulator_host)  # type: ignore[no-any-return]


def get_beta_client(emulator_host: str | None) -> Any:
    """The v2beta3 client: the only API version that reports queue statistics."""
    return _cached("v2beta3", emulator_host)


def forget(emulator_host: str) -> None:
    """Drop the clients of an emulator that stopped. A gRPC channel whose server went away
    backs off before it connects again, and fails every call meanwhile: a new emulator
    on the same address gets new clients instead."""
    with _lock:
        for key in [key for key in _clients if key[1] == emulator_host]:
            del _clients[key]


def _cached(version: str, emulator_host: str | None) -> Any:
    key = (version, emulator_host)
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key) or _make(version, emulator_host)
            _clients[key] = client
    return client


def _make(version: str, emulator_host: str | None) -> Any:
    api = importlib.import_module(f"google.cloud.tasks_{version}")
    if emulator_host is None:
        return api.CloudTasksClient()
    import grpc

    transports = importlib.import_module(
        f"google.cloud.tasks_{version}.services.cloud_tasks.transports"
    )
    # A subchannel pool of its own: gRPC otherwise shares one connection per address among
    # all channels, so a new client of a restarted emulator would inherit the old one's
    # backoff and fail its first calls.
    channel = grpc.insecure_channel(emulator_host, options=[("grpc.use_local_subchannel_pool", 1)])
    return api.CloudTasksClient(transport=transports.CloudTasksGrpcTransport(channel=channel))


def _forget_after_fork() -> None:
    global _lock
    _clients.clear()
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
