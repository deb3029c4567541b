"""Running a delivered task with django-q's own worker and monitor, exactly once."""

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import Failure, Success, Task
from django_q.signals import post_execute, pre_execute
from django_q.signing import SignedPackage

from django_q_cloudtasks.models import Receipt
from tests.support.packages import make_task

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    return tmp_path / "trace"


def runs(trace: Path) -> int:
    return len(trace.read_text()) if trace.exists() else 0


def held_by_another_delivery(task: dict, lease_left: timedelta, **fields) -> None:
    """A receipt as a delivery leaves it while running the task (or after dying in it)."""
    Receipt.objects.create(
        task_id=task["id"],
        cluster="tests",
        state=Receipt.State.RUNNING,
        holder="another-delivery",
        lease_until=timezone.now() + lease_left,
        updated=timezone.now(),
        **fields,
    )


def test_a_success_is_saved_and_answered_200(deliver):
    task = make_task("math.copysign", 2, -2)
    response = deliver(task)
    assert response.status_code == 200
    assert response.json() == {
        "status": "succeeded",
        "task": task["id"],
        "cluster": "tests",
        "attempt": 1,
    }
    saved = Success.objects.get(id=task["id"])
    assert (saved.result, saved.attempt_count, saved.cluster) == (-2.0, 1, "tests")


def test_the_receipt_times_the_run_from_the_claim_to_done(deliver):
    task = make_task("tests.project.tasks.sleep", 0.3)
    before = timezone.now()
    deliver(task)
    receipt = Receipt.objects.get(task_id=task["id"])
    assert before <= receipt.claimed
    assert receipt.updated - receipt.claimed >= timedelta(seconds=0.3)


def test_a_task_delivered_again_after_it_succeeded_does_not_run_again(deliver, trace):
    task = make_task("tests.project.tasks.append", str(trace), "x")
    assert deliver(task).json()["status"] == "succeeded"
    again = deliver(task)
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    assert runs(trace) == 1
    assert Receipt.objects.get(task_id=task["id"]).state == Receipt.State.DONE


def test_a_task_running_in_another_delivery_is_not_run_and_gets_409(deliver, trace):
    task = make_task("tests.project.tasks.append", str(trace), "x")
    held_by_another_delivery(task, lease_left=timedelta(minutes=5))
    response = deliver(task)
    assert (response.status_code, response.json()["status"]) == (409, "busy")
    assert runs(trace) == 0


def test_a_delivery_that_died_is_taken_over_once_its_lease_runs_out(deliver, trace):
    task = make_task("tests.project.tasks.append", str(trace), "x")
    held_by_another_delivery(task, lease_left=timedelta(seconds=-1))
    assert deliver(task).json()["status"] == "succeeded"
    assert runs(trace) == 1
    assert Receipt.objects.get(task_id=task["id"]).deliveries == 2


def test_a_run_that_died_counts_as_an_attempt(deliver, trace):
    task = make_task("tests.project.tasks.append", str(trace), "x")
    held_by_another_delivery(task, lease_left=timedelta(seconds=-1))
    deliver(task)
    assert Receipt.objects.get(task_id=task["id"]).lost == 1
    assert Success.objects.get(id=task["id"]).attempt_count == 1


def test_a_task_whose_runs_died_until_no_attempt_is_left_fails_without_running(deliver, trace):
    task = make_task("tests.project.tasks.append", str(trace), "x")
    # Two runs died before (out of memory, say); the third dies too: max_attempts is 3.
    held_by_another_delivery(task, lease_left=timedelta(seconds=-1), lost=2)
    response = deliver(task)
    assert (response.status_code, response.json()["status"]) == (200, "failed")
    assert runs(trace) == 0
    failure = Failure.objects.get(id=task["id"])
    assert failure.result.startswith("The process running it died 3 time(s)")
    assert "max_attempts 3, it is not run again" in failure.result
    assert Receipt.objects.get(task_id=task["id"]).state == Receipt.State.DONE


def test_a_saved_failure_and_a_lost_run_add_up_to_the_attempts(deliver, trace):
    task = make_task("tests.project.tasks.count_and_fail", str(trace), cluster="second")
    assert deliver(task).status_code == 500  # a first failure; max_attempts is 2
    Receipt.objects.filter(task_id=task["id"]).update(
        state=Receipt.State.RUNNING, lease_until=timezone.now() - timedelta(seconds=1)
    )  # a second run, which died
    assert deliver(task, retries=2).json()["status"] == "failed"
    assert runs(trace) == 1


def test_a_cancelled_task_whose_delivery_died_is_not_run_again(deliver, trace):
    task = make_task("tests.project.tasks.append", str(trace), "x")
    held_by_another_delivery(task, lease_left=timedelta(seconds=-1), cancelled=timezone.now())
    response = deliver(task)
    assert (response.status_code, response.json()["status"]) == (200, "cancelled")
    assert runs(trace) == 0
    assert Failure.objects.get(id=task["id"]).result.startswith("TaskCancelled: ")


def test_a_delivery_that_died_after_saving_its_success_does_not_run_again(deliver, trace):
    task = make_task("tests.project.tasks.append", str(trace), "x")
    assert deliver(task).status_code == 200
    # As if the process had died after saving the result, before marking its receipt.
    Receipt.objects.filter(task_id=task["id"]).update(
        state=Receipt.State.RUNNING, lease_until=timezone.now() - timedelta(seconds=1)
    )
    assert deliver(task).json()["status"] == "duplicate"
    assert runs(trace) == 1


def test_a_failure_asks_for_a_retry_until_max_attempts(deliver, trace):
    task = make_task("tests.project.tasks.count_and_fail", str(trace))
    statuses = [deliver(task, retries=n).status_code for n in range(3)]
    assert statuses == [500, 500, 200]  # max_attempts is 3 in the test settings
    failure = Failure.objects.get(id=task["id"])
    assert failure.attempt_count == 3
    assert "this task always fails" in failure.result
    assert runs(trace) == 3
    assert deliver(task, retries=3).json()["status"] == "duplicate"
    assert runs(trace) == 3


def test_a_failing_tasks_hook_runs_after_every_attempt_as_under_qcluster(deliver, trace):
    hooked = Path(f"{trace}.saves")  # the hook adds an "s" each time it runs
    task = make_task(
        "tests.project.tasks.count_and_fail", str(trace), hook="tests.project.tasks.count_saves"
    )
    for attempt in range(3):
        deliver(task, retries=attempt)
        assert hooked.read_text() == "s" * (attempt + 1)


def test_ack_failure_stops_retries_after_the_first_failure(deliver, trace):
    task = make_task("tests.project.tasks.count_and_fail", str(trace), ack_failure=True)
    response = deliver(task)
    assert (response.status_code, response.json()["status"]) == (200, "failed")
    assert Failure.objects.get(id=task["id"]).attempt_count == 1


def test_a_second_cluster_uses_its_own_max_attempts(deliver, trace):
    task = make_task("tests.project.tasks.count_and_fail", str(trace), cluster="second")
    statuses = [deliver(task, retries=n).status_code for n in range(2)]
    assert statuses == [500, 200]  # ALT_CLUSTERS["second"]["max_attempts"] is 2
    assert Failure.objects.get(id=task["id"]).cluster == "second"


def test_save_false_stores_nothing_yet_runs_once(deliver, trace):
    task = make_task("tests.project.tasks.append", str(trace), "x", save=False)
    assert deliver(task).json()["status"] == "succeeded"
    assert not Task.objects.filter(id=task["id"]).exists()
    assert deliver(task).json()["status"] == "duplicate"
    assert runs(trace) == 1


def test_cached_results_go_to_the_cache(deliver):
    task = make_task("math.copysign", 3, -1, cached=60)
    assert deliver(task).json()["status"] == "succeeded"
    stored = SignedPackage.loads(cache.get(f"tests:{task['id']}"))
    assert stored["result"] == -3.0
    assert not Task.objects.filter(id=task["id"]).exists()


def test_a_cached_failure_counts_attempts_from_cloud_tasks(deliver, trace):
    task = make_task("tests.project.tasks.count_and_fail", str(trace), cached=60)
    assert deliver(task, retries=0).status_code == 500
    assert deliver(task, retries=2).status_code == 200  # third attempt of 3


def test_django_q_signals_and_hooks_fire(deliver, tmp_path):
    seen = []

    def on_pre(sender, func, task, **kwargs):
        seen.append(("pre", task["id"]))

    def on_post(sender, task, **kwargs):
        seen.append(("post", task["id"], task["success"]))

    pre_execute.connect(on_pre, weak=False)
    post_execute.connect(on_post, weak=False)
    hook_file = tmp_path / "hook"
    task = make_task(
        "tests.project.tasks.echo",
        42,
        kwargs={"hook_path": str(hook_file)},
        hook="tests.project.tasks.record_hook",
    )
    try:
        assert deliver(task).status_code == 200
    finally:
        pre_execute.disconnect(on_pre)
        post_execute.disconnect(on_post)
    assert seen == [("pre", task["id"]), ("post", task["id"], True)]
    assert hook_file.read_text() == "tests.project.tasks.echo=42"


def test_the_timeout_is_enforced_in_the_main_thread(deliver):
    task = make_task("tests.project.tasks.sleep", 10, timeout=1, ack_failure=True)
    response = deliver(task)
    assert response.json()["status"] == "failed"
    assert "exceeded maximum timeout" in Failure.objects.get(id=task["id"]).result


def test_a_result_that_could_not_be_saved_is_retried(deliver, trace, monkeypatch):
    # What django-q's save_task does when the database fails: log, swallow, store nothing.
    # (It saves a retry's result: a first result is the receiver's INSERT, results.py.)
    monkeypatch.setattr("django_q.monitor.save_task", lambda task, broker: None)
    task = make_task("tests.project.tasks.append", str(trace), "x")
    held_by_another_delivery(task, timedelta(seconds=-1))  # it died: this is a retry
    response = deliver(task, retries=1)
    assert (response.status_code, response.json()["status"]) == (500, "retry")
    assert Receipt.objects.get(task_id=task["id"]).state == Receipt.State.RETRY


def test_a_success_costs_the_receiver_its_claim_and_its_finish_and_is_never_read_back(
    deliver, monkeypatch
):
    """The receiver's own share of a task's statements: the claim's INSERT before the task
    runs; after it, the row and the receipt's finish, which PostgreSQL takes as one
    statement. The saved row is known from the save itself, and no transaction is opened."""
    monkeypatch.setattr("django_q_cloudtasks.models.PRUNE_PROBABILITY", 0)
    task = make_task("math.copysign", 2, -2)
    with CaptureQueriesContext(connection) as queries:
        assert deliver(task).json()["status"] == "succeeded"
    statements = [
        (
            query["sql"].split()[0].upper(),
            "_receipt" in query["sql"],
            '"django_q_task"' in query["sql"],
        )
        for query in queries
    ]
    if connection.vendor == "postgresql":
        assert statements == [("INSERT", True, False), ("WITH", True, True)]
    else:
        assert statements == [
            ("INSERT", True, False),
            ("INSERT", False, True),
            ("UPDATE", True, False),
        ]
    assert Receipt.objects.get(task_id=task["id"]).state == Receipt.State.DONE


def test_django_q_logs_only_its_warnings_and_errors_in_the_receiver(deliver, caplog):
    with caplog.at_level(logging.DEBUG):
        deliver(make_task("math.floor", 1.5))
        deliver(make_task("math.sqrt", -1, ack_failure=True))
    django_q = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "django-q"]
    assert [level for level, _ in django_q] == ["ERROR"]
    assert "math domain error" in django_q[0][1]  # the failure, with its traceback
    receiver = [r.getMessage() for r in caplog.records if r.name.endswith(".receiver")]
    assert [line.split()[3] for line in receiver] == ["succeeded", "failed"]


def test_django_q_logs_as_usual_outside_the_receiver(deliver, caplog):
    deliver(make_task("math.floor", 1.5))
    with caplog.at_level(logging.INFO):
        logging.getLogger("django-q").info("a cluster's line")
    assert [r.getMessage() for r in caplog.records if r.name == "django-q"] == ["a cluster's line"]
