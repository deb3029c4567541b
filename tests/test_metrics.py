"""The figures cloudtasks_monitor shows: from Task rows with known times, and from the
emulator's queues holding known tasks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from django_q.models import Task
from django_q.signing import SignedPackage
from django_q.status import Stat
from django_q.tasks import async_task

from django_q_cloudtasks import CloudTasksBroker, async_task_after, metrics
from django_q_cloudtasks.metrics import Receiver, percentile, result_figures
from django_q_cloudtasks.models import Receipt
from django_q_cloudtasks.receiver.status import row
from tests.receiver.test_status import forget_rows

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def seconds(*values: float) -> list[timedelta]:
    return [timedelta(seconds=value) for value in values]


def ran(
    took: float = 1.0,
    *,
    stopped: datetime = NOW - timedelta(minutes=5),
    func: str = "tests.project.tasks.echo",
    success: bool = True,
    cluster: str = "tests",
) -> None:
    """A task as the receiver leaves it: its Task row, and its receipt, done ``took`` seconds
    after the claim; enqueued a minute before that."""
    task_id = uuid.uuid4().hex
    claimed = stopped - timedelta(seconds=took)
    Task.objects.create(
        id=task_id,
        name="a task",
        func=func,
        started=claimed - timedelta(minutes=1),
        stopped=stopped,
        success=success,
        cluster=cluster,
    )
    Receipt.objects.create(
        task_id=task_id,
        cluster=cluster,
        state=Receipt.State.DONE,
        holder="h",
        lease_until=stopped,
        claimed=claimed,
        updated=stopped,
    )


@pytest.mark.parametrize(
    ("values", "percent", "expected"),
    [
        (seconds(*range(1, 21)), 50, 10),  # the 10th of 20
        (seconds(*range(1, 21)), 95, 19),  # the 19th of 20
        (seconds(*range(1, 101)), 95, 95),
        (seconds(*range(1, 11)), 95, 10),  # rank 9.5: up to the 10th
        (seconds(7), 50, 7),
        (seconds(7), 95, 7),
        (seconds(1, 2), 50, 1),
    ],
)
def test_percentiles_are_nearest_rank(values, percent, expected):
    assert percentile(values, percent) == timedelta(seconds=expected)


def test_no_values_have_no_percentile():
    assert percentile([], 50) is None


def test_run_times_are_from_the_claim_to_done_of_the_window_s_receipts():
    for took in [0.5, 3, 1, 2, 60, 0.25, 4, 5, 6, 7]:  # p50: 4th of 10, p95: 10th
        ran(took)
    ran(1000, stopped=NOW - HOUR - timedelta(seconds=1))  # before the window
    figures = result_figures("tests", HOUR, now=NOW)
    assert (figures.p50, figures.p95) == (timedelta(seconds=3), timedelta(seconds=60))


def test_a_receipt_still_running_or_without_a_claim_time_has_no_run_time():
    ran(2)
    Receipt.objects.create(
        task_id="running",
        cluster="tests",
        state=Receipt.State.RUNNING,
        holder="h",
        lease_until=NOW,
        claimed=NOW - HOUR / 2,
        updated=NOW - timedelta(minutes=1),
    )
    Receipt.objects.create(
        task_id="older",
        cluster="tests",
        state=Receipt.State.DONE,
        holder="h",
        lease_until=NOW,
        claimed=None,
        updated=NOW - timedelta(minutes=1),
    )
    figures = result_figures("tests", HOUR, now=NOW)
    assert (figures.p50, figures.p95) == (timedelta(seconds=2), timedelta(seconds=2))


def test_the_window_holds_its_both_edges_and_nothing_beyond():
    ran(stopped=NOW - HOUR)  # the first moment of the window
    ran(stopped=NOW)  # its last
    ran(stopped=NOW - HOUR - timedelta(microseconds=1), success=False)
    ran(stopped=NOW + timedelta(microseconds=1), success=False)
    figures = result_figures("tests", HOUR, now=NOW)
    assert (figures.successes, figures.failures) == (2, 0)
    narrow = result_figures("tests", timedelta(minutes=30), now=NOW)
    assert (narrow.successes, narrow.failures) == (1, 0)


def test_successes_and_failures_are_counted_per_cluster():
    for _ in range(3):
        ran(cluster="tests")
    ran(cluster="tests", success=False)
    ran(cluster="second", success=False)
    ran(cluster="second", success=False)
    tests, second = (result_figures(c, HOUR, now=NOW) for c in ("tests", "second"))
    assert (tests.successes, tests.failures) == (3, 1)
    assert (second.successes, second.failures) == (0, 2)


def test_completions_per_minute_are_the_rows_stopped_in_the_last_minute():
    ran(stopped=NOW - timedelta(seconds=1))
    ran(stopped=NOW - timedelta(seconds=59), success=False)  # failures complete too
    ran(stopped=NOW - timedelta(seconds=60))  # exactly a minute ago: in
    ran(stopped=NOW - timedelta(seconds=60, microseconds=1))
    ran(stopped=NOW - timedelta(minutes=30))
    ran(stopped=NOW - timedelta(seconds=1), cluster="second")
    assert result_figures("tests", HOUR, now=NOW).completed_last_minute == 3


def test_the_functions_failing_most_come_first_three_of_them():
    for func, failures in [("app.b", 1), ("app.a", 3), ("app.d", 2), ("app.c", 2)]:
        for _ in range(failures):
            ran(func=func, success=False)
    for _ in range(5):
        ran(func="app.e")  # succeeds often: not failing
    ran(func="app.e", stopped=NOW - 2 * HOUR, success=False)  # failed before the window
    top = result_figures("tests", HOUR, now=NOW).top_failing
    assert top == (("app.a", 3), ("app.c", 2), ("app.d", 2))  # a tie goes by name


def test_a_cluster_without_rows_has_zeros_and_no_times():
    figures = result_figures("tests", HOUR, now=NOW)
    assert figures == metrics.ResultFigures(0, 0, 0, None, None, ())


def test_the_queue_figures_come_from_cloud_tasks(paused_cloud_tasks):
    before = timezone.now()
    for _ in range(3):
        async_task("math.floor", 1.5)
    after = timezone.now()
    now = after + timedelta(minutes=10)
    tests = metrics.queue_snapshot("tests", HOUR, now=now)
    assert tests.unavailable is None
    queue = tests.queue
    assert (queue.state, queue.waiting, queue.dispatched_last_minute, queue.running) == (
        "PAUSED",
        3,
        0,
        0,
    )
    assert now - after <= queue.oldest_age <= now - before
    assert tests.queue_path == paused_cloud_tasks.QUEUES["tests"]


def test_a_queue_whose_tasks_are_all_ahead_has_no_age_yet(paused_cloud_tasks):
    async_task_after(timedelta(minutes=3), "math.floor", 1.5)
    queue = metrics.queue_snapshot("tests", HOUR, now=timezone.now()).queue
    assert (queue.waiting, queue.oldest_age) == (1, timedelta(0))


def test_a_queue_that_cannot_be_read_keeps_its_results(
    paused_cloud_tasks, unreachable_second_queue
):
    unreachable = unreachable_second_queue
    ran(cluster="second", success=False, stopped=timezone.now())
    snapshot = metrics.snapshot()
    tests, second = snapshot.queues
    assert tests.queue is not None
    assert tests.unavailable is None
    assert second.queue is None
    assert second.unavailable.startswith(
        f"Could not read queue {paused_cloud_tasks.QUEUES['second']}:"
    )
    assert f"is the emulator at {unreachable} running?" in second.unavailable
    assert (second.results.failures, second.results.top_failing) == (
        1,
        (("tests.project.tasks.echo", 1),),
    )


def test_the_receivers_come_from_the_cache(paused_cloud_tasks):
    forget_rows()
    started = timezone.now() - timedelta(hours=2)
    status = row("f" * 24 + "1a2b3c4d", host="web-1", tob=started, in_flight=2, finished=7)
    CloudTasksBroker().set_stat(
        Stat.get_key(status.cluster_id), SignedPackage.dumps(status, True), 60
    )
    snapshot = metrics.snapshot(now=started + timedelta(hours=1, minutes=2, seconds=3))
    assert snapshot.receivers_unavailable is None
    assert snapshot.receivers == (
        Receiver(
            host="web-1",
            instance_id=status.cluster_id,
            pid=status.pid,
            in_flight=2,
            finished=7,
            uptime=timedelta(hours=1, minutes=2, seconds=3),
        ),
    )


def test_a_cache_that_cannot_be_read_is_said_so(paused_cloud_tasks, monkeypatch):
    def down(*args: object) -> None:
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(CloudTasksBroker, "get_stats", down)
    snapshot = metrics.snapshot()
    assert snapshot.receivers == ()
    assert (
        snapshot.receivers_unavailable
        == "Could not read the receivers from the cache: Redis is down"
    )
    assert len(snapshot.queues) == 2


def test_the_window_is_a_minute_at_least():
    with pytest.raises(ValueError, match="a minute or more"):
        metrics.snapshot(timedelta(seconds=59))
