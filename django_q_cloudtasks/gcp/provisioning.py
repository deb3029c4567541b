"""Each cluster's Cloud Tasks queues, made as the settings say: ``manage.py cloudtasks_setup``.

Only the rate limits and retry settings are managed (see :func:`desired_fields`). The rest
of a queue, its state included, is left as it is: a paused queue stays paused. A queue is
never deleted, because Cloud Tasks would then keep its name locked for days. Nothing here
prints; every API failure becomes a :class:`ProvisioningError` that names the queue and
says what to do. Calls are retried for ``enqueue_timeout`` (``api.patient``).
"""

from __future__ import annotations

import datetime
import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..conf import QueueSettings
from ..exceptions import ProvisioningError
from . import api
from .client import tasks_client

# The queue's own attempt limit is off. django-q's Q_CLUSTER["max_attempts"] decides when a
# failing task stops: the receiver answers 2xx "failed" once the task's attempt count
# reaches it. Cloud Tasks counts every delivery, the receiver's 409 "busy" answers to
# duplicate deliveries and its 500s while the database is down included, so a finite limit
# there could drop a task django-q would still retry. Cloud Tasks keeps a task at most 31
# days anyway.
UNLIMITED_ATTEMPTS = -1

DURATIONS = frozenset(
    {"retry_config.min_backoff", "retry_config.max_backoff", "retry_config.max_retry_duration"}
)
# Durations come back rounded: to the nanosecond by the API, to the microsecond by Python.
TOLERANCE = 1e-6


class Change(enum.Enum):
    """What setting up a resource in Google Cloud did to it: a queue here, the Cloud
    Scheduler job in scheduler_job.py."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Difference:
    """A managed field whose value in Cloud Tasks is not the one the settings want."""

    field: str  # as an update mask names it, e.g. "retry_config.max_backoff"
    current: float | None  # None: the queue does not exist yet
    desired: float

    def __str__(self) -> str:
        """``field: current -> desired``, or ``field: desired`` for a queue yet to create."""
        desired = _show(self.field, self.desired)
        if self.current is None:
            return f"{self.field}: {desired}"
        return f"{self.field}: {_show(self.field, self.current)} -> {desired}"


@dataclass(frozen=True)
class QueueResult:
    """What was done to one queue, or with ``dry_run`` would have been."""

    queue_path: str
    action: Change
    differences: tuple[Difference, ...]
    paused: bool


def desired_fields(qs: QueueSettings) -> dict[str, float]:
    """The managed fields of ``qs``'s queue, as the settings want them, in seconds."""
    options = qs.queue_options
    return {
        "rate_limits.max_dispatches_per_second": options.max_dispatches_per_second,
        "rate_limits.max_concurrent_dispatches": options.max_concurrent_dispatches,
        "retry_config.max_attempts": UNLIMITED_ATTEMPTS,
        "retry_config.min_backoff": options.min_backoff,
        "retry_config.max_backoff": options.max_backoff,
        "retry_config.max_doublings": options.max_doublings,
        "retry_config.max_retry_duration": options.max_retry_duration,
    }


def queues_of(clusters: Iterable[QueueSettings]) -> list[QueueSettings]:
    """One settings per queue, a cluster's shards each with the cluster's options: clusters
    sharing a queue must want the same of it.

    Otherwise each run would set the queue one way, then the other, and never be done.
    """
    chosen: dict[str, QueueSettings] = {}
    for qs in (shard for cluster in clusters for shard in cluster.shard_settings()):
        first = chosen.setdefault(qs.queue_path, qs)
        if first.queue_options != qs.queue_options:
            raise ProvisioningError(
                f"Clusters {first.cluster!r} and {qs.cluster!r} share the queue "
                f"{qs.queue_path} but want different queue_options: give them the same "
                "options, or each its own queue.",
                resource=qs.queue_path,
            )
    return list(chosen.values())


def provision(qs: QueueSettings, *, dry_run: bool = False) -> QueueResult:
    """Create ``qs``'s queue, or update the managed fields that differ; idempotent."""
    desired = desired_fields(qs)
    queue = _read(qs)
    if queue is None:
        if not dry_run:
            _create(qs, desired)
        differences = _differences(None, desired)
        return QueueResult(qs.queue_path, Change.CREATED, differences, paused=False)
    paused = queue.state == type(queue).State.PAUSED
    differences = _differences(queue, desired)
    if not differences:
        return QueueResult(qs.queue_path, Change.UNCHANGED, (), paused)
    if not dry_run:
        _check_kept(qs, _update(qs, desired, [d.field for d in differences]), desired)
    return QueueResult(qs.queue_path, Change.UPDATED, differences, paused)


def _read(qs: QueueSettings) -> Any | None:
    """The queue as Cloud Tasks has it; None if it does not exist."""
    from google.api_core import exceptions  # see api.py's docstring

    try:
        return _call(qs, "read", "get_queue", name=qs.queue_path)
    except ProvisioningError as error:
        if isinstance(error.__cause__, exceptions.NotFound):
            return None
        raise


def _create(qs: QueueSettings, desired: dict[str, float]) -> None:
    parent = qs.queue_path.rsplit("/queues/", 1)[0]
    queue = _call(qs, "create", "create_queue", parent=parent, queue=_queue(qs, desired))
    # A create reads a zero (max_doublings 0) as "the default": ask again for what it did
    # not take, with an update mask that names it, before checking Cloud Tasks' answer.
    missed = _differences(queue, desired)
    if missed:
        queue = _update(qs, desired, [d.field for d in missed])
    _check_kept(qs, queue, desired)


def _update(qs: QueueSettings, desired: dict[str, float], paths: list[str]) -> Any:
    return _call(
        qs, "update", "update_queue", queue=_queue(qs, desired), update_mask={"paths": paths}
    )


def _check_kept(qs: QueueSettings, queue: Any, desired: dict[str, float]) -> None:
    """Cloud Tasks answers with the queue as it now is: anything it changed is an error,
    or each run would report the same update again."""
    changed = _differences(queue, desired)
    if changed:
        raise ProvisioningError(
            f"Cloud Tasks did not keep the settings of queue {qs.queue_path} (what it has "
            f"-> what was asked): {'; '.join(map(str, changed))}. "
            'Choose values it accepts in Q_CLUSTER["cloud_tasks"]["queue_options"].',
            resource=qs.queue_path,
        )


def _differences(queue: Any | None, desired: dict[str, float]) -> tuple[Difference, ...]:
    """The desired fields whose value in ``queue`` (None: there is no queue) is another."""
    found = []
    for path, wanted in desired.items():
        current = None if queue is None else _value(queue, path)
        if current is None or not math.isclose(current, wanted, abs_tol=TOLERANCE):
            found.append(Difference(path, current, wanted))
    return tuple(found)


def _show(path: str, value: float) -> str:
    """A field's value as gcloud shows it: durations as seconds with an "s"."""
    return f"{value:.9g}s" if path in DURATIONS else f"{value:.9g}"


def _value(queue: Any, path: str) -> float:
    section, name = path.split(".")
    value = getattr(getattr(queue, section), name)
    return value.total_seconds() if isinstance(value, datetime.timedelta) else float(value)


def _queue(qs: QueueSettings, desired: dict[str, float]) -> dict[str, Any]:
    sections: dict[str, Any] = {"name": qs.queue_path}
    for path, value in desired.items():
        section, name = path.split(".")
        sections.setdefault(section, {})[name] = (
            datetime.timedelta(seconds=value) if path in DURATIONS else value
        )
    return sections


def _call(qs: QueueSettings, verb: str, method: str, **request: Any) -> Any:
    """One API call, retried for ``enqueue_timeout`` seconds."""
    budget = api.patient(qs.enqueue_timeout)
    try:
        return api.call(getattr(tasks_client(qs.emulator_host), method), budget, **request)
    except api.failures() as error:
        hint = api.explain(
            error,
            qs,
            budget,
            needs="roles/cloudtasks.queueAdmin (a dry run, roles/cloudtasks.viewer)",
        )
        raise ProvisioningError(
            f"Could not {verb} Cloud Tasks queue {qs.queue_path}: {hint}", resource=qs.queue_path
        ) from error
