"""What a Cloud Task carries to the receiver: three body formats, each with its content type.

* A **package**: django-q's own signed package (pickle, signed with ``SECRET_KEY`` and salted
  with ``Q_CLUSTER["name"]``), as ``async_task`` made it. Its signature is checked before
  anything is unpickled: a body that fails it never is.
* A **reference**, for a package over Cloud Tasks' 1 MiB (kept in the database,
  ``payloads.py``): signed JSON naming the task (its id, django-q name and function, so that
  a screen can list it without the package) and the package's SHA-256. Never a pickle.
* A **wake-up** of a schedule's slot (``scheduling.py``): signed JSON of the schedule's id
  and the slot's time. Never a pickle.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core import signing
from django_q.conf import Conf
from django_q.signing import PickleSerializer

from .exceptions import BadPackage, BadReference, BadWakeUp, CodeMissing

PACKAGE_CONTENT_TYPE = "application/vnd.django-q.package"
REFERENCE_CONTENT_TYPE = "application/vnd.django-q-cloudtasks.payload-reference"
WAKE_UP_CONTENT_TYPE = "application/vnd.django-q-cloudtasks.slot"

# Cloud Tasks refuses tasks over 1 MiB, headers and all; keep room for the headers.
MAX_TASK_BODY_BYTES = 1024 * 1024 - 16 * 1024
REQUIRED_KEYS = ("id", "name", "func", "args", "kwargs")
REFERENCE_SALT = "django_q_cloudtasks.payloads"
WAKE_UP_SALT = "django_q_cloudtasks.scheduling.slot"


# Packages


def read_package(body: bytes) -> dict[str, Any]:
    """The task in a signed package: the signature checked, then unpickled.

    django-q signs with its ``Conf.SECRET_KEY`` (``SECRET_KEY`` as the process started)
    only; packages signed before a key rotation are accepted when the old key is in
    ``SECRET_KEY_FALLBACKS``, as Django's own signing does. A signed package naming code
    this process cannot import is not bad, only early for this revision: CodeMissing.
    """
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise BadPackage("The body is not a signed django-q package.") from None
    fallback_keys: list[str | bytes] = list(settings.SECRET_KEY_FALLBACKS)
    try:
        task = signing.loads(
            text,
            key=Conf.SECRET_KEY,
            fallback_keys=fallback_keys,
            salt=Conf.PREFIX,
            serializer=PickleSerializer,
        )
    except signing.BadSignature:
        raise BadPackage(
            "The body's signature matches neither SECRET_KEY nor SECRET_KEY_FALLBACKS: it was "
            "not enqueued by this project, or the key changed since and the old one is not "
            "in SECRET_KEY_FALLBACKS."
        ) from None
    except (ImportError, AttributeError) as error:  # unpickling found no such module or class
        raise CodeMissing(
            f"A signed package names code this revision lacks: {error!r}. It was enqueued by "
            "another revision of the code (a rollout, a traffic split)."
        ) from error
    except Exception as error:  # signed by us, yet unreadable: a bug, not an attack
        raise BadPackage(f"A signed package could not be read: {error!r}") from error
    if not isinstance(task, dict) or not all(key in task for key in REQUIRED_KEYS):
        raise BadPackage("The signed body is not a django-q task package.")
    return task


def func_name(task: dict[str, Any]) -> str:
    """The task's function as a dotted path: django-q keeps either the path or the callable."""
    func = task.get("func")
    if isinstance(func, str):
        return func
    module, name = getattr(func, "__module__", None), getattr(func, "__qualname__", None)
    return f"{module}.{name}" if module and name else repr(func)


# References


@dataclass(frozen=True)
class Reference:
    """A big task's package, by reference: what the database must hold for it."""

    task_id: str
    sha256: str  # of the signed package
    stored: float  # time.time() when the package was stored
    name: str = ""  # the task's django-q name and function; "" in references made before
    func: str = ""


def reference(task_id: str, package: str, *, name: str, func: str) -> bytes:
    """The body of a Cloud Task that refers to ``package``, stored for ``task_id`` just now."""
    value = {
        "task": task_id,
        "sha256": digest(package),
        "stored": time.time(),
        "name": name,
        "func": func,
    }
    return signing.dumps(value, salt=REFERENCE_SALT, compress=False).encode()


def read_reference(body: bytes) -> Reference:
    try:
        value = signing.loads(body.decode("ascii"), salt=REFERENCE_SALT)
    except (UnicodeDecodeError, signing.BadSignature):
        raise BadReference("The body is not a payload reference signed by this project.") from None
    if not (
        isinstance(value, dict)
        and isinstance(value.get("task"), str)
        and isinstance(value.get("sha256"), str)
        and isinstance(value.get("stored"), int | float)
    ):
        raise BadReference("The signed body is not a payload reference.")
    name, func = value.get("name"), value.get("func")
    return Reference(
        value["task"],
        value["sha256"],
        value["stored"],
        name if isinstance(name, str) else "",
        func if isinstance(func, str) else "",
    )


def digest(package: str) -> str:
    return hashlib.sha256(package.encode()).hexdigest()


# Wake-ups


def wake_up(schedule_id: int, slot: datetime) -> bytes:
    """The body of the Cloud Task that fires ``slot`` of a schedule."""
    value = {"schedule": schedule_id, "slot": slot.isoformat()}
    return signing.dumps(value, salt=WAKE_UP_SALT, compress=False).encode()


def read_wake_up(body: bytes) -> tuple[int, datetime]:
    """The schedule id and slot a wake-up names, once its signature holds."""
    try:
        value = signing.loads(body.decode("ascii"), salt=WAKE_UP_SALT)
        return int(value["schedule"]), datetime.fromisoformat(value["slot"])
    except (UnicodeDecodeError, signing.BadSignature):
        raise BadWakeUp("The body is not a schedule wake-up signed by this project.") from None
    except (KeyError, TypeError, ValueError) as error:
        raise BadWakeUp(f"A signed wake-up could not be read: {error!r}") from None
