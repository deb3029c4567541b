"""``python manage.py demo``: the emulator, the server and the demo tasks, all at once.

It migrates, creates the admin login, starts the built-in Cloud Tasks emulator and a
gunicorn server (each in a process group of its own), enqueues the demo tasks and shows
their progress. Ctrl-C stops both processes. ``--check`` exits once every task has
reached its expected state (status 0) or the time is up (status 1): for CI.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from blessed import Terminal
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_q_cloudtasks.conf import queue_settings, receiver_settings
from jobs import scenario

LOGIN = ("admin", "admin")
# The emulator calls the tick this often (Cloud Scheduler: every minute), so that a new
# schedule fires within seconds in the demo.
TICK_EVERY = 10


class Command(BaseCommand):
    help = "Run the demo: emulator, server and demo tasks, with their progress."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="The server's port.")
        parser.add_argument(
            "--emulator-port",
            type=int,
            default=8123,
            help="The emulator's gRPC port; it also takes the next one.",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="No prompt: exit when every task is where it should be (status 0) or "
            "when --timeout passes (status 1).",
        )
        parser.add_argument("--timeout", type=float, default=180.0)

    def handle(self, *args: Any, **options: Any) -> None:
        # The progress display says it all.
        for name in ("django-q", "django_q_cloudtasks"):
            logging.getLogger(name).setLevel(logging.WARNING)
        logs = Path(settings.BASE_DIR) / ".demo"
        logs.mkdir(exist_ok=True)
        self._use_addresses(options["port"], options["emulator_port"])
        call_command("migrate", verbosity=0)
        call_command("createcachetable")
        self._ensure_login()
        processes: list[subprocess.Popen[bytes]] = []
        try:
            self.stdout.write(f"Starting the Cloud Tasks emulator on {self.emulator_host} ...")
            processes.append(
                self._start(
                    ["cloudtasks_emulator", self.emulator_host, "--tick-every", str(TICK_EVERY)],
                    logs / "emulator.log",
                )
            )
            self._wait_for_port(options["emulator_port"], processes[-1], logs / "emulator.log")
            call_command("cloudtasks_setup", stdout=io.StringIO())  # the queues' retry settings
            self.stdout.write(f"Starting the server on {self.server_url} (gunicorn, 2 workers) ...")
            processes.append(self._start_server(options["port"], logs / "server.log"))
            self._wait_for_port(options["port"], processes[-1], logs / "server.log")
            expectations = scenario.enqueue()
            self.stdout.write(f"Enqueued the demo tasks. Logs: {logs}/\n")
            finished = self._follow(expectations, options["timeout"])
            if not finished:
                raise CommandError(
                    f"Not every demo task reached its state within {options['timeout']:g} s; "
                    f"see {logs}/server.log and {logs}/emulator.log."
                )
            self.stdout.write(
                self.style.SUCCESS("\nEvery demo task reached its expected state.")
                + f"\n\n  Page:   {self.server_url}/\n  Admin:  {self.server_url}/admin/"
                f"  (login {LOGIN[0]} / password {LOGIN[1]})\n"
            )
            if not options["check"]:
                self.stdout.write("Press Ctrl-C to stop the emulator and the server.")
                while all(process.poll() is None for process in processes):
                    time.sleep(0.5)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping ...")
        finally:
            for process in reversed(processes):
                _stop(process)
            if processes:
                self.stdout.write("Stopped the server and the emulator.")

    def _use_addresses(self, port: int, emulator_port: int) -> None:
        """Points this process and its children at the chosen ports."""
        self.emulator_host = f"127.0.0.1:{emulator_port}"
        self.server_url = f"http://127.0.0.1:{port}"
        os.environ["CLOUD_TASKS_EMULATOR_HOST"] = self.emulator_host
        os.environ["RECEIVER_URL"] = f"{self.server_url}/_tasks/"
        settings.Q_CLUSTER["cloud_tasks"]["url"] = os.environ["RECEIVER_URL"]
        queue_settings.cache_clear()
        receiver_settings.cache_clear()
        for taken in (port, emulator_port, emulator_port + 1):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", taken)) == 0:
                    raise CommandError(
                        f"Port {taken} is in use; choose others with --port or --emulator-port."
                    )

    def _ensure_login(self) -> None:
        user_model = get_user_model()
        if not user_model.objects.filter(username=LOGIN[0]).exists():
            user_model.objects.create_superuser(LOGIN[0], "admin@example.com", LOGIN[1])

    def _start(self, arguments: list[str], log: Path) -> subprocess.Popen[bytes]:
        return self._spawn([sys.executable, "manage.py", *arguments], log)

    def _start_server(self, port: int, log: Path) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "gunicorn", "demo.wsgi", "--bind", f"127.0.0.1:{port}"]
        # A request may last 15 s: the long export runs in a Cloud Run job execution instead.
        return self._spawn([*command, "--workers", "2", "--timeout", "15"], log)

    def _spawn(self, command: list[str], log: Path) -> subprocess.Popen[bytes]:
        # A session of its own: Ctrl-C reaches only this command, which stops the whole group.
        return subprocess.Popen(
            command,
            cwd=settings.BASE_DIR,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _wait_for_port(self, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise CommandError(
                    f"{process.args[2]} exited; see {log}:\n{log.read_text()[-2000:]}"
                )
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.1)
        raise CommandError(f"Nothing listens on port {port} after 60 s; see {log}.")

    def _follow(self, expectations: list[scenario.Expectation], timeout: float) -> bool:
        """Shows progress until every expectation is met; False if the time runs out."""
        terminal = Terminal()
        interactive = terminal.is_a_tty
        met: set[int] = set()
        deadline = time.monotonic() + timeout
        drawn = False
        while len(met) < len(expectations) and time.monotonic() < deadline:
            for number, expectation in enumerate(expectations):
                if number not in met and expectation.met():
                    met.add(number)
                    if not interactive:
                        self.stdout.write(f"  done: {expectation.label}")
            if interactive:
                if drawn:
                    self.stdout.write(terminal.move_up(len(expectations) + 1), ending="")
                self.stdout.write(_progress(terminal, expectations, met))
                drawn = True
            time.sleep(0.25)
        for number, expectation in enumerate(expectations):
            if number not in met:
                self.stdout.write(f"  NOT DONE: {expectation.label}")
        return len(met) == len(expectations)


def _progress(terminal: Terminal, expectations: list[scenario.Expectation], met: set[int]) -> str:
    width = 30
    filled = width * len(met) // len(expectations)
    bar = terminal.green("█" * filled) + "░" * (width - filled)
    lines = [f"{bar} {len(met)}/{len(expectations)} tasks done"]
    for number, expectation in enumerate(expectations):
        mark = terminal.green("✔") if number in met else terminal.yellow("…")
        lines.append(f"  {mark} {expectation.label}")
    return "\n".join(terminal.clear_eol + line for line in lines)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group, SIGKILL after 10 s: nothing is left behind."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
