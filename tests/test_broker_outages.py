"""Enqueueing while Cloud Tasks is down, silent or losing answers: the built-in emulator
behind a TCP proxy that breaks on cue. ``async_task`` either creates exactly one task or
raises EnqueueError within ``enqueue_timeout``, leaving nothing queued; the broker's
health checks answer within 15 s."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from django_q.tasks import async_task

from django_q_cloudtasks.broker import CloudTasksBroker
from django_q_cloudtasks.exceptions import EnqueueError
from tests.conftest import PausedCloudTasks
from tests.support.tcp_proxy import TcpProxy

# Slack over enqueue_timeout: the last attempt's own start-up, and a shared, busy machine.
SLACK = 3.0


@pytest.fixture
def proxy(paused_cloud_tasks: PausedCloudTasks, configure) -> Iterator[TcpProxy]:
    """The broker reaches the paused emulator only through this proxy."""
    upstream_port = int(paused_cloud_tasks.emulator.address.rsplit(":", 1)[1])
    proxy = TcpProxy(upstream_port).start()
    configure(emulator_host=proxy.address)
    yield proxy
    proxy.stop()


def enqueue_timed(*args) -> tuple[float, str | EnqueueError]:
    started = time.monotonic()
    try:
        result: str | EnqueueError = async_task(*args)
    except EnqueueError as error:
        result = error
    return time.monotonic() - started, result


@pytest.mark.parametrize("outage", ["refuse", "black_hole"])
def test_cloud_tasks_out_of_reach_raises_within_the_enqueue_timeout(
    outage, proxy, paused_cloud_tasks, configure
):
    configure(enqueue_timeout=3)
    getattr(proxy, outage)()
    elapsed, result = enqueue_timed("math.copysign", 2, -2)
    assert isinstance(result, EnqueueError)
    assert "did not answer within 3 s" in str(result)
    assert elapsed < 3 + SLACK
    proxy.restore()
    assert paused_cloud_tasks.tasks() == []


@pytest.mark.parametrize("outage", ["refuse", "black_hole"])
def test_out_of_reach_ping_and_the_sizes_answer_false_and_none_within_15_s(outage, proxy):
    """qmonitor polls them every second: they answer, rather than raise or hang."""
    CloudTasksBroker.forget_stats()
    getattr(proxy, outage)()
    broker = CloudTasksBroker()

    def timed(method: str) -> tuple[object, float]:
        started = time.monotonic()
        return getattr(broker, method)(), time.monotonic() - started

    with ThreadPoolExecutor(3) as pool:
        (ping, ping_s), (size, size_s), (lock, lock_s) = pool.map(
            timed, ["ping", "queue_size", "lock_size"]
        )
    assert (ping, size, lock) == (False, None, None)
    assert max(ping_s, size_s, lock_s) <= 15


def test_an_outage_that_ends_within_the_timeout_enqueues_one_task(
    proxy, paused_cloud_tasks, configure
):
    configure(enqueue_timeout=20)
    proxy.refuse()
    threading.Timer(1.5, proxy.restore).start()
    elapsed, task_id = enqueue_timed("math.copysign", 2, -2)
    assert isinstance(task_id, str), task_id
    assert elapsed > 1.5
    assert [task.name.rsplit("/", 1)[1] for task in paused_cloud_tasks.tasks()] == [task_id]


def test_a_lost_answer_is_retried_into_exactly_one_task(proxy, paused_cloud_tasks):
    # CreateTask reaches the emulator, which creates the task; the answer never returns.
    proxy.lose_answer_to(PausedCloudTasks.QUEUES["tests"].encode())
    task_id = async_task("math.copysign", 2, -2)
    assert proxy.answers_lost == 1
    assert [task.name.rsplit("/", 1)[1] for task in paused_cloud_tasks.tasks()] == [task_id]


@pytest.mark.slow
def test_with_the_default_timeout_an_unanswered_enqueue_gives_up_after_about_30_s(
    proxy, paused_cloud_tasks, settings
):
    cloud_tasks = dict(settings.Q_CLUSTER["cloud_tasks"])
    del cloud_tasks["enqueue_timeout"]
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "cloud_tasks": cloud_tasks}
    proxy.black_hole()
    elapsed, result = enqueue_timed("math.copysign", 2, -2)
    print(f"gave up after {elapsed:.1f} s")
    assert isinstance(result, EnqueueError)
    assert 15 < elapsed < 30 + SLACK  # retries stop once the next would overrun
    proxy.restore()
    assert paused_cloud_tasks.tasks() == []
