"""``python manage.py cloudtasks_setup``: each cluster's Cloud Tasks queue, as the settings say."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import conf
from ...exceptions import ProvisioningError
from ...gcp import provisioning
from ...gcp.provisioning import Change, QueueResult

VERBS = {
    Change.CREATED: ("created", "would create"),
    Change.UPDATED: ("updated", "would update"),
    Change.UNCHANGED: ("up to date", "up to date"),
}


class Command(BaseCommand):
    help = (
        "Create the Cloud Tasks queue of every django-q cluster, or update its rate limits "
        'and retries to match Q_CLUSTER["cloud_tasks"]["queue_options"]. Idempotent; never '
        "deletes a queue nor resumes a paused one; --dry-run shows what would change."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Print the differences without changing them."
        )
        parser.add_argument(
            "--cluster",
            action="append",
            dest="clusters",
            metavar="NAME",
            help="Only this django-q cluster's queue; repeatable (default: every cluster's).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        known = conf.cluster_names()
        unknown = [name for name in options["clusters"] or () if name not in known]
        if unknown:
            raise CommandError(
                f"Unknown cluster {', '.join(map(repr, unknown))}; "
                f"the clusters are {', '.join(map(repr, known))}."
            )
        clusters = [conf.queue_settings(name) for name in options["clusters"] or known]
        errors = []
        try:
            queues = provisioning.queues_of(clusters)
        except ProvisioningError as error:
            raise CommandError(str(error)) from error
        for queue in queues:
            try:
                result = provisioning.provision(queue, dry_run=options["dry_run"])
            except ProvisioningError as error:
                errors.append(str(error))
                continue
            self._report(result, dry_run=options["dry_run"])
        if errors:
            raise CommandError("\n".join(errors))

    def _report(self, result: QueueResult, *, dry_run: bool) -> None:
        verb = VERBS[result.action][dry_run]
        self.stdout.write(f"{result.queue_path}: {verb}{' (paused)' if result.paused else ''}")
        for change in result.differences:
            self.stdout.write(f"  {change}")
