"""The benchmarked tasks, and the hook that stamps when a result was saved."""

import os
import time
from pathlib import Path
from typing import Any

from django.conf import settings


def trivial() -> int:
    return 1


def write_row(number: int) -> int:
    from .models import Row

    return Row.objects.create(number=number).pk


def stamp(name: str) -> None:
    """Records when it ran: the first task of a fresh process, in the cold-start runs."""
    _record(f"ran-{name}", "")


def saved(task: Any) -> None:
    """A django-q hook: called once the result row is saved, in whatever process saved it."""
    _record("saved", task.id)


def _record(kind: str, what: str) -> None:
    line = f"{what} {time.time():.6f}\n".encode()
    # O_APPEND: lines from processes writing at once do not interleave.
    fd = os.open(Path(settings.WORK, f"{kind}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
