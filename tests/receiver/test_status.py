"""The receivers as django-q's own monitors see them: a row per process that ran tasks
recently, in the Django cache (LocMemCache; the Redis at DJQ_CACHE_URL if set)."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone
from django_q import VERSION as DJANGO_Q_VERSION
from django_q.conf import Conf
from django_q.monitor_terminal import monitor
from django_q.signing import SignedPackage
from django_q.status import Stat, Status
from django_q.tasks import async_task

from django_q_cloudtasks.broker import CloudTasksBroker
from django_q_cloudtasks.receiver import status as receiver_status
from django_q_cloudtasks.receiver.status import StatusWriter, writer
from tests.conftest import wait_for
from tests.support.packages import make_task

pytestmark = pytest.mark.django_db(transaction=True)


def forget_rows() -> None:
    """Empty django-q's list of status entries, and only that: a shared Redis (DJQ_CACHE_URL)
    holds other test runs' keys too.

    A writer's thread writes for up to a second after its last task: every one is let
    finish first, or its row would land in the emptied list.
    """
    for thread in threading.enumerate():
        if thread.name == "cloudtasks-status":
            thread.join(timeout=10)
    cache.delete_many([Conf.Q_STAT, *(cache.get(Conf.Q_STAT) or [])])


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process that ran nothing yet, and a cache that lists nothing; blessed gets a TERM."""
    monkeypatch.setenv("TERM", "xterm-256color")
    forget_rows()
    writer.reset()
    CloudTasksBroker.forget_stats()
    yield
    forget_rows()


def only_row() -> Status:
    listed = Stat.get_all()
    assert len(listed) == 1, listed
    assert listed[0].receiver is True
    return listed[0]


def settled_row(finished: int) -> Status:
    """The one row, once it shows ``finished`` tasks and none in flight: it is written from
    a thread, up to ``WRITE_EVERY`` after the change."""
    wait_for(
        lambda: [(row.finished, row.task_q_size) for row in Stat.get_all()] == [(finished, 0)],
        timeout=5 * receiver_status.WRITE_EVERY,
    )
    return only_row()


def flat(output: str) -> str:
    """Terminal output without escape sequences and spaces: "Clusters1Workers1..."."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\s", "", output)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, Status]]:
    """Every status written to the cache, with the time of the write."""
    written: list[tuple[float, Status]] = []
    set_stat = CloudTasksBroker.set_stat

    def spy(self: CloudTasksBroker, key: str, value: str, timeout: int) -> Any:
        written.append((time.monotonic(), SignedPackage.loads(value)))
        return set_stat(self, key, value, timeout)

    monkeypatch.setattr(CloudTasksBroker, "set_stat", spy)
    return written


def test_a_delivered_task_leaves_a_row_for_its_process(deliver):
    before = timezone.now()
    response = deliver(make_task("math.copysign", 2, -2))
    assert response.json()["status"] == "succeeded"
    row = settled_row(finished=1)
    assert row.host == socket.gethostname()
    assert re.fullmatch(r"[0-9a-f]{32}", row.cluster_id)
    assert (row.pid, row.workers) == (os.getpid(), [os.getpid()])
    assert (row.status, row.task_q_size, row.done_q_size, row.reincarnations) == (
        Conf.IDLE,
        0,
        0,
        0,
    )
    assert before - timedelta(seconds=5) < row.tob <= before  # the reset, just before
    deliver(make_task("math.copysign", 2, -2))
    assert settled_row(finished=2).cluster_id == row.cluster_id  # the same row, still one


def test_the_row_lasts_ttl_seconds_after_the_last_task(deliver, monkeypatch):
    monkeypatch.setattr(receiver_status, "TTL", 1)
    deliver(make_task("math.copysign", 2, -2))
    assert settled_row(finished=1)
    wait_for(lambda: Stat.get_all() == [], timeout=5)


def test_the_host_names_the_cloud_run_revision(deliver, monkeypatch):
    monkeypatch.setenv("K_REVISION", "mysite-00042-abc")
    writer.reset()
    deliver(make_task("math.copysign", 2, -2))
    assert settled_row(finished=1).host == f"{socket.gethostname()} (mysite-00042-abc)"


def test_in_a_job_execution_the_host_names_the_execution(deliver, monkeypatch):
    monkeypatch.setenv("CLOUD_RUN_EXECUTION", "mysite-worker-x7k2p")
    writer.reset()
    deliver(make_task("math.copysign", 2, -2))
    assert settled_row(finished=1).host == f"{socket.gethostname()} (mysite-worker-x7k2p)"


def test_a_running_task_shows_in_flight_until_it_ends(deliver, tmp_path):
    trace = tmp_path / "trace"
    answers: list[Any] = []
    delivery = threading.Thread(
        target=lambda: answers.append(
            deliver(make_task("tests.project.tasks.run_until_released", str(trace)))
        )
    )
    delivery.start()
    try:
        running = wait_for(lambda: [r for r in Stat.get_all() if r.task_q_size == 1])
        assert (running[0].status, running[0].finished) == (Conf.WORKING, 0)
    finally:
        Path(f"{trace}.go").touch()
        delivery.join(30)
    assert answers[0].json()["status"] == "succeeded"
    assert settled_row(finished=1).status == Conf.IDLE


def test_threads_are_counted_exactly(writes):
    own = StatusWriter()
    inside, leave = threading.Barrier(9), threading.Event()

    def task() -> None:
        with own.in_flight():
            inside.wait()
            leave.wait()

    threads = [threading.Thread(target=task) for _ in range(8)]
    for thread in threads:
        thread.start()
    inside.wait()
    wait_for(lambda: writes and writes[-1][1].task_q_size == 8)
    leave.set()
    for thread in threads:
        thread.join()

    def churn() -> None:
        for _ in range(300):
            with own.in_flight():
                pass

    churners = [threading.Thread(target=churn) for _ in range(8)]
    for thread in churners:
        thread.start()
    for thread in churners:
        thread.join()
    assert settled_row(finished=8 + 8 * 300).status == Conf.IDLE


def test_a_busy_process_writes_at_most_once_a_second_and_its_last_within_a_second(writes):
    own = StatusWriter()
    stop = threading.Event()

    def short_tasks() -> None:
        while not stop.is_set():
            with own.in_flight():
                time.sleep(0.001)

    with own.in_flight():  # a long task: the count never drops to zero while it runs
        churn = threading.Thread(target=short_tasks)
        churn.start()
        time.sleep(2.5)
        stop.set()
        churn.join()
        finished = own.row().finished
    ended = time.monotonic()
    wait_for(lambda: writes[-1][1].task_q_size == 0, timeout=5 * receiver_status.WRITE_EVERY)
    assert writes[-1][1].finished == finished + 1
    assert writes[-1][0] - ended <= receiver_status.WRITE_EVERY + 0.5  # a sleep, and one write
    times = [at for at, _ in writes]  # while busy: at 0 s, 1 s, 2 s; then the last
    assert len(times) >= 3, times
    assert all(later - earlier >= receiver_status.WRITE_EVERY for earlier, later in pairwise(times))


def test_no_write_happens_in_a_task_s_own_thread(writes, monkeypatch):
    """The cache is never on a task's path: a slow cache slows no request."""
    threads = []
    set_stat = CloudTasksBroker.set_stat

    def slow(self: CloudTasksBroker, key: str, value: str, timeout: int) -> Any:
        threads.append(threading.current_thread())
        time.sleep(0.5)
        return set_stat(self, key, value, timeout)

    monkeypatch.setattr(CloudTasksBroker, "set_stat", slow)
    own = StatusWriter()
    started = time.monotonic()
    for _ in range(3):
        with own.in_flight():
            pass
    assert time.monotonic() - started < 0.25
    wait_for(lambda: threads)
    assert threading.current_thread() not in threads


def test_a_row_a_concurrent_write_drops_from_the_list_is_listed_again(monkeypatch):
    """Another process read django-q's list of entries before this one added its row, and
    writes the list back after: the row is no longer listed, until it is written again."""
    set_stat = CloudTasksBroker.set_stat
    races = []

    def racing(self: CloudTasksBroker, key: str, value: str, timeout: int) -> Any:
        stale = self.cache.get(Conf.Q_STAT, [])
        set_stat(self, key, value, timeout)
        if not races:
            races.append(key)
            self.cache.set(Conf.Q_STAT, stale, None)  # the other writer's list, without ours
        return None

    monkeypatch.setattr(CloudTasksBroker, "set_stat", racing)
    own = StatusWriter()
    with own.in_flight():
        pass
    assert settled_row(finished=1).cluster_id == own.row().cluster_id
    assert races, "the race never happened"


def test_a_row_a_later_write_drops_is_listed_again_within_a_second():
    """Another process read the list before this row was added and writes it back after this
    process checked its write: the row is listed again while its task runs, not only after
    ``KEEP_ALIVE``."""
    own = StatusWriter()
    with own.in_flight():
        wait_for(lambda: [row.cluster_id for row in Stat.get_all()] == [own.row().cluster_id])
        cache.set(Conf.Q_STAT, [], None)  # the other writer's list, read before ours was added
        assert wait_for(
            lambda: [row.cluster_id for row in Stat.get_all()] == [own.row().cluster_id],
            timeout=3 * receiver_status.WRITE_EVERY,
        )


def test_reading_the_rows_never_unlists_one_written_meanwhile(monkeypatch):
    """qinfo and qmonitor read the list while processes write it: django-q's own reader
    writes back the list it read, and so drops a row listed in between."""
    first, newcomer = StatusWriter(), StatusWriter()
    receiver_status._publish(first.row())
    reader = CloudTasksBroker()
    get = reader.cache.get
    written: list[bool] = []

    def read_then_another_process_writes(key: str, *args: Any, **kwargs: Any) -> Any:
        value = get(key, *args, **kwargs)
        if key == Conf.Q_STAT and not written:
            written.append(True)
            receiver_status._publish(newcomer.row())
        return value

    monkeypatch.setattr(reader.cache, "get", read_then_another_process_writes)
    assert [row.cluster_id for row in Stat.get_all(broker=reader)] == [first.row().cluster_id]
    assert written
    monkeypatch.undo()
    listed = sorted(row.cluster_id for row in Stat.get_all())
    assert listed == sorted([first.row().cluster_id, newcomer.row().cluster_id])


def test_a_long_task_keeps_its_row_alive(monkeypatch):
    monkeypatch.setattr(receiver_status, "TTL", 1)
    monkeypatch.setattr(receiver_status, "KEEP_ALIVE", 0.3)
    monkeypatch.setattr(receiver_status, "WRITE_EVERY", 0.1)
    own = StatusWriter()
    with own.in_flight():
        time.sleep(2)  # twice the TTL
        assert only_row().task_q_size == 1


def test_a_cache_that_fails_never_fails_a_task_and_is_logged_once(deliver, monkeypatch, caplog):
    def broken(*args: Any) -> None:
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(CloudTasksBroker, "set_stat", broken)
    monkeypatch.setattr(receiver_status, "WRITE_EVERY", 0.05)
    with caplog.at_level(logging.WARNING, logger="django_q_cloudtasks"):
        for _ in range(3):
            response = deliver(make_task("math.copysign", 2, -2))
            assert response.json()["status"] == "succeeded"
            time.sleep(0.2)  # each delivery's row written, and failed
        wait_for(lambda: writer._thread is None)
    warnings = [r.getMessage() for r in caplog.records if "receiver's status" in r.getMessage()]
    assert len(warnings) == 1
    assert "Redis is down" in warnings[0]


def test_a_forked_child_starts_with_a_row_of_its_own():
    read, write = os.pipe()
    with writer.in_flight():
        parent = writer.row()
        child = os.fork()
        if child == 0:  # the child: report its state, and leave at once
            status = writer.row()
            os.write(write, json.dumps([status.cluster_id, status.task_q_size]).encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child_id, child_in_flight = json.loads(pipe.read())
    os.waitpid(child, 0)
    assert parent.task_q_size == 1
    assert child_in_flight == 0
    assert child_id != parent.cluster_id


def test_qinfo_counts_the_receivers_and_shows_the_queue_size(deliver, paused_cloud_tasks, capsys):
    for _ in range(3):
        async_task("math.floor", 1.5)  # they wait: the queue is paused
    deliver(make_task("math.copysign", 2, -2))
    settled_row(finished=1)
    capsys.readouterr()
    call_command("qinfo")
    shown = flat(capsys.readouterr().out)
    assert "Clusters1Workers1Restarts0" in shown
    assert "Queued3Successes1Failures0" in shown


# django-q2 1.8's qmonitor hands blessed the number 0 for the RQ column, which blessed
# refuses: it fails on every row, a cluster's too. 1.11's passes a string.
QMONITOR_WORKS = DJANGO_Q_VERSION >= (1, 11)


@pytest.mark.skipif(not QMONITOR_WORKS, reason="django-q2 < 1.11: qmonitor fails on any row")
def test_qmonitor_shows_the_receiver_row(deliver, paused_cloud_tasks, capsys):
    deliver(make_task("math.copysign", 2, -2))
    settled_row(finished=1)
    capsys.readouterr()
    stats = monitor(run_once=True)
    screen = capsys.readouterr().out
    assert [(type(stat), stat.receiver) for stat in stats] == [(Status, True)]
    assert stats[0].cluster_id == writer.row().cluster_id
    assert stats[0].cluster_id[-8:] in screen
    assert socket.gethostname()[:8] in screen
    assert str(Conf.IDLE) in screen
