"""django-q task packages built the way ``async_task`` builds them, without enqueueing."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from django_q.humanhash import uuid
from django_q.signing import SignedPackage


def make_task(func: str, *args: Any, **options: Any) -> dict[str, Any]:
    name, task_id = uuid()
    task = {"id": task_id, "name": name, "func": func, "args": args, "kwargs": {}}
    task["kwargs"] = options.pop("kwargs", {})
    task.update(options)
    task["started"] = timezone.now()
    return task


def sign(task: dict[str, Any]) -> bytes:
    return SignedPackage.dumps(task).encode()
