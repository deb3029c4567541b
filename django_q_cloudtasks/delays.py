"""Time arithmetic of tasks that run later (``broker.async_task_after``): where a delayed
task goes next, and whether a delivered one is due.

Cloud Tasks holds a task for at most 30 days (``schedule_time``). A task asked for later
than that travels in hops: it is created to arrive up to 30 days ahead, and the
receiver, seeing it early, creates it again for the next hop, until the last hop arrives
at the time asked. Each hop has a name derived from the task id and the hops left, so a
hop delivered twice is forwarded once.

A delivery that comes before the task's time without being a hop on its way runs the task
at once (:func:`arrival`): Cloud Tasks delivers a task before its own schedule time only
when asked to (RunTask: the admin's "Run now"), and the last hop, come early by this
server's clock, cannot be put back under its own name, which Cloud Tasks keeps taken.
"""

from __future__ import annotations

import enum
import math
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

# Cloud Tasks refuses a schedule_time more than 30 days ahead; keep an hour of margin.
MAX_SCHEDULE_AHEAD = timedelta(days=30) - timedelta(hours=1)
# Hops are this far apart, a day shorter than the limit: a hop that is delivered late
# (a paused queue, retries) still computes the same next hop.
HOP = timedelta(days=29)
# A task delivered this close to its time runs now: clocks differ by a little.
EARLY_TOLERANCE = timedelta(minutes=5)

RunAfter = datetime | timedelta | int | float


def resolve(run_after: RunAfter, now: datetime | None = None) -> datetime:
    """The aware datetime ``run_after`` stands for."""
    now = now or timezone.now()
    if isinstance(run_after, datetime):
        if timezone.is_naive(run_after):
            raise ValueError(
                f"run_after={run_after!r} has no time zone: pass an aware datetime, "
                "e.g. timezone.now() + timedelta(hours=1)."
            )
        return run_after
    if isinstance(run_after, timedelta):
        return now + run_after
    if isinstance(run_after, int | float) and not isinstance(run_after, bool):
        return now + timedelta(seconds=run_after)
    raise TypeError(
        f"run_after must be a datetime, a timedelta or seconds, not {type(run_after).__name__}."
    )


def next_hop(
    task_id: str, run_after: datetime | None, now: datetime
) -> tuple[str, datetime | None]:
    """The Cloud Tasks task name and schedule_time of a task's next hop.

    The last hop, the one that runs the task, is named after the task itself.
    """
    if run_after is None or run_after <= now:
        return task_id, None
    remaining = run_after - now
    hops_left = (
        0 if remaining <= MAX_SCHEDULE_AHEAD else math.ceil((remaining - MAX_SCHEDULE_AHEAD) / HOP)
    )
    name = task_id if hops_left == 0 else f"{task_id}-{hops_left}"
    return name, run_after - hops_left * HOP


class Arrival(enum.Enum):
    """What a delivered task is to the receiver: run it now, or send it on."""

    DUE = "due"  # its time has come, give or take EARLY_TOLERANCE
    FORCED = "forced"  # delivered ahead of its time on request: RunTask ("Run now"), a replay
    EARLY = "early"  # the last hop, early by this server's clock
    HOP = "hop"  # on its way: send it on to its next hop


def arrival(
    task: dict[str, Any], *, now: datetime, forced: bool = False, cloud_task: str = ""
) -> Arrival:
    """How to take a delivered task. ``forced``: the delivery came before the Cloud Task's
    own schedule time; ``cloud_task``: the delivered Cloud Task's id, if known."""
    run_after = task.get("run_after")
    if not isinstance(run_after, datetime) or run_after - now <= EARLY_TOLERANCE:
        return Arrival.DUE
    if forced:
        return Arrival.FORCED
    if cloud_task and next_hop(task["id"], run_after, now)[0] == cloud_task:
        return Arrival.EARLY  # its next hop would be itself
    return Arrival.HOP
