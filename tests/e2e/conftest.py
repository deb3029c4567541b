"""Real Cloud Tasks emulators delivering over HTTP to a live Django server (gunicorn).

Every end-to-end test runs twice: against the built-in emulator (``cloudtasks_emulator``),
whose ID tokens the server verifies, and against the third-party ``gcloud-tasks-emulator``,
which sends none. That one pins protobuf<5, so it gets a virtualenv of its own under
``.cache/`` (or set DJQ_GCLOUD_TASKS_EMULATOR to its executable).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from django_q_cloudtasks.gcp.client import forget, tasks_client
from tests.conftest import wait_for
from tests.support.ports import free_port, free_port_pair, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
THIRD_PARTY_VERSION = "0.6.2"
QUEUES = ("tests", "second-queue")
# What App Engine's runtime sets in an instance of the standard environment.
ON_APP_ENGINE = {
    "GAE_ENV": "standard",
    "GAE_APPLICATION": "e~test-project",
    "GAE_SERVICE": "worker",
    "GAE_VERSION": "v1",
    "GAE_INSTANCE": "00c61b117c0b",
}
PARENT = "projects/test-project/locations/europe-west1/queues"
REDIS_URL = os.environ.get("DJQ_CACHE_URL", "redis://127.0.0.1:6379/9")


@pytest.fixture(scope="session")
def third_party_emulator_executable() -> Path:
    if explicit := os.environ.get("DJQ_GCLOUD_TASKS_EMULATOR"):
        return Path(explicit)
    venv = ROOT / ".cache" / f"gcloud-tasks-emulator-{THIRD_PARTY_VERSION}"
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
                f"gcloud-tasks-emulator=={THIRD_PARTY_VERSION}",
            ],
            check=True,
        )
    return executable


def _start_emulator(
    kind: str,
    port: int,
    server_port: int,
    request: pytest.FixtureRequest,
    log: Path,
    options: Sequence[str] = (),
    project_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """The built-in emulator also calls the server's tick every minute, as in production,
    and runs the project's Cloud Run jobs, in the project's environment."""
    if kind == "built-in":
        command: list[Any] = [
            sys.executable,
            "-m",
            "django",
            "cloudtasks_emulator",
            f"127.0.0.1:{port}",
            *options,
        ]
    else:
        executable = request.getfixturevalue("third_party_emulator_executable")
        command = [
            executable,
            "start",
            f"--port={port}",
            "--target-host=127.0.0.1",
            f"--target-port={server_port}",
            *(f"--default-queue={PARENT}/{queue}" for queue in QUEUES),
        ]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.project.settings",
        "DJQ_RECEIVER_URL": f"http://127.0.0.1:{server_port}/_tasks/",
        **(project_env or {}),
    }
    return subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


@contextlib.contextmanager
def running_stack(
    emulator: str,
    request: pytest.FixtureRequest,
    logs: Path,
    *,
    emulator_options: Sequence[str] = (),
    workers: int = 2,
    database_port: int | None = None,
    server_env: dict[str, str] | None = None,
    project_env: dict[str, str] | None = None,
    request_timeout: int = 120,
    app_engine: str | None = None,
) -> Iterator[dict[str, str]]:
    """An emulator, and a gunicorn serving the test project on the test database.

    ``database_port`` points the server at PostgreSQL through a test's proxy;
    ``server_env`` adds to the server's environment, ``project_env`` to the emulator's and
    its Cloud Run jobs' too; ``request_timeout`` is gunicorn's worker timeout.
    ``app_engine``: the emulator delivers App Engine tasks to the server, which runs as on
    App Engine (its runtime's variables set) with ``"on"``, as anywhere else with ``"off"``.
    """
    server_port, emulator_port = free_port(), free_port_pair()
    stack = {
        "emulator": emulator,
        "emulator_host": f"127.0.0.1:{emulator_port}",
        "url": f"http://127.0.0.1:{server_port}/_tasks/",
        "database": str(connection.settings_dict["NAME"]),
        "logs": str(logs),
    }
    # This process's clients of an emulator that was on this port before back off: drop them.
    forget(stack["emulator_host"])
    env = stack_env(stack) | (project_env or {})
    if app_engine:
        emulator_options = [
            *emulator_options,
            "--app-engine-url",
            f"http://127.0.0.1:{server_port}",
        ]
    emulator_process = _start_emulator(
        emulator,
        emulator_port,
        server_port,
        request,
        logs / "emulator.log",
        emulator_options,
        env if emulator == "built-in" else None,
    )
    if app_engine == "on":
        env |= ON_APP_ENGINE
    if database_port is not None:
        env["DJQ_DB_PORT"] = str(database_port)
    env.update(server_env or {})
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "tests.project.wsgi",
            "-b",
            f"127.0.0.1:{server_port}",
            "-w",
            str(workers),
            "--timeout",
            str(request_timeout),
            "--access-logfile",
            "-",
        ],
        env=env,
        cwd=ROOT,
        stdout=(logs / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    stack["server_pid"] = str(server.pid)
    try:
        wait_for_port(emulator_port, emulator_process)
        wait_for_port(server_port, server)
        yield stack
    finally:
        for process in (server, emulator_process):
            process.terminate()
        for process in (server, emulator_process):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        forget(stack["emulator_host"])


@pytest.fixture(scope="session", params=["built-in", "gcloud-tasks-emulator"])
def live_stack(
    request: pytest.FixtureRequest,
    django_db_setup: Any,
    django_db_blocker: Any,
    tmp_path_factory: Any,
) -> Iterator[dict[str, str]]:
    """Each emulator, and a 2-worker gunicorn, for the whole test session."""
    with (
        django_db_blocker.unblock(),
        running_stack(request.param, request, tmp_path_factory.mktemp("logs")) as stack,
    ):
        yield stack


def stack_env(stack: dict[str, str]) -> dict[str, str]:
    """The environment of the test project's processes: its database, emulator and URL."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.project.settings",
        "DJQ_DB_NAME": stack["database"],
        "DJQ_RECEIVER_URL": stack["url"],
        "DJQ_VERIFY_TOKEN": "1" if stack["emulator"] == "built-in" else "0",
        "CLOUD_TASKS_EMULATOR_HOST": stack["emulator_host"],
    }


def start_command(stack: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """``manage.py ARGS`` of the test project, in a process of its own, on the stack."""
    return subprocess.Popen(
        [sys.executable, "-m", "django", *args],
        env=stack_env(stack),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def e2e(
    live_stack: dict[str, str], configure: Callable[..., None], transactional_db: Any
) -> dict[str, str]:
    """This test enqueues into the emulator, which delivers to the live server."""
    configure(url=live_stack["url"], emulator_host=live_stack["emulator_host"])
    return live_stack


class Trace:
    """Files a task writes: one line per run, one character per save of its result row."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __str__(self) -> str:
        return str(self.path)

    @property
    def runs(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []

    @property
    def saves(self) -> int:
        saves = Path(f"{self.path}.saves")
        return len(saves.read_text()) if saves.exists() else 0


@pytest.fixture
def trace(tmp_path: Path) -> Trace:
    return Trace(tmp_path / "trace")


def answers(stack: dict[str, str], *, at_least: int = 0) -> list[int]:
    """The status of every request the receiver answered, in order, once ``at_least`` are
    logged: gunicorn logs a request after its answer has gone, so after the emulator, or a
    row the task wrote, may have seen it."""

    def logged() -> list[int]:
        log = Path(stack["logs"], "server.log").read_text()
        return [
            int(line.split('" ')[1].split()[0])
            for line in log.splitlines()
            if "POST /_tasks/ " in line
        ]

    if not at_least:
        return logged()
    found: list[int] = wait_for(
        lambda: statuses if len(statuses := logged()) >= at_least else None, timeout=10
    )
    return found


def queue_is_empty(stack: dict[str, str]) -> bool:
    return not list(tasks_client(stack["emulator_host"]).list_tasks(parent=f"{PARENT}/tests"))


@pytest.fixture
def start_stack(
    request: pytest.FixtureRequest, tmp_path: Path, configure: Callable[..., None]
) -> Iterator[Callable[..., dict[str, str]]]:
    """``start_stack(**options)`` starts a stack on the built-in emulator for this test (see
    ``running_stack`` for the options), and has the test enqueue into it."""
    with contextlib.ExitStack() as stacks:

        def start(**options: Any) -> dict[str, str]:
            logs = Path(tempfile.mkdtemp(prefix="logs-", dir=tmp_path))
            stack = stacks.enter_context(running_stack("built-in", request, logs, **options))
            configure(url=stack["url"], emulator_host=stack["emulator_host"])
            return stack

        yield start


@pytest.fixture
def shared_cache(settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The test's cache is Redis, under a prefix of its own; returns the environment that
    gives a live server the same cache. The Redis is the one at DJQ_CACHE_URL, else
    127.0.0.1:6379/9; the test is skipped where none answers, unless DJQ_REQUIRE_REDIS is
    set (as CI sets it)."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        if os.environ.get("DJQ_REQUIRE_REDIS"):  # CI starts a Redis: there, none is a failure
            raise
        pytest.skip(f"no Redis at {REDIS_URL}: {error}")
    prefix = f"djq-test-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": prefix,
        }
    }
    monkeypatch.setenv("TERM", "xterm-256color")
    yield {"DJQ_CACHE_URL": REDIS_URL, "DJQ_CACHE_PREFIX": prefix}
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
