"""Schedules without a cluster: django-q's ``Schedule`` rows fired by Cloud Tasks.

Two steps, so that the ``Schedule`` row stays the one truth about what runs when:

1. The tick (``tick()``, called every minute by Cloud Scheduler, or ``cloudtasks_tick``)
   reads the schedules whose ``next_run`` comes before the next tick, and creates for
   each a *wake-up*: a small Cloud Task for (schedule, slot) with ``schedule_time`` at
   the slot. Its name derives from the two, so concurrent or retried ticks create it
   once. A tick writes nothing to the database.
2. At the slot, Cloud Tasks delivers the wake-up and ``fire()`` runs in the receiver.
   If the schedule still has this slot as its ``next_run`` (it was not edited, disabled
   or deleted meanwhile), it enqueues the slot's task, named after (schedule, slot),
   and then moves ``next_run`` on, as django-q's scheduler would. A crash between
   the two retries the wake-up, whose second enqueue finds the first (ALREADY_EXISTS).
   The receiver's receipts keep the task itself from running twice.

Each wake-up is its own request, so a broken schedule fails alone. After firing a slot,
``fire()`` already creates the wake-up of the next one when it is due before the next
tick: a schedule keeps its own time, and ticks pick up new and edited schedules.
"""

from __future__ import annotations

import ast
import enum
import hashlib
import logging
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import models, router, transaction
from django.utils import timezone
from django_q.conf import Conf, croniter
from django_q.humanhash import humanize
from django_q.models import Schedule, Task
from django_q.tasks import async_task
from django_q.utils import localtime

from . import wire
from .broker import CloudTasksBroker
from .conf import QueueSettings, cluster_names, main_cluster_name, queue_settings
from .exceptions import EnqueueError
from .gcp.tasks import create_task

logger = logging.getLogger("django_q_cloudtasks")

# A slot this close to now gets its wake-up: a minute between ticks, and a minute of slack
# for a tick that comes late. Wake-ups are cheap and checked when they arrive.
LOOKAHEAD = timedelta(seconds=120)
# A slot whose wake-up went missing (dropped after its retries ran out) gets a new one
# this often, under a new name: Cloud Tasks keeps an old name taken for an hour or more.
OVERDUE_RENEWAL = timedelta(minutes=10)
# Seconds Cloud Tasks waits for the answer to a wake-up: firing takes a moment.
WAKE_UP_DEADLINE = 60


@dataclass(frozen=True)
class Slot:
    """One run of one schedule: the schedule's ``next_run`` when the slot was planned."""

    schedule_id: int
    time: datetime

    @property
    def task_id(self) -> str:
        """The id of the django-q task this slot runs: the same for every tick and retry."""
        return _digest(f"task:{self.schedule_id}:{self.time.isoformat()}")

    def wake_up_name(self, now: datetime) -> str:
        renewals = max(0, (now - self.time) // OVERDUE_RENEWAL)
        return _digest(f"wake-up:{self.schedule_id}:{self.time.isoformat()}:{renewals}")

    def sign(self) -> bytes:
        """The body of the slot's wake-up (``wire.py``)."""
        return wire.wake_up(self.schedule_id, self.time)

    @classmethod
    def unsign(cls, body: bytes) -> Slot:
        """The slot a wake-up body names; JSON, never a pickle, once its signature holds."""
        return cls(*wire.read_wake_up(body))


@dataclass
class TickReport:
    """What one tick did; ``failed`` maps schedule ids to the error of their wake-up."""

    due: int = 0
    created: int = 0
    failed: dict[int, str] = field(default_factory=dict)

    @property
    def existing(self) -> int:
        """Wake-ups an earlier or concurrent tick had created already."""
        return self.due - self.created - len(self.failed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "due": self.due,
            "created": self.created,
            "existing": self.existing,
            "failed": {str(pk): error for pk, error in self.failed.items()},
        }


def tick(*, now: datetime | None = None, lookahead: timedelta = LOOKAHEAD) -> TickReport:
    """One scheduler pass: a wake-up for every schedule with a slot before ``now + lookahead``.

    Safe to run at any time, as often as wanted and from many processes at once. When
    Cloud Tasks refuses a queue's first wake-up, the queue's other schedules are reported
    failed without waiting for each in turn: the next tick tries again.
    """
    now = now or timezone.now()
    report = TickReport()
    for cluster in cluster_names():
        queue = queue_settings(cluster)
        due = (
            Schedule.objects.filter(_of_cluster(cluster), next_run__lt=now + lookahead)
            .exclude(repeats=0)
            .values_list("pk", "next_run")
        )
        unreachable: str | None = None
        for schedule_id, next_run in due:
            report.due += 1
            if unreachable:  # wake-ups differ only in their slot: the next would fail too
                report.failed[schedule_id] = unreachable
                continue
            try:
                report.created += wake_up(Slot(schedule_id, next_run), queue, now=now)
            except EnqueueError as error:
                logger.error("Could not plan the schedules of %s: %s", queue.queue_path, error)
                report.failed[schedule_id] = unreachable = str(error)
    return report


def wake_up(slot: Slot, queue: QueueSettings, *, now: datetime) -> bool:
    """Create the wake-up of ``slot``; False if it was there already."""
    return create_task(
        queue,
        name=slot.wake_up_name(now),
        uri=queue.schedule_url,
        body=slot.sign(),
        content_type=wire.WAKE_UP_CONTENT_TYPE,
        deadline=WAKE_UP_DEADLINE,
        schedule_time=slot.time if slot.time > now else None,
        task_id=slot.task_id,
    )


class Fired(enum.Enum):
    """What a wake-up did."""

    ENQUEUED = "enqueued"  # the slot's task is in Cloud Tasks
    BROKEN = "broken"  # the schedule cannot make a task: a Failure row says why
    STALE = "stale"  # the schedule moved on, was edited, disabled or deleted: nothing to do


def fire(slot: Slot, *, now: datetime | None = None) -> Fired:
    """Enqueue the task of ``slot`` if the schedule still plans it, then move the schedule on.

    Raises EnqueueError when Cloud Tasks is unreachable: the wake-up is then retried.
    """
    now = now or timezone.now()
    with transaction.atomic(using=router.db_for_write(Schedule)):
        schedule = Schedule.objects.select_for_update().filter(pk=slot.schedule_id).first()
        if schedule is None or schedule.repeats == 0 or schedule.next_run != slot.time:
            return Fired.STALE
        # Whatever is wrong with one schedule stays with it: a Failure row says what.
        try:
            upcoming = _upcoming(schedule, slot, now)
        except Exception as error:
            _record_broken(schedule, slot, "could not work out its next run and stops", error, now)
            _as_read(schedule, slot).update(repeats=0, task=slot.task_id)
            return Fired.BROKEN
        try:
            func, args, kwargs = _call(schedule, slot)
        except Exception as error:
            _record_broken(schedule, slot, "could not make a task", error, now)
            fired = Fired.BROKEN
        else:
            _enqueue(func, args, kwargs, slot, now)
            fired = Fired.ENQUEUED
        if not _move_on(schedule, slot, upcoming):
            return Fired.STALE  # a concurrent delivery of this wake-up moved it first
    _plan_next(slot.schedule_id, _cluster_of(schedule), now)
    return fired


def next_slot(schedule: Any, slot: datetime, now: datetime) -> datetime:
    """The slot after ``slot``, following django-q's rules, CATCH_UP included.

    Unlike django-q, a cron schedule counts from its slot rather than from now, so a
    slot planned ahead of time does not come round twice, and CATCH_UP applies to it too.
    """
    upcoming = slot
    while True:
        upcoming = _after(schedule, upcoming)
        if Conf.CATCH_UP or upcoming > now:
            return upcoming


def _after(schedule: Any, slot: datetime) -> datetime:
    if schedule.schedule_type != schedule.CRON:
        return schedule.calculate_next_run(slot)  # type: ignore[no-any-return]
    if croniter is None:
        raise ImportError("Cron schedules need croniter: pip install croniter")
    return croniter(schedule.cron, localtime(slot)).get_next(datetime)  # type: ignore[no-any-return]


def _call(schedule: Any, slot: Slot) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """The function, arguments and options of the slot's task, as django-q's scheduler makes them."""
    kwargs = _parse_kwargs(schedule.kwargs) if schedule.kwargs else {}
    args: Any = ast.literal_eval(schedule.args) if schedule.args else ()
    if not isinstance(args, tuple):
        args = (args,)
    q_options = dict(kwargs.get("q_options") or {})
    if schedule.intended_date_kwarg:
        kwargs[schedule.intended_date_kwarg] = slot.time.isoformat()
    if schedule.hook:
        q_options["hook"] = schedule.hook
    q_options["group"] = q_options.get("group", schedule.name or schedule.id)
    cluster = (
        schedule.cluster
        or q_options.get("cluster")
        or q_options.pop("broker_name", None)
        or main_cluster_name()
    )
    if cluster not in cluster_names():
        raise ValueError(f"cluster {cluster!r} is not defined in Q_CLUSTER")
    q_options["cluster"] = cluster
    kwargs["q_options"] = q_options
    return schedule.func, args, kwargs


def _parse_kwargs(text: str) -> dict[str, Any]:
    """A dict literal (``{"x": 1}``) or keyword syntax (``x=1, y='a'``)."""
    try:
        value = ast.literal_eval(text)
    except (SyntaxError, ValueError):
        call = ast.parse(f"f({text})", mode="eval").body
        if not isinstance(call, ast.Call) or call.args:
            raise ValueError(
                f"keyword arguments {text!r} are neither a dict nor name=value pairs"
            ) from None
        return {
            keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords if keyword.arg
        }
    if not isinstance(value, dict):
        raise ValueError(f"keyword arguments {text!r} are not a dict")
    return value


def _enqueue(
    func: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    slot: Slot,
    now: datetime,
) -> None:
    q_options = kwargs["q_options"]
    # A wake-up that came early (clocks differ) still has its task start on time.
    run_after = slot.time if slot.time > now else None
    q_options["broker"] = CloudTasksBroker(
        q_options["cluster"], task_id=slot.task_id, run_after=run_after
    )
    async_task(func, *args, **kwargs)
    logger.info(
        "Schedule %s: slot %s enqueued as task %s", slot.schedule_id, slot.time, slot.task_id
    )


def _record_broken(
    schedule: Any, slot: Slot, problem: str, error: Exception, now: datetime
) -> None:
    """A Failure row for the slot, where the admin shows what is wrong with the schedule."""
    reason = f"Schedule {schedule.name or schedule.pk} {problem}: {error!r}"
    logger.error("%s", reason)
    Task.objects.update_or_create(
        id=slot.task_id,
        defaults={
            "name": humanize(slot.task_id),
            "func": schedule.func,
            "hook": schedule.hook,
            "args": (),
            "kwargs": {},
            "result": f"{reason}\n{''.join(traceback.format_exception_only(error))}",
            "group": str(schedule.name or schedule.pk),
            "cluster": _cluster_of(schedule),
            "started": now,
            "stopped": now,
            "success": False,
            "attempt_count": 1,
        },
    )


def _upcoming(schedule: Any, slot: Slot, now: datetime) -> datetime | None:
    """The schedule's next run after ``slot``; None for a ONCE schedule."""
    if schedule.schedule_type == schedule.ONCE:
        return None
    return next_slot(schedule, slot.time, now)


def _as_read(schedule: Any, slot: Slot) -> Any:
    """The schedule's row, if it is still as it was read: updates through this are
    conditional, so that on databases without row locks (SQLite) two deliveries of one
    wake-up cannot both move the schedule on."""
    return type(schedule).objects.filter(
        pk=schedule.pk, next_run=slot.time, repeats=schedule.repeats
    )


def _move_on(schedule: Any, slot: Slot, upcoming: datetime | None) -> bool:
    """Advance the schedule past ``slot``, or end it, as django-q does; False if it had moved."""
    as_read = _as_read(schedule, slot)
    if upcoming is None:
        if schedule.repeats < 0:
            return bool(as_read.delete()[0])
        return bool(as_read.update(repeats=0, task=slot.task_id))
    repeats = max(schedule.repeats, -1)
    if repeats > 0:
        repeats -= 1
    return bool(as_read.update(next_run=upcoming, repeats=repeats, task=slot.task_id))


def _plan_next(schedule_id: int, cluster: str, now: datetime) -> None:
    """Create the next slot's wake-up now if it falls before the next tick."""
    upcoming = (
        Schedule.objects.filter(pk=schedule_id, next_run__lt=now + LOOKAHEAD)
        .exclude(repeats=0)
        .values_list("next_run", flat=True)
        .first()
    )
    if upcoming is None:
        return
    try:
        wake_up(Slot(schedule_id, upcoming), queue_settings(cluster), now=now)
    except EnqueueError as error:  # the next tick plans it
        logger.warning("Could not plan schedule %s ahead: %s", schedule_id, error)


def _cluster_of(schedule: Any) -> str:
    """The cluster whose queue carries a schedule's wake-ups: its own, else the main one."""
    if schedule.cluster:
        return str(schedule.cluster)
    return main_cluster_name()


def _of_cluster(cluster: str) -> models.Q:
    if cluster == main_cluster_name():
        return models.Q(cluster__isnull=True) | models.Q(cluster="") | models.Q(cluster=cluster)
    return models.Q(cluster=cluster)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]
