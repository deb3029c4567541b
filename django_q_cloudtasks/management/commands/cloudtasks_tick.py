"""``python manage.py cloudtasks_tick``: one scheduler pass, as the tick endpoint runs it.

For a cron job, a Cloud Run job or a test: in production, Cloud Scheduler calls the tick
endpoint instead (``cloudtasks_scheduler_job``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...scheduling import LOOKAHEAD, tick


class Command(BaseCommand):
    help = (
        "Plan the coming schedule slots: each schedule due before the next tick gets a "
        "Cloud Task that fires it at its slot. Safe to run at any time, and concurrently."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--lookahead",
            type=float,
            default=LOOKAHEAD.total_seconds(),
            metavar="SECONDS",
            help="Plan the slots due within this many seconds (default: %(default)g). "
            "Use more than the time between two ticks.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = tick(lookahead=timedelta(seconds=options["lookahead"]))
        self.stdout.write(
            f"{report.due} schedule(s) due: {report.created} planned now, "
            f"{report.existing} planned before."
        )
        for schedule_id, error in report.failed.items():
            self.stderr.write(f"Schedule {schedule_id}: {error}")
        if report.failed:
            raise CommandError(f"{len(report.failed)} schedule(s) could not be planned.")
