"""Packages too big for a Cloud Task, kept in the database until their task is done.

Cloud Tasks refuses a task over 1 MiB. A bigger signed package is stored here (the
``Payload`` model, keyed by the django-q task id) and the Cloud Task carries a reference to
it (``wire.py``). The receiver loads the package, checks the reference's digest, then the
package's own django-q signature as for any delivery. Once Cloud Tasks is done with the
task, the payload is deleted.

The payload is written in the caller's transaction: inside ``transaction.atomic`` the
receiver waits for the commit (answering 500, so Cloud Tasks retries), and a rolled-back
transaction takes the payload with it, so the task is abandoned, not run.
"""

from __future__ import annotations

import time

from django.utils import timezone

from .exceptions import BadReference, PayloadGone, PayloadPending
from .models import Payload
from .wire import Reference, digest

# How long a delivery waits (by retrying) for the transaction that stored its payload.
COMMIT_WAIT_SECONDS = 600


def store(task_id: str, package: str, *, replace: bool = False) -> tuple[str, bool]:
    """Keep ``package`` for ``task_id``; a Cloud Task then refers to it (``wire.reference``).

    Returns the package kept, and whether it was stored now. A task enqueued again under
    its id keeps the package its first Cloud Task refers to, as Cloud Tasks keeps that
    task (ALREADY_EXISTS), unless ``replace``: a hop on its way sends the same task on.
    """
    defaults = {"package": package, "created": timezone.now()}
    if replace:
        Payload.objects.update_or_create(task_id=task_id, defaults=defaults)
        return package, True
    kept, created = Payload.objects.get_or_create(task_id=task_id, defaults=defaults)
    return kept.package, created


def load(reference: Reference) -> str:
    """The signed package a reference refers to."""
    package = stored(reference.task_id)
    if package is None:
        if time.time() - reference.stored < COMMIT_WAIT_SECONDS:
            raise PayloadPending(
                f"The package of task {reference.task_id} is not in the database yet: the "
                "transaction that enqueued it has not committed."
            )
        raise PayloadGone(
            f"The package of task {reference.task_id} never reached the database, or was "
            "deleted: the transaction that enqueued it rolled back, or the enqueue failed."
        )
    if digest(package) != reference.sha256:
        raise BadReference(f"The stored package of task {reference.task_id} is not the one sent.")
    return package


def stored(task_id: str) -> str | None:
    """The signed package kept for ``task_id``, if there is one."""
    package: str | None = (
        Payload.objects.filter(task_id=task_id).values_list("package", flat=True).first()
    )
    return package


def discard(task_id: str) -> None:
    Payload.objects.filter(task_id=task_id).delete()
