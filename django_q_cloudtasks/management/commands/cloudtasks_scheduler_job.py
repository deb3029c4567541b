"""``python manage.py cloudtasks_scheduler_job``: the Cloud Scheduler job that calls the tick."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import scheduler_job
from ...conf import queue_settings


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
            client = scheduler_job.scheduler_client()
        except (ValueError, scheduler_job.MissingExtra) as error:
            raise CommandError(str(error)) from error
        from google.api_core import exceptions

        try:
            change, fields = scheduler_job.sync(spec, client=client, dry_run=options["dry_run"])
        except exceptions.GoogleAPICallError as error:
            raise CommandError(f"Cloud Scheduler refused: {error}. {_hint(error)}") from error
        verb = {
            scheduler_job.Change.CREATED: "Would create" if options["dry_run"] else "Created",
            scheduler_job.Change.UPDATED: "Would update" if options["dry_run"] else "Updated",
            scheduler_job.Change.UNCHANGED: "Up to date:",
        }[change]
        self.stdout.write(f"{verb} {spec.name}")
        for key, (before, after) in fields.items():
            self.stdout.write(
                f"  {key}: {after!r}" if before is None else f"  {key}: {before!r} -> {after!r}"
            )


def _hint(error: Exception) -> str:
    from google.api_core import exceptions

    if isinstance(error, exceptions.PermissionDenied):
        return (
            "The caller needs roles/cloudscheduler.admin, and roles/iam.serviceAccountUser on "
            "the service account the job signs its token as."
        )
    if isinstance(error, exceptions.NotFound):
        return "Is the Cloud Scheduler API enabled? gcloud services enable cloudscheduler.googleapis.com"
    return ""
