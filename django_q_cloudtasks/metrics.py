"""What ``cloudtasks_monitor`` shows, gathered: per cluster, its queue as Cloud Tasks counts
it and its results as django-q saved them; the receiver processes (``receiver/status.py``);
and the Cloud Run job executions running job clusters' tasks.

The sources fail apart: a queue Cloud Tasks does not answer for keeps its results, with
the reason in place of the queue's figures; a job Cloud Run does not answer for, likewise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django_q.models import Task

from .conf import QueueSettings, cluster_names, queue_settings
from .exceptions import ExecutionError, QueueUnavailable
from .gcp import jobs, queue_admin
from .models import Receipt
from .receiver import status as receiver_status

# The span success and failure counts, run times and failing functions are taken over:
# a minute at least, since it holds the minute the completion rate is counted over.
DEFAULT_WINDOW = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
# How many of the functions that fail most are named.
TOP_FAILING = 3


@dataclass(frozen=True)
class QueueFigures:
    """A queue by Cloud Tasks' account: its state, and statistics Google estimates."""

    state: str  # RUNNING, PAUSED or DISABLED
    waiting: int | None
    oldest_age: timedelta | None  # of the oldest task waiting; 0 while none is due yet
    dispatched_last_minute: int | None
    running: int | None  # being dispatched now, awaiting the receiver's answer


@dataclass(frozen=True)
class ResultFigures:
    """A cluster's Task rows whose ``stopped`` falls in the window (``completed_last_minute``:
    in the last minute)."""

    completed_last_minute: int
    successes: int
    failures: int
    # Run times, nearest rank: from the receipt's claim to the task done, for the delivery
    # that finished it (the function, and saving its result). Not django-q's stopped -
    # started: its started is when the task was enqueued.
    p50: timedelta | None
    p95: timedelta | None
    top_failing: tuple[tuple[str, int], ...]  # (func, failures), most first


@dataclass(frozen=True)
class QueueSnapshot:
    cluster: str
    queue_path: str
    queue: QueueFigures | None
    unavailable: str | None  # why ``queue`` is None
    results: ResultFigures


@dataclass(frozen=True)
class Receiver:
    """A process that ran tasks within ``receiver_status.TTL``."""

    host: str
    instance_id: str
    pid: int
    in_flight: int
    finished: int
    uptime: timedelta


@dataclass(frozen=True)
class JobExecution:
    """A Cloud Run job execution running now, and the task it runs, by its receipt."""

    cluster: str
    execution: str  # its short name: job-xxxxx
    task_id: str  # "" when no receipt names it (started by hand, or another project's)
    age: timedelta
    cancelling: bool  # cancel() asked its task to stop


@dataclass(frozen=True)
class Snapshot:
    taken: datetime
    window: timedelta
    queues: tuple[QueueSnapshot, ...]
    receivers: tuple[Receiver, ...]
    receivers_unavailable: str | None  # why the cache could not list them
    executions: tuple[JobExecution, ...] = ()
    jobs: tuple[str, ...] = ()  # the jobs of the job clusters, by resource name
    jobs_unavailable: tuple[str, ...] = ()  # why Cloud Run could not list some


def snapshot(window: timedelta = DEFAULT_WINDOW, *, now: datetime | None = None) -> Snapshot:
    """Every configured cluster, and the receivers, as they are ``now``."""
    if window < MINUTE:
        raise ValueError(f"The window must be a minute or more, not {window}.")
    now = now or timezone.now()
    found: tuple[Receiver, ...] = ()
    unavailable = None
    try:
        found = tuple(
            Receiver(
                host=status.host,
                instance_id=status.cluster_id,
                pid=status.pid,
                in_flight=status.task_q_size,
                finished=status.finished,
                uptime=now - status.tob,
            )
            for status in receiver_status.rows()
        )
    except Exception as error:  # the cache's own errors: any backend, any exception
        unavailable = f"Could not read the receivers from the cache: {error}"
    executions, jobs_unavailable = job_executions(now=now)
    return Snapshot(
        taken=now,
        window=window,
        queues=tuple(queue_snapshot(cluster, window, now=now) for cluster in cluster_names()),
        receivers=tuple(sorted(found, key=lambda r: (r.host, r.instance_id))),
        receivers_unavailable=unavailable,
        executions=executions,
        jobs=tuple(dict.fromkeys(qs.job for qs in _job_clusters() if qs.job)),
        jobs_unavailable=jobs_unavailable,
    )


def job_executions(*, now: datetime) -> tuple[tuple[JobExecution, ...], tuple[str, ...]]:
    """The executions running now, of every job cluster's job, newest first; and why Cloud
    Run could not list those of some job."""
    found: list[tuple[str, jobs.ExecutionInfo]] = []
    unavailable: list[str] = []
    for qs in {qs.job: qs for qs in _job_clusters()}.values():  # one call per job
        try:
            found += [(qs.cluster, execution) for execution in jobs.running(qs)]
        except ExecutionError as error:
            unavailable.append(str(error))
    claims = Receipt.objects.filter(execution__in=[execution.name for _, execution in found])
    by_execution = {
        execution: (task_id, cluster, cancelled is not None)
        for execution, task_id, cluster, cancelled in claims.values_list(
            "execution", "task_id", "cluster", "cancelled"
        )
    }
    executions = []
    for job_cluster, execution in found:
        task_id, cluster, cancelling = by_execution.get(execution.name, ("", job_cluster, False))
        executions.append(
            JobExecution(
                cluster=cluster,  # the task's: clusters may share a job
                execution=execution.short_name,
                task_id=task_id,
                age=now - execution.created if execution.created else timedelta(0),
                cancelling=cancelling,
            )
        )
    return tuple(executions), tuple(unavailable)


def _job_clusters() -> list[QueueSettings]:
    return [qs for qs in map(queue_settings, cluster_names()) if qs.runs_in_job]


def queue_snapshot(cluster: str, window: timedelta, *, now: datetime) -> QueueSnapshot:
    """One cluster: its queue's figures, or why Cloud Tasks gave none, and its results."""
    qs = queue_settings(cluster)
    figures, unavailable = None, None
    try:
        figures = queue_figures(queue_admin.inspect(qs), now=now)
    except QueueUnavailable as error:
        unavailable = str(error)
    return QueueSnapshot(
        cluster=cluster,
        queue_path=qs.queue_path,
        queue=figures,
        unavailable=unavailable,
        results=result_figures(cluster, window, now=now),
    )


def queue_figures(info: queue_admin.QueueInfo, *, now: datetime) -> QueueFigures:
    stats = info.stats
    oldest = stats.oldest_arrival if stats else None
    return QueueFigures(
        state=info.state,
        waiting=stats.tasks if stats else None,
        # Cloud Tasks estimates the arrival of the task due soonest, which may lie ahead.
        oldest_age=max(now - oldest, timedelta(0)) if oldest else None,
        dispatched_last_minute=stats.executed_last_minute if stats else None,
        running=stats.running if stats else None,
    )


def result_figures(cluster: str, window: timedelta, *, now: datetime) -> ResultFigures:
    """From the window's rows, read once: few columns, and a window of them at most."""
    rows = Task.objects.filter(
        cluster=cluster, stopped__gte=now - window, stopped__lte=now
    ).values_list("stopped", "func", "success")
    runs = Receipt.objects.filter(
        cluster=cluster,
        state=Receipt.State.DONE,
        claimed__isnull=False,
        updated__gte=now - window,
        updated__lte=now,
    ).values_list("claimed", "updated")
    run_times = sorted(updated - claimed for claimed, updated in runs if claimed)
    minute_ago = now - MINUTE
    completed = 0
    failing: Counter[str] = Counter()
    last_minute = 0
    for stopped, func, success in rows:
        completed += 1
        if stopped >= minute_ago:
            last_minute += 1
        if not success:
            failing[func] += 1
    most_first = sorted(failing.items(), key=lambda item: (-item[1], item[0]))
    return ResultFigures(
        completed_last_minute=last_minute,
        successes=completed - failing.total(),
        failures=failing.total(),
        p50=percentile(run_times, 50),
        p95=percentile(run_times, 95),
        top_failing=tuple(most_first[:TOP_FAILING]),
    )


def percentile(ordered: Sequence[timedelta], percent: int) -> timedelta | None:
    """Nearest rank: the smallest of the sorted values with ``percent`` % of them at or
    below it; a value that was measured, never one made up between two."""
    if not ordered:
        return None
    rank = -(-percent * len(ordered) // 100)  # ceil, in whole numbers: no rounding error
    return ordered[max(rank, 1) - 1]
