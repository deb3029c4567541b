"""A real Cloud Tasks emulator delivering over HTTP to a live Django server (gunicorn).

The third-party ``gcloud-tasks-emulator`` pins protobuf<5, so it gets a virtualenv of its
own under ``.cache/`` (or set DJQ_GCLOUD_TASKS_EMULATOR to its executable).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
EMULATOR_VERSION = "0.6.2"
QUEUES = ("tests", "second-queue")
PARENT = "projects/test-project/locations/europe-west1/queues"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{process.args} did not listen on {port} within {timeout} s")


@pytest.fixture(scope="session")
def third_party_emulator_executable() -> Path:
    if explicit := os.environ.get("DJQ_GCLOUD_TASKS_EMULATOR"):
        return Path(explicit)
    venv = ROOT / ".cache" / f"gcloud-tasks-emulator-{EMULATOR_VERSION}"
    executable = venv / "bin" / "gcloud-tasks-emulator"
    if not executable.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [
                venv / "bin" / "python",
                "-m",
                "pip",
                "install",
                "-q",
                f"gcloud-tasks-emulator=={EMULATOR_VERSION}",
            ],
            check=True,
        )
    return executable


@pytest.fixture(scope="session")
def live_stack(
    django_db_setup: Any,
    django_db_blocker: Any,
    third_party_emulator_executable: Path,
    tmp_path_factory: Any,
) -> Iterator[dict[str, str]]:
    """Start the emulator and a 2-worker gunicorn serving the test project on its test database."""
    with django_db_blocker.unblock():
        database_name = str(connection.settings_dict["NAME"])
    server_port, emulator_port = free_port(), free_port()
    stack = {
        "emulator_host": f"127.0.0.1:{emulator_port}",
        "url": f"http://127.0.0.1:{server_port}/_tasks/",
    }
    logs = tmp_path_factory.mktemp("logs")
    emulator = subprocess.Popen(
        [
            third_party_emulator_executable,
            "start",
            f"--port={emulator_port}",
            "--target-host=127.0.0.1",
            f"--target-port={server_port}",
            *(f"--default-queue={PARENT}/{queue}" for queue in QUEUES),
        ],
        stdout=(logs / "emulator.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.project.settings",
        "DJQ_DB_NAME": database_name,
        "DJQ_RECEIVER_URL": stack["url"],
        "CLOUD_TASKS_EMULATOR_HOST": stack["emulator_host"],
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "tests.project.wsgi",
            "-b",
            f"127.0.0.1:{server_port}",
            "-w",
            "2",
            "--timeout",
            "120",
        ],
        env=env,
        cwd=ROOT,
        stdout=(logs / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(emulator_port, emulator)
        wait_for_port(server_port, server)
        yield stack
    finally:
        for process in (server, emulator):
            process.terminate()
        for process in (server, emulator):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def e2e(
    live_stack: dict[str, str], configure: Callable[..., None], transactional_db: Any
) -> dict[str, str]:
    """This test enqueues into the emulator, which delivers to the live server."""
    configure(url=live_stack["url"], emulator_host=live_stack["emulator_host"])
    return live_stack
