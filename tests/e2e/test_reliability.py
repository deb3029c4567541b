"""What holds when things go wrong: the same task delivered 20 times, a receiver process
killed mid-task or after saving its result, the database gone while a result is saved.

Each runs against the built-in emulator and a live gunicorn with 4 workers. Executions
are counted through trace files, saves of the result row through a hook, and the answers
through gunicorn's access log.
"""

from __future__ import annotations

import collections
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection
from django_q.models import Success, Task
from django_q.tasks import async_task

from tests.conftest import wait_for
from tests.e2e.conftest import answers, queue_is_empty
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WORKERS = 4
# A killed delivery's claim runs out within leases.LEASE (30 s); the retries' backoff adds
# up to as much again.
TAKE_OVER_TIMEOUT = 120


@pytest.mark.parametrize(
    "how",
    [["--duplicates", "20"], ["--duplicates", "20", "--duplicates-in-a-row"]],
    ids=["at-once", "in-a-row"],
)
def test_a_task_delivered_20_times_runs_once_and_saves_its_result_once(how, start_stack, trace):
    stack = start_stack(workers=WORKERS, emulator_options=how)
    # A task that takes a second: copies arrive while it runs, and after it finished.
    task_id = async_task(
        "tests.project.tasks.note_pid_then_sleep",
        str(trace),
        1,
        hook="tests.project.tasks.count_saves",
    )
    wait_for(lambda: queue_is_empty(stack), timeout=60)
    statuses = collections.Counter(answers(stack))
    print("answers:", statuses)
    assert statuses.total() == 20
    assert set(statuses) <= {200, 409}
    if "--duplicates-in-a-row" not in how:
        assert statuses[409] > 0  # turned away while the first copy ran
    assert (len(trace.runs), trace.saves) == (1, 1)
    assert Success.objects.get(id=task_id).attempt_count == 1


def test_a_receiver_killed_mid_task_is_retried_into_one_success(start_stack, trace):
    stack = start_stack(workers=WORKERS)
    task_id = async_task(
        "tests.project.tasks.note_pid_then_sleep",
        str(trace),
        3,
        hook="tests.project.tasks.count_saves",
    )
    pid = int(wait_for(lambda: trace.runs, timeout=30)[0])
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: Success.objects.filter(id=task_id).exists(), timeout=TAKE_OVER_TIMEOUT)
    print(f"taken over and finished {time.monotonic() - killed:.1f} s after the kill")
    wait_for(lambda: queue_is_empty(stack))
    assert len(trace.runs) == 2
    assert trace.runs[0] != trace.runs[1]
    assert trace.saves == 1
    assert Success.objects.get(id=task_id).attempt_count == 1
    assert 409 in answers(stack)  # the retries were turned away while the dead claim held


def test_a_receiver_that_dies_after_saving_its_result_does_not_run_the_task_again(
    start_stack, trace
):
    stack = start_stack(workers=WORKERS)
    task_id = async_task(
        "tests.project.tasks.append",
        str(trace),
        "ran\n",
        hook="tests.project.tasks.die_after_saving",
    )
    died = wait_for(lambda: trace.saves, timeout=30) and time.monotonic()
    wait_for(lambda: queue_is_empty(stack), timeout=TAKE_OVER_TIMEOUT)
    print(f"the retry was answered 'duplicate' {time.monotonic() - died:.1f} s after the death")
    assert (trace.runs, trace.saves) == (["ran"], 1)
    assert Success.objects.filter(id=task_id).exists()
    assert wait_for(lambda: answers(stack)[-1:] == [200], timeout=10)  # logged after it went


@pytest.fixture
def database_proxy() -> Iterator[TcpProxy]:
    """PostgreSQL, reached by the live server through a proxy the test can cut."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite is a file, not a server that can go away")
    proxy = TcpProxy(int(connection.settings_dict["PORT"] or 5432)).start()
    yield proxy
    proxy.stop()


def test_the_database_gone_while_the_result_is_saved_gets_500_then_one_saved_result(
    start_stack, database_proxy, trace
):
    stack = start_stack(workers=WORKERS, database_port=database_proxy.port)
    task_id = async_task(
        "tests.project.tasks.run_until_released", str(trace), hook="tests.project.tasks.count_saves"
    )
    wait_for(lambda: trace.runs, timeout=30)
    database_proxy.refuse()
    Path(f"{trace}.go").touch()  # the task returns; its result cannot be saved
    wait_for(lambda: 500 in answers(stack), timeout=30)
    assert not Task.objects.filter(id=task_id).exists()  # nothing half-written
    database_proxy.restore()
    wait_for(lambda: Success.objects.filter(id=task_id).exists(), timeout=TAKE_OVER_TIMEOUT)
    wait_for(lambda: queue_is_empty(stack))
    # The result was lost with the database, so the task ran again to produce it.
    assert (len(trace.runs), trace.saves) == (2, 1)
    assert Success.objects.get(id=task_id).result == "released"
