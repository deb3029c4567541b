"""``python manage.py cloudtasks_cancel TASK_ID [TASK_ID ...]``: ``cancel()`` from the shell."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ...cancellation import cancel


class Command(BaseCommand):
    help = (
        "Cancel django-q tasks by id: a waiting one never runs, one running in a Cloud Run "
        "job execution is stopped, one running in a receiver sees cancelled() turn true."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("task_ids", nargs="+", metavar="TASK_ID", help="django-q task ids.")
        parser.add_argument(
            "--cluster",
            help="The tasks' cluster, where a waiting task is looked for (default: the "
            "cluster that claimed it, else every cluster).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        for task_id in options["task_ids"]:
            found = cancel(task_id, cluster=options["cluster"])
            self.stdout.write(f"Task {task_id}: {found.description}.")
