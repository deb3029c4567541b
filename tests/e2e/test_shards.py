"""A cluster's tasks spread over several queues (``cloud_tasks["shards"]``), delivered by the
built-in emulator to a live server: every queue used, every task run once."""

import collections
import re
import time
from pathlib import Path

import pytest
from django_q.models import Success
from django_q.tasks import async_task

from django_q_cloudtasks.conf import queue_settings
from django_q_cloudtasks.gcp.tasks import create_task
from django_q_cloudtasks.models import Receipt
from django_q_cloudtasks.wire import PACKAGE_CONTENT_TYPE
from tests.conftest import wait_for
from tests.e2e.conftest import answers
from tests.support.packages import make_task, sign

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SHARDS = 4
# The receiver's line for a task it ran: "... succeeded in 0.003 s: attempt 1, queue tests-2".
SUCCEEDED = re.compile(r" succeeded in [0-9.]+ s: attempt \d+, queue (\S+)$")


@pytest.fixture
def sharded_stack(start_stack, configure):
    """A stack whose emulator and server know the main cluster's four queues; each task is
    delivered twice at once, as Cloud Tasks may."""

    def start(**options):
        stack = start_stack(
            project_env={"DJQ_SHARDS": str(SHARDS)},
            emulator_options=["--duplicates", "2"],
            **options,
        )
        configure(shards=SHARDS)
        return stack

    return start


def succeeded_per_queue(stack: dict[str, str]) -> collections.Counter[str]:
    """How many tasks the receiver ran from each queue, from its log lines."""
    log = Path(stack["logs"], "server.log").read_text()
    return collections.Counter(
        found.group(1) for line in log.splitlines() if (found := SUCCEEDED.search(line))
    )


def run_through_shards(stack: dict[str, str], trace, count: int) -> float:
    """Enqueue ``count`` tasks, each appending its number to ``trace``; wait until every one
    has its Success row; returns the seconds that took."""
    started = time.monotonic()
    task_ids = [
        async_task("tests.project.tasks.append", str(trace), f"{n}\n") for n in range(count)
    ]
    wait_for(
        lambda: Success.objects.filter(id__in=task_ids).count() == count,
        timeout=60 + count / 20,
        interval=0.5,
    )
    elapsed = time.monotonic() - started
    # Each ran once: one line per task, and one receipt with it, done.
    assert sorted(map(int, trace.runs)) == list(range(count))
    receipts = Receipt.objects.filter(task_id__in=task_ids)
    assert receipts.filter(state=Receipt.State.DONE).count() == count
    wait_for(lambda: sum(succeeded_per_queue(stack).values()) == count)
    return elapsed


def test_a_cluster_with_shards_runs_each_task_once_from_all_its_queues(sharded_stack, trace):
    stack = sharded_stack()
    run_through_shards(stack, trace, 80)
    assert set(succeeded_per_queue(stack)) == set(queue_settings().queue_ids)


def test_one_task_in_two_of_the_clusters_queues_runs_once(sharded_stack, trace):
    """A task whose enqueue was retried after the shards changed lands in two queues."""
    stack = sharded_stack()
    task = make_task("tests.project.tasks.note_pid_then_sleep", str(trace), 0.5)
    qs = queue_settings()
    for shard in (qs.shard_settings()[1], qs.shard_settings()[3]):
        create_task(
            shard,
            name=task["id"],
            uri=qs.url,
            body=sign(task),
            content_type=PACKAGE_CONTENT_TYPE,
            deadline=60,
        )
    wait_for(lambda: Success.objects.filter(id=task["id"]).exists())
    statuses = answers(stack, at_least=4)  # two queues, each delivering twice
    time.sleep(1)  # a second run would have started by now: the task takes half a second
    assert len(trace.runs) == 1
    assert Success.objects.get(id=task["id"]).attempt_count == 1
    assert set(statuses) <= {200, 409}


@pytest.mark.slow
@pytest.mark.xdist_group("cpu-bound or timed")  # not beside the load test (test_load.py)
def test_4000_tasks_over_four_queues_share_them_evenly_and_each_runs_once(sharded_stack, trace):
    stack = sharded_stack(workers=2)
    count = 4000
    elapsed = run_through_shards(stack, trace, count)
    shares = succeeded_per_queue(stack)
    print(
        f"{count} tasks over {SHARDS} queues, each delivered twice, in {elapsed:.1f} s "
        f"({count / elapsed:.0f} tasks/s): "
        + ", ".join(f"{queue} {shares[queue]}" for queue in queue_settings().queue_ids)
    )
    fair = count / SHARDS
    assert all(abs(shares[queue] - fair) <= fair / 10 for queue in queue_settings().queue_ids)
