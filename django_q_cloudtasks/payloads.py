"""Packages too big for a Cloud Task travel by reference.

Cloud Tasks refuses a task over 1 MiB. A bigger signed package is kept in the database
(the ``Payload`` model, keyed by the django-q task id) and the Cloud Task carries a
reference instead: signed JSON naming the task (its id, and its django-q name and
function, for screens that list it without loading megabytes) and the package's SHA-256,
never a pickle. The receiver loads the package, checks the digest, then checks the package's own
django-q signature as for any delivery. Once Cloud Tasks is done with the task, the
payload is deleted.

The payload is written in the caller's transaction: inside ``transaction.atomic`` the
receiver waits for the commit (answering 500, so Cloud Tasks retries), and a rolled-back
transaction takes the payload with it, so the task is abandoned, not run.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from django.core import signing
from django.utils import timezone

logger = logging.getLogger("django_q_cloudtasks")

REFERENCE_CONTENT_TYPE = "application/vnd.django-q-cloudtasks.payload-reference"
REFERENCE_SALT = "django_q_cloudtasks.payloads"
# Cloud Tasks refuses tasks over 1 MiB, headers and all; keep room for the headers.
MAX_TASK_BODY_BYTES = 1024 * 1024 - 16 * 1024
# How long a delivery waits (by retrying) for the transaction that stored its payload.
COMMIT_WAIT_SECONDS = 600


class PayloadError(Exception):
    """A reference whose package cannot be run now."""


class PayloadPending(PayloadError):
    """The payload is not there yet: the transaction that stores it has not committed."""


class PayloadGone(PayloadError):
    """The payload will never come: its transaction rolled back, or the enqueue failed."""


class BadReference(PayloadError):
    """The body is not a reference this project signed, or does not match its payload."""


def store(task_id: str, package: str, *, name: str = "", func: str = "") -> bytes:
    """Keep ``package`` for ``task_id``; returns the body of the Cloud Task that refers to it.

    ``name`` and ``func``, the task's django-q name and function, travel in the reference.
    """
    from .models import Payload

    Payload.objects.update_or_create(
        task_id=task_id, defaults={"package": package, "created": timezone.now()}
    )
    reference = {
        "task": task_id,
        "sha256": _digest(package),
        "stored": time.time(),
        "name": name,
        "func": func,
    }
    return signing.dumps(reference, salt=REFERENCE_SALT, compress=False).encode()


def named(body: bytes) -> tuple[str, str]:
    """The django-q name and function of the task a reference refers to, from the
    reference alone; a reference made before they travelled in it names the task id."""
    reference = _unsign(body)
    name, func = reference.get("name"), reference.get("func")
    if isinstance(name, str) and name and isinstance(func, str):
        return name, func
    return reference["task"], "(its package is kept in the database)"


def load(body: bytes) -> str:
    """The signed package a reference body points to."""
    from .models import Payload

    reference = _unsign(body)
    package = (
        Payload.objects.filter(task_id=reference["task"]).values_list("package", flat=True).first()
    )
    if package is None:
        if time.time() - reference["stored"] < COMMIT_WAIT_SECONDS:
            raise PayloadPending(
                f"The package of task {reference['task']} is not in the database yet: the "
                "transaction that enqueued it has not committed."
            )
        raise PayloadGone(
            f"The package of task {reference['task']} never reached the database, or was "
            "deleted: the transaction that enqueued it rolled back, or the enqueue failed."
        )
    if _digest(package) != reference["sha256"]:
        raise BadReference(f"The stored package of task {reference['task']} is not the one sent.")
    return package


def discard(task_id: str) -> None:
    from .models import Payload

    Payload.objects.filter(task_id=task_id).delete()


def _unsign(body: bytes) -> dict[str, Any]:
    try:
        reference = signing.loads(body.decode("ascii"), salt=REFERENCE_SALT)
    except (UnicodeDecodeError, signing.BadSignature):
        raise BadReference("The body is not a payload reference signed by this project.") from None
    if not (
        isinstance(reference, dict)
        and isinstance(reference.get("task"), str)
        and isinstance(reference.get("sha256"), str)
        and isinstance(reference.get("stored"), int | float)
    ):
        raise BadReference("The signed body is not a payload reference.")
    return reference


def _digest(package: str) -> str:
    return hashlib.sha256(package.encode()).hexdigest()
