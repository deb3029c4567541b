"""Saving one task's result as django-q's monitor does, in one statement where it can.

django-q's ``save_task`` reads the task's row before writing it: a qcluster cannot know
whether an earlier attempt left one. The receiver can: a task whose receipt it has just
created has run nowhere before (``Claim.RUN``), so its first result is one INSERT, with
the model's signals, so that hooks and ``post_save`` receivers see it as they would under
qcluster. On PostgreSQL a first success also finishes its receipt in that statement: a
round trip costs about what the statement does. Everything else goes to django-q's own
monitor: retries, cached results, chains, and the pruning of ``save_limit``.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from django_q.brokers import Broker
from django_q.conf import Conf, logger
from django_q.models import Task
from django_q.monitor import monitor
from django_q.signals import post_execute
from django_q.utils import get_func_repr

from ..models import Receipt, create_unless_exists


class Mailbox:
    """The queue django-q's loops read from and write to; "STOP" when empty."""

    def __init__(self, *items: Any) -> None:
        self.items = list(items)

    def get(self) -> Any:
        return self.items.pop(0) if self.items else "STOP"

    def put(self, item: Any) -> None:
        self.items.append(item)


def save(
    task: dict[str, Any], broker: Broker, *, first_run: bool, holder: str | None = None
) -> bool:
    """Save a finished task's result; ``first_run``: no earlier delivery ran it. Given the
    ``holder`` of its claim, a first success finishes the task's receipt with its row (one
    statement on PostgreSQL). Returns whether the receipt was finished."""
    if first_run and _one_insert_saves(task):
        finishing = holder if task["success"] else None
        if _insert(task, finishing=finishing):
            post_execute.send(sender="django_q", task=task)
            if not task["success"]:  # as django-q's monitor logs it
                logger.error(
                    _("Failed '%(info_name)s' (%(task_name)s) - %(task_result)s")
                    % {
                        "info_name": get_func_repr(task["func"]),
                        "task_name": task["name"],
                        "task_result": task["result"],
                    }
                )
            return finishing is not None
    monitor(Mailbox(task), broker=broker)
    return False


def _one_insert_saves(task: dict[str, Any]) -> bool:
    """Whether django-q would only write the row: it must save one (a success may not need
    to), and has no chain to enqueue, cached result to keep, or older success to prune."""
    if task.get("cached") or task.get("chain"):
        return False
    if task["success"]:
        return bool(task.get("save", Conf.SAVE_LIMIT >= 0)) and Conf.SAVE_LIMIT == 0
    return True


def _insert(task: dict[str, Any], *, finishing: str | None) -> bool:
    """Create the task's row as django-q does, and, for the claim's holder ``finishing``,
    finish its receipt with it; False if the row exists already (then django-q's monitor
    updates it, and the receipt is left as it was)."""
    row = Task(
        id=task["id"],
        name=task["name"],
        func=get_func_repr(task["func"]),
        hook=task.get("hook"),
        args=task["args"],
        kwargs=task["kwargs"],
        cluster=task.get("cluster"),
        started=task["started"],
        stopped=task["stopped"],
        result=task["result"],
        group=task.get("group"),
        success=task["success"],
        attempt_count=1,
    )
    if finishing is None:
        return create_unless_exists(row)
    return Receipt.objects.finish_with(row, finishing)
