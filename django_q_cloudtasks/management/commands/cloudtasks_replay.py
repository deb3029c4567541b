"""``python manage.py cloudtasks_replay ID [ID ...]`` (or ``--all``): take dead letters through
the receiver again, once their cause is fixed (``deadletters.py``).

Each runs in this process, at once: a task runs now, whatever its time, and a wake-up
fires its slot. A letter is deleted once it is done with; one that still cannot run stays,
and the command exits 1 naming why.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...models import DeadLetter
from ...receiver.deadletters import replay_each


class Command(BaseCommand):
    help = (
        "Replay dead letters through the receiver, once what made them fail is fixed (the "
        "old key back in SECRET_KEY_FALLBACKS, the missing code deployed). Each letter that "
        "runs is deleted; the others stay."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="*", type=int, metavar="ID", help="Dead letter ids.")
        parser.add_argument(
            "--all", action="store_true", help="Replay every dead letter, oldest first."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        ids: list[int] = options["ids"]
        if bool(ids) == options["all"]:
            raise CommandError("Name the dead letters to replay by id, or pass --all.")
        letters = DeadLetter.objects.order_by("received", "pk")
        if ids:
            letters = letters.filter(pk__in=ids)
        pks = list(letters.values_list("pk", flat=True))
        missing = sorted(set(ids) - set(pks))
        if missing:
            raise CommandError(f"No dead letter {', '.join(map(str, missing))}.")
        kept = 0
        for replayed in replay_each(pks):
            if replayed.deleted:
                self.stdout.write(str(replayed))
            else:
                kept += 1
                self.stderr.write(str(replayed))
        if kept:
            raise CommandError(f"{kept} dead letter(s) could not be replayed, and are kept.")
