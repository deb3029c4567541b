"""The processes a benchmark runs, started and stopped here, and what they cost: CPU
seconds and memory over a process and every process below it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.support import ports

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = "benchmarks.project.settings"


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until something listens on ``port``; checked every 2 ms, as cold starts are timed."""
    ports.wait_for_port(port, process, timeout, interval=0.002)


def environment(broker: str, database: str, work: Path, **extra: str) -> dict[str, str]:
    """The environment of the benchmark project's processes (see project/settings.py)."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "BENCH_BROKER": broker,
        "BENCH_DB": database,
        "BENCH_WORK": str(work),
        **extra,
    }


@dataclass(frozen=True)
class Usage:
    """What a process tree used: CPU seconds so far, and its processes and memory now."""

    cpu_seconds: float
    processes: int
    rss_bytes: int


def usage(root: int) -> Usage:
    """CPU of every process in the tree, including the children they have reaped (django-q
    recycles its workers), and the memory of those alive now."""
    try:
        top = psutil.Process(root)
        tree = [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return Usage(0.0, 0, 0)
    cpu, rss, alive = 0.0, 0, 0
    for process in tree:
        try:
            times = process.cpu_times()
            memory = process.memory_info()
        except psutil.NoSuchProcess:
            continue  # gone between listing and reading: its time is in its parent's
        cpu += times.user + times.system + times.children_user + times.children_system
        rss += memory.rss
        alive += 1
    return Usage(cpu, alive, rss)


class Server:
    """A process of the benchmark project, logging to a file, stopped with SIGTERM."""

    def __init__(self, name: str, command: list[str], env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.started = time.time()
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            command, env=dict(env), cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def manage(*args: str) -> list[str]:
    return [sys.executable, "-m", "django", *args]


@contextlib.contextmanager
def running(*servers: Server) -> Iterator[tuple[Server, ...]]:
    try:
        yield servers
    finally:
        for server in reversed(servers):
            server.stop()


def emulator(env: Mapping[str, str], port: int, log: Path) -> Server:
    """The built-in emulator: Google's side, on this machine."""
    address = f"127.0.0.1:{port}"
    command = manage("cloudtasks_emulator", address, "--tick-every", "0", "--max-workers", "64")
    server = Server("emulator", command, {**env, "CLOUD_TASKS_EMULATOR_HOST": address}, log)
    wait_for_port(port, server.process)
    return server


def gunicorn(env: Mapping[str, str], port: int, workers: int, log: Path) -> Server:
    """The receiver, as on Cloud Run: gunicorn with sync workers."""
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "benchmarks.project.wsgi",
        "-b",
        f"127.0.0.1:{port}",
        "-w",
        str(workers),
        "--timeout",
        "120",
    ]
    return Server("gunicorn", command, env, log)


def qcluster(env: Mapping[str, str], log: Path) -> Server:
    return Server("qcluster", manage("qcluster"), env, log)
