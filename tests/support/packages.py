"""django-q task packages built the way ``async_task`` builds them, without enqueueing."""

from __future__ import annotations

import sys
import types
from typing import Any

from django.core import signing
from django.utils import timezone
from django_q.conf import Conf
from django_q.humanhash import uuid
from django_q.signing import PickleSerializer, SignedPackage


def make_task(func: str, *args: Any, **options: Any) -> dict[str, Any]:
    name, task_id = uuid()
    task = {"id": task_id, "name": name, "func": func, "args": args, "kwargs": {}}
    task["kwargs"] = options.pop("kwargs", {})
    task.update(options)
    task["started"] = timezone.now()
    return task


def sign(task: dict[str, Any]) -> bytes:
    return SignedPackage.dumps(task).encode()


def signed_with(key: str, obj: object) -> bytes:
    """What django-q's SignedPackage.dumps makes, with any key: as another key, or an old
    one, signed it."""
    return signing.dumps(obj, key=key, salt=Conf.PREFIX, serializer=PickleSerializer).encode()


def a_package_from_the_newer_revision(module: types.ModuleType, *, lacks: str) -> bytes:
    """A signed task whose argument is a ``module.Report`` (see the ``newer_code`` fixture);
    then this revision lacks the module (``lacks="module"``), or has it without the class."""
    body = sign(make_task("tests.project.tasks.echo", module.Report()))
    if lacks == "module":
        del sys.modules[module.__name__]
    else:
        del module.Report
    return body


def stored(task_id: str, package: str) -> bytes:
    """A package kept in the database, as for a big task; returns the reference body."""
    from django_q_cloudtasks import payloads, wire

    kept, _ = payloads.store(task_id, package)  # the first package stored for the id
    return wire.reference(task_id, kept, name="", func="")
