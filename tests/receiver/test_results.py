"""A task's result saved as django-q's monitor saves it: the same row, hook, signal and log
line, in one INSERT for a task's first result, through django-q's own code otherwise."""

import logging
from pathlib import Path
from typing import Any

import pytest
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q import monitor
from django_q.conf import Conf
from django_q.models import Failure, Success, Task
from django_q.signals import post_execute

from django_q_cloudtasks.models import Receipt
from tests.support.packages import make_task

pytestmark = pytest.mark.django_db(transaction=True)


def task_statements(queries: CaptureQueriesContext) -> list[str]:
    """The verbs of the statements on django-q's task table."""
    return [q["sql"].split()[0].upper() for q in queries if '"django_q_task"' in q["sql"]]


@pytest.fixture
def post_executed() -> Any:
    """The tasks django-q's post_execute signal carried."""
    seen: list[dict[str, Any]] = []

    def note(sender: Any, task: dict[str, Any], **kwargs: Any) -> None:
        seen.append(dict(task))

    post_execute.connect(note, weak=False)
    yield seen
    post_execute.disconnect(note)


def test_a_first_success_is_one_insert_with_its_hook_and_signal(deliver, tmp_path, post_executed):
    hook_file = tmp_path / "hook"
    task = make_task(
        "tests.project.tasks.echo",
        42,
        kwargs={"hook_path": str(hook_file)},
        hook="tests.project.tasks.record_hook",
        group="answers",
    )
    with CaptureQueriesContext(connection) as queries:
        assert deliver(task).json()["status"] == "succeeded"
    # On PostgreSQL the INSERT carries the receipt's finish: WITH inserted AS (INSERT ...).
    assert task_statements(queries) == ["WITH" if connection.vendor == "postgresql" else "INSERT"]
    saved = Success.objects.get(id=task["id"])
    assert (saved.name, saved.func, saved.result, saved.group) == (
        task["name"],
        "tests.project.tasks.echo",
        42,
        "answers",
    )
    assert (saved.args, saved.kwargs, saved.attempt_count) == ((42,), task["kwargs"], 1)
    assert saved.started == task["started"]
    assert saved.stopped >= saved.started
    assert hook_file.read_text() == "tests.project.tasks.echo=42"
    assert [(seen["id"], seen["success"]) for seen in post_executed] == [(task["id"], True)]


def test_a_first_failure_is_one_insert_logged_as_django_q_logs_it(deliver, caplog, post_executed):
    task = make_task("math.sqrt", -1)
    with (
        caplog.at_level(logging.ERROR, logger="django-q"),
        CaptureQueriesContext(connection) as queries,
    ):
        assert deliver(task).json()["status"] == "retry"
    assert task_statements(queries) == ["INSERT"]
    failure = Failure.objects.get(id=task["id"])
    assert (failure.attempt_count, "math domain error" in failure.result) == (1, True)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "django-q"]
    assert line.startswith(f"Failed 'math.sqrt' ({task['name']}) - math domain error")
    assert [seen["success"] for seen in post_executed] == [False]


def test_a_retry_goes_through_django_q_which_counts_the_attempt(deliver, tmp_path):
    trace = tmp_path / "trace"
    task = make_task("tests.project.tasks.count_and_fail", str(trace))
    deliver(task)
    with CaptureQueriesContext(connection) as queries:
        deliver(task, retries=1)
    assert task_statements(queries)[-2:] == ["SELECT", "UPDATE"]  # django-q's save_task
    assert Failure.objects.get(id=task["id"]).attempt_count == 2


def test_a_row_left_before_the_receipt_is_updated_not_duplicated(deliver):
    """A first run by the receipt, yet a row with the id exists (its receipt was pruned, say):
    django-q's own save updates it, as a later attempt."""
    task = make_task("math.copysign", 2, -2)
    Task.objects.create(
        id=task["id"],
        name=task["name"],
        func="math.copysign",
        args=(2, -2),
        kwargs={},
        started=timezone.now(),
        stopped=timezone.now(),
        success=False,
        attempt_count=1,
    )
    assert deliver(task).json() == {
        "status": "succeeded",
        "task": task["id"],
        "cluster": "tests",
        "attempt": 2,
    }
    assert Success.objects.get(id=task["id"]).result == -2.0


def test_a_chain_a_cached_result_and_save_limit_go_through_django_q(
    deliver, monkeypatch, paused_cloud_tasks
):
    """django-q's save_task enqueues the next link and prunes to save_limit: those tasks are
    handed to it whole."""
    handed: list[str] = []
    save_task = monitor.save_task

    def spy(task: dict[str, Any], broker: Any) -> None:
        handed.append(task["id"])
        save_task(task, broker)

    monkeypatch.setattr("django_q.monitor.save_task", spy)
    chained = make_task("math.floor", 1.5, chain=[("math.floor", (2.5,), {})], group="g")
    chained.update(cached=False, sync=False)
    deliver(chained)
    monkeypatch.setattr(Conf, "SAVE_LIMIT", 5)
    limited = make_task("math.floor", 3.5)
    deliver(limited)
    assert handed == [chained["id"], limited["id"]]
    assert len(paused_cloud_tasks.tasks()) == 1  # the chain's next link, enqueued
    assert deliver(make_task("math.floor", 4.5, cached=60)).json()["status"] == "succeeded"
    assert handed == [chained["id"], limited["id"]]  # a cached result has no row to save


def test_a_database_failing_on_the_insert_is_a_retry_with_the_claim_released(deliver, tmp_path):
    def down_for_results(execute: Any, sql: str, *args: Any) -> Any:
        if '"django_q_task"' in sql:
            raise DatabaseError("the database went away")
        return execute(sql, *args)

    task = make_task("tests.project.tasks.append", str(tmp_path / "trace"), "x")
    with connection.execute_wrapper(down_for_results):
        response = deliver(task)
    assert response.status_code == 500
    assert Receipt.objects.get(task_id=task["id"]).state == Receipt.State.RETRY
    assert not Task.objects.filter(id=task["id"]).exists()
    assert Path(tmp_path / "trace").read_text() == "x"
