"""Free loopback ports, and waiting for a server process to listen.

Ports come from below the kernel's ephemeral range, where no outgoing connection and no
``bind(("", 0))`` lands, and each pytest-xdist worker draws from a slice of its own: a
port found free is still free a moment later, when the server it is for binds it, though
tests run side by side.
"""

from __future__ import annotations

import collections
import os
import random
import socket
import subprocess
import time
from pathlib import Path

# Each xdist worker's ports: SLICE of them, from FIRST_PORT on, slice after slice.
FIRST_PORT = 10_000
SLICE = 1_000
# Ports handed out lately, not handed out again: the server each is for may not listen yet.
_recent: collections.deque[int] = collections.deque(maxlen=SLICE // 4)


def free_port() -> int:
    return _free(1)


def free_port_pair() -> int:
    """A free port whose successor is free too: the emulator serves certificates there."""
    return _free(2)


def _free(count: int) -> int:
    """The first of ``count`` consecutive free ports of this worker's slice."""
    first, last = _slice()
    for _ in range(200):
        port = random.randrange(first, last - count)
        ports = range(port, port + count)
        if not set(ports) & set(_recent) and all(map(_bindable, ports)):
            _recent.extend(ports)
            return port
    raise RuntimeError(f"no {count} consecutive free ports in {first}-{last} on 127.0.0.1")


def _slice() -> tuple[int, int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    first = FIRST_PORT + int(worker if worker.isdigit() else 0) * SLICE
    last = min(first + SLICE, _ephemeral_start())
    if last - first < 10:
        raise RuntimeError(f"too many test workers for the ports below {_ephemeral_start()}")
    return first, last


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default, and near enough elsewhere


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for_port(
    port: int, process: subprocess.Popen[bytes], timeout: float = 60.0, interval: float = 0.1
) -> None:
    """Until something listens on ``port``, checked every ``interval`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(interval)
    raise RuntimeError(f"{process.args} did not listen on {port} within {timeout} s")
