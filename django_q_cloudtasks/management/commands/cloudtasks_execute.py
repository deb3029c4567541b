"""``python manage.py cloudtasks_execute``: the command of the Cloud Run job that runs a job
cluster's tasks. The receiver starts each execution with the task named in its environment
(``receiver/job_runner.py``); there is nothing to pass."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ...receiver import job_runner


class Command(BaseCommand):
    help = (
        "Run the django-q task this Cloud Run job execution was started for: the command of "
        "the job a job cluster's tasks run in (see the guide Long tasks on Cloud Run Jobs, "
        "docs/how-to/long-tasks.md)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = job_runner.run(os.environ)
        if report.exit_code:
            raise CommandError(report.message, returncode=report.exit_code)
        self.stdout.write(report.message)
