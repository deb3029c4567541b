"""``python manage.py cloudtasks_scheduler_job``: the Cloud Scheduler job that calls the tick."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...conf import queue_settings
from ...exceptions import ConfigurationError, MissingExtra, ProvisioningError
from ...gcp import scheduler_job
from ...gcp.provisioning import Change


class Command(BaseCommand):
    help = (
        "Create or update the Cloud Scheduler job that calls this project's tick endpoint "
        "every minute with an OIDC token, so that schedules fire without a cluster. "
        "Idempotent; --dry-run shows what would change."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--job", help="Job id (default: QUEUE-tick).")
        parser.add_argument(
            "--location",
            help="Cloud Scheduler location (default: the queue's location).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Print the changes without making them."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        queue = queue_settings()
        if queue.emulator_host:
            self.stdout.write(
                "Emulator mode: there is no Cloud Scheduler here. The emulator calls the tick "
                "itself (cloudtasks_emulator --tick-every)."
            )
            return
        try:
            spec = scheduler_job.JobSpec.for_queue(
                queue, job_id=options["job"], location=options["location"]
            )
            change, fields = scheduler_job.sync(spec, queue, dry_run=options["dry_run"])
        except (ValueError, ConfigurationError, MissingExtra, ProvisioningError) as error:
            raise CommandError(str(error)) from error
        verb = {
            Change.CREATED: "Would create" if options["dry_run"] else "Created",
            Change.UPDATED: "Would update" if options["dry_run"] else "Updated",
            Change.UNCHANGED: "Up to date:",
        }[change]
        self.stdout.write(f"{verb} {spec.name}")
        for key, (before, after) in fields.items():
            self.stdout.write(
                f"  {key}: {after!r}" if before is None else f"  {key}: {before!r} -> {after!r}"
            )
