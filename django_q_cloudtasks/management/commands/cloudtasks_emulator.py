"""``python manage.py cloudtasks_emulator``: a local Cloud Tasks for this project."""

from __future__ import annotations

import logging
import os
import re
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...conf import EMULATOR_ADDRESS, EMULATOR_ENV, QueueSettings, cluster_names, queue_settings
from ...emulator import Emulator
from ...emulator.jobs import DEFAULT_MAX_RETRIES, JobRecord
from ...emulator.state import DEFAULT_DEDUP_WINDOW
from ...emulator.ticker import Ticker
from ...exceptions import ConfigurationError, ProvisioningError
from ...gcp.provisioning import desired_fields, queues_of


class Command(BaseCommand):
    help = (
        "Run a local Cloud Tasks emulator: the gRPC API on ADDRESS, ID-token certificates "
        "one port above, this project's queues created on start, and its tick called every "
        "minute as Cloud Scheduler calls it in production. With the jobs extra installed, "
        "it also runs the Cloud Run jobs of the project's job clusters, as local processes."
    )
    # It serves any project, even one whose settings are not finished yet.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "address",
            nargs="?",
            help=f"HOST:PORT to listen on (default: ${EMULATOR_ENV}, the emulator_host "
            f"setting, or {EMULATOR_ADDRESS}).",
        )
        parser.add_argument(
            "--state",
            type=Path,
            help="Keep queues and tasks in this file, so a restart loses nothing "
            "(default: in memory).",
        )
        parser.add_argument(
            "--queue",
            action="append",
            default=[],
            metavar="PATH",
            help="Also create this queue (projects/P/locations/L/queues/Q); repeatable.",
        )
        parser.add_argument(
            "--max-workers",
            type=int,
            default=64,
            help="Deliveries in flight at once, over all queues (default: 64).",
        )
        parser.add_argument(
            "--tick-every",
            type=float,
            default=60,
            metavar="SECONDS",
            help="Call the project's tick endpoint this often, as the Cloud Scheduler job does "
            "in production, so that schedules fire (default: %(default)g; 0: never).",
        )
        parser.add_argument(
            "--dedup-window",
            type=float,
            default=DEFAULT_DEDUP_WINDOW,
            help="Seconds a finished or deleted task's name stays taken (default: %(default)g).",
        )
        parser.add_argument(
            "--duplicates",
            type=int,
            default=1,
            metavar="N",
            help="Deliver every attempt N times at once, as Cloud Tasks now and then delivers "
            "a task twice: your tasks should still run once (default: 1).",
        )
        parser.add_argument(
            "--duplicates-in-a-row",
            action="store_true",
            help="Send the --duplicates copies one after another instead of at once.",
        )
        parser.add_argument(
            "--app-engine-url",
            metavar="URL",
            help="Deliver App Engine tasks to the app at this address, their path after it, "
            "as App Engine routes them (e.g. http://127.0.0.1:8000; default: refuse them).",
        )
        parser.add_argument(
            "--job-command",
            metavar="COMMAND",
            help="The command of the project's Cloud Run jobs, as their container runs it "
            "(default: this project's manage.py cloudtasks_execute, with this Python).",
        )
        parser.add_argument(
            "--job-retries",
            type=int,
            default=DEFAULT_MAX_RETRIES,
            metavar="N",
            help="Tries again a job task that failed up to N times, as a job's max retries "
            "(default: %(default)s, as Cloud Run's).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["duplicates"] < 1:
            raise CommandError("--duplicates must be 1 or more.")
        if options["job_retries"] < 0:
            raise CommandError("--job-retries must be 0 or more.")
        app_engine_url = options["app_engine_url"]
        if app_engine_url is not None and not re.match(r"^https?://[^/]+/?$", app_engine_url):
            raise CommandError(
                f"--app-engine-url must be the app's address, http://HOST:PORT, not {app_engine_url!r}."
            )
        address = options["address"] or self._configured_address() or EMULATOR_ADDRESS
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise CommandError(f"ADDRESS must be HOST:PORT, not {address!r}.")
        # Read the settings as the project's server will, in emulator mode.
        os.environ[EMULATOR_ENV] = address
        queue_settings.cache_clear()
        settings_queues = self._settings_queues()
        self._log_deliveries(options["verbosity"])
        try:
            emulator = Emulator(
                host,
                int(port),
                state_path=options["state"],
                max_workers=options["max_workers"],
                dedup_window=options["dedup_window"],
                duplicates=options["duplicates"],
                duplicates_at_once=not options["duplicates_in_a_row"],
                app_engine_url=app_engine_url,
            )
        except (OSError, ValueError) as error:  # a port taken; a state file it cannot serve
            raise CommandError(str(error)) from error
        # As cloudtasks_setup makes them in Google Cloud (queue_options, unlimited attempts);
        # a queue kept in the state file is brought up to the settings.
        done = {
            qs.queue_path: emulator.ensure_queue(qs.queue_path, desired_fields(qs))
            for qs in settings_queues
        }
        done |= {queue: emulator.ensure_queue(queue) for queue in options["queue"]}
        jobs = self._settings_jobs(emulator, options) if emulator.serves_jobs else []
        emulator.start()
        ticker = self._ticker(emulator, options["tick_every"])
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        state = options["state"] or "in memory"
        self.stdout.write(f"Cloud Tasks emulator on {emulator.address} (state: {state})")
        self.stdout.write(f"  ID-token certificates: {emulator.certs_url}")
        for queue in sorted(emulator.store.queues):
            self.stdout.write(f"  queue {queue}{f' ({done[queue]})' if done.get(queue) else ''}")
        for job in jobs:
            self.stdout.write(f"  Cloud Run job {job.name}: {shlex.join(job.command + job.args)}")
        if app_engine_url:
            self.stdout.write(f"  App Engine tasks: {app_engine_url}, their path after it")
        if ticker:
            self.stdout.write(f"  tick: POST {ticker.url} every {ticker.every:g} s")
        if options["duplicates"] > 1:
            how = "one after another" if options["duplicates_in_a_row"] else "at once"
            self.stdout.write(f"  every attempt delivered {options['duplicates']} times, {how}")
        self.stdout.write(
            f"Point Django at it with {EMULATOR_ENV}={emulator.address}. Quit with CONTROL-C."
        )
        try:
            while not stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            if ticker:
                ticker.stop()
            emulator.stop()
            self.stdout.write("Emulator stopped.")

    def _ticker(self, emulator: Emulator, every: float) -> Ticker | None:
        if every <= 0:
            return None
        try:
            queue = queue_settings()
            tick_url = queue.tick_url
        except ConfigurationError as error:
            self.stderr.write(f"Not calling the tick: {error}")
            return None
        assert queue.service_account_email  # emulator mode always has one
        ticker = Ticker(
            emulator.identity,
            tick_url,
            audience=queue.audience,
            email=queue.service_account_email,
            every=every,
        )
        return ticker.start()

    def _configured_address(self) -> str | None:
        if os.environ.get(EMULATOR_ENV):
            return os.environ[EMULATOR_ENV]
        try:
            return queue_settings().emulator_host
        except ConfigurationError:
            return None

    def _settings_queues(self) -> list[QueueSettings]:
        """One settings per queue of every configured cluster, when the settings name them."""
        try:
            return queues_of(queue_settings(name) for name in cluster_names())
        except (ConfigurationError, ProvisioningError) as error:
            self.stderr.write(f"Not creating the project's queues: {error}")
            return []

    def _settings_jobs(self, emulator: Emulator, options: dict[str, Any]) -> list[JobRecord]:
        """The Cloud Run job of every job cluster, run by this project's code."""
        try:
            names = {queue_settings(name).job for name in cluster_names()} - {None}
        except ConfigurationError as error:
            self.stderr.write(f"Not creating the project's Cloud Run jobs: {error}")
            return []
        command, args = (
            (shlex.split(options["job_command"]), [])
            if options["job_command"]
            else (_this_project(), ["cloudtasks_execute"])
        )
        jobs = [
            JobRecord(
                str(name),
                command,
                args,
                env=dict(os.environ),  # the settings the project's server runs with here
                cwd=os.getcwd(),
                max_retries=options["job_retries"],
            )
            for name in sorted(names, key=str)
        ]
        for job in jobs:
            emulator.ensure_job(job)
        return jobs

    def _log_deliveries(self, verbosity: int) -> None:
        emulator_logger = logging.getLogger("django_q_cloudtasks.emulator")
        if verbosity > 0 and not emulator_logger.handlers:
            handler = logging.StreamHandler(self.stdout)
            handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
            emulator_logger.addHandler(handler)
            emulator_logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)
            emulator_logger.propagate = False


def _this_project() -> list[str]:
    """How this process was started, as a command that runs another management command."""
    script = Path(sys.argv[0])
    if script.name == "manage.py":
        return [sys.executable, str(script.resolve())]
    return [sys.executable, "-m", "django"]  # DJANGO_SETTINGS_MODULE is in the environment
