"""What becomes of a delivery on the odd paths: a task forced ahead of its time, a hop
signed with an old key, code that only a newer revision has, a cluster no longer
configured, headers that are not what Cloud Tasks sends. Each ends in a clear outcome:
the task runs, is sent on, is retried a bounded number of times, or is kept as a dead
letter; none is lost."""

from __future__ import annotations

import logging
import sys
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Failure, Success

from django_q_cloudtasks.cloud_logging import RECEIVER_LOGGER
from django_q_cloudtasks.models import DeadLetter
from django_q_cloudtasks.receiver import delivery
from django_q_cloudtasks.receiver.delivery import MISSING_CODE_RETRIES
from tests.conftest import assert_rejected
from tests.support.packages import a_package_from_the_newer_revision, make_task, signed_with
from tests.support.tokens import ISSUER

pytestmark = pytest.mark.django_db(transaction=True)


def eta(when: timedelta) -> dict[str, str]:
    """The header with the Cloud Task's own schedule time, ``when`` from now."""
    return {"X-CloudTasks-TaskETA": f"{(timezone.now() + when).timestamp():.6f}"}


def cloud_task_id(cloud_task) -> str:
    return cloud_task.name.rsplit("/", 1)[1]


# A task delivered before its time


def test_the_last_hop_run_ahead_of_its_time_runs_the_task(deliver):
    """The admin's "Run now" on a task delayed by two days: Cloud Tasks delivers it at
    once, with its own schedule time two days ahead."""
    task = make_task("math.copysign", 2, -2, run_after=timezone.now() + timedelta(days=2))
    response = deliver(
        task, headers={"X-CloudTasks-TaskName": task["id"], **eta(timedelta(days=2))}
    )
    assert response.status_code == 200
    assert response.json()["status"] == "succeeded"
    assert Success.objects.get(id=task["id"]).result == -2.0


def test_a_hop_run_ahead_of_its_time_runs_the_task_rather_than_forwarding_it(
    deliver, paused_cloud_tasks
):
    run_after = timezone.now() + timedelta(days=45)
    task = make_task("math.copysign", 2, -2, run_after=run_after)
    headers = {"X-CloudTasks-TaskName": f"{task['id']}-1", **eta(timedelta(days=16))}
    assert deliver(task, headers=headers).json()["status"] == "succeeded"
    assert Success.objects.filter(id=task["id"]).exists()
    assert paused_cloud_tasks.tasks() == []  # no hop left behind to run it again


def test_the_last_hop_early_by_this_servers_clock_runs_now(deliver, caplog):
    """Cloud Tasks' clock says it is time, this server's says ten minutes early: the task
    cannot be put back under its own name, so it runs, with a warning about the clock."""
    task = make_task("math.copysign", 2, -2, run_after=timezone.now() + timedelta(minutes=10))
    response = deliver(task, headers={"X-CloudTasks-TaskName": task["id"]})
    assert response.json()["status"] == "succeeded"
    assert "is a clock wrong?" in caplog.text


def test_the_retry_of_a_run_ahead_of_its_time_runs_at_once_too(
    deliver, paused_cloud_tasks, tmp_path
):
    """ "Run now" on a hop whose task fails: the retry, due now by Cloud Tasks' clock, runs
    the task again rather than sending it on to wait for its time."""
    trace = tmp_path / "runs"
    run_after = timezone.now() + timedelta(days=45)
    task = make_task("tests.project.tasks.count_and_fail", str(trace), run_after=run_after)
    headers = {"X-CloudTasks-TaskName": f"{task['id']}-1"}
    forced = deliver(task, headers={**headers, **eta(timedelta(days=16))})
    assert forced.json()["status"] == "retry"
    retry = deliver(task, retries=1, headers={**headers, **eta(timedelta(0))})
    assert retry.json()["status"] == "retry"
    assert trace.read_text() == "xx"
    assert paused_cloud_tasks.tasks() == []


def test_a_hop_on_its_way_is_still_forwarded(deliver, paused_cloud_tasks):
    """The first hop of a task due in 45 days, at its own time: 29 days before the task's."""
    run_after = timezone.now() + timedelta(days=29)
    task = make_task("math.copysign", 2, -2, run_after=run_after)
    headers = {"X-CloudTasks-TaskName": f"{task['id']}-1", **eta(timedelta(0))}
    assert deliver(task, headers=headers).json()["status"] == "forwarded"
    assert [cloud_task_id(t) for t in paused_cloud_tasks.tasks()] == [task["id"]]
    assert not Success.objects.filter(id=task["id"]).exists()


def test_a_hop_that_cannot_be_sent_on_is_retried_and_said_once_as_an_error(
    deliver, configure, caplog
):
    # Cloud Tasks unreachable; the receiver still takes the tests' own tokens
    configure(emulator_host="127.0.0.1:9", enqueue_timeout=1, issuers=[ISSUER])
    task = make_task("math.copysign", 2, -2, run_after=timezone.now() + timedelta(days=29))
    caplog.set_level(logging.INFO)
    response = deliver(task)
    assert response.status_code == 500
    assert response.json()["status"] == "not_forwarded"
    (line,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert (line.name, line.levelname) == (RECEIVER_LOGGER, "ERROR")
    assert "could not be sent on to its next hop (" in line.getMessage()
    assert not Success.objects.filter(id=task["id"]).exists()


# A hop signed with a key the project has rotated since


def test_a_hop_signed_with_a_fallback_key_is_forwarded_as_it_was_signed(
    deliver, settings, paused_cloud_tasks
):
    """A task enqueued for 45 days later, signed before SECRET_KEY was rotated, the old key
    kept in SECRET_KEY_FALLBACKS: its first hop, 29 days before its time, goes on to the
    last, with the signature the receiver verified."""
    task = make_task("math.copysign", 2, -2, run_after=timezone.now() + timedelta(days=29))
    body = signed_with("old-key", task)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "new-key", ["old-key"]
    response = deliver(body)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "forwarded"
    (hop,) = paused_cloud_tasks.tasks()
    assert cloud_task_id(hop) == task["id"]
    assert hop.http_request.body == body


def test_a_hop_over_a_lowered_size_limit_still_goes_on(deliver, configure, paused_cloud_tasks):
    """max_package_bytes applies when a task is enqueued, not to its hops."""
    task = make_task(
        "tests.project.tasks.echo", "x" * 5000, run_after=timezone.now() + timedelta(days=29)
    )
    configure(max_package_bytes=1000)
    assert deliver(task).json()["status"] == "forwarded"
    assert [cloud_task_id(t) for t in paused_cloud_tasks.tasks()] == [task["id"]]


# A package naming code that only a newer revision has


@pytest.mark.parametrize("lacks", ["module", "class"])
def test_a_package_naming_missing_code_is_retried_not_dropped(deliver, newer_code, lacks):
    body = a_package_from_the_newer_revision(newer_code, lacks=lacks)
    response = deliver(body, retries=3)
    assert response.status_code == 500  # retried: never 429 or 503, which slow the queue
    assert response.json()["status"] == "retry"
    assert "newer_revision" in response.json()["error"]
    assert not DeadLetter.objects.exists()
    assert not Success.objects.exists()
    assert not Failure.objects.exists()


def test_a_package_naming_missing_code_becomes_a_dead_letter_after_its_last_retry(
    deliver, newer_code
):
    body = a_package_from_the_newer_revision(newer_code, lacks="module")
    assert deliver(body, retries=MISSING_CODE_RETRIES - 2).status_code == 500
    letter = assert_rejected(deliver(body, retries=MISSING_CODE_RETRIES - 1), "code")
    assert f"delivered {MISSING_CODE_RETRIES} times" in letter.reason
    assert bytes(letter.body) == body


def test_once_the_code_is_there_the_retry_runs_it(deliver, newer_code):
    body = a_package_from_the_newer_revision(newer_code, lacks="module")
    assert deliver(body).status_code == 500
    sys.modules["newer_revision"] = newer_code  # the delivery reached the newer revision
    assert deliver(body, retries=1).json()["status"] == "succeeded"


# A task of a cluster Q_CLUSTER no longer defines


@pytest.fixture
def unknown_clusters_warned(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    warned: set[str] = set()
    monkeypatch.setattr(delivery, "_unknown_clusters", warned)
    return warned


@pytest.mark.parametrize("cluster", ["old_reports", "oldreports"])
def test_a_task_of_a_removed_cluster_runs_with_the_main_clusters_settings(
    deliver, unknown_clusters_warned, caplog, cluster
):
    """Whether or not the name could be a queue id, as django-q's qcluster does under a
    name ALT_CLUSTERS lacks, its result row naming the cluster; a warning once per name."""
    for _ in range(2):
        task = make_task("math.copysign", 2, -2, cluster=cluster)
        response = deliver(task)
        assert response.status_code == 200
        assert response.json()["cluster"] == cluster
        assert Success.objects.get(id=task["id"]).cluster == cluster
    warnings = [r for r in caplog.records if "defines no cluster" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


def test_a_failing_task_of_a_removed_cluster_gets_the_main_clusters_attempts(
    deliver, unknown_clusters_warned, tmp_path
):
    task = make_task(
        "tests.project.tasks.count_and_fail", str(tmp_path / "runs"), cluster="old_reports"
    )
    assert deliver(task).json()["status"] == "retry"  # the main cluster allows 3 attempts
    assert deliver(task, retries=1).json()["status"] == "retry"
    assert deliver(task, retries=2).json()["status"] == "failed"
    assert (tmp_path / "runs").read_text() == "xxx"


# django-q's settings, as django-q holds them


def test_a_package_signed_with_a_patched_conf_secret_key_runs(deliver, monkeypatch):
    """django-q signs with Conf.SECRET_KEY: the receiver checks with it too."""
    monkeypatch.setattr(Conf, "SECRET_KEY", "patched in Conf")
    task = make_task("math.copysign", 2, -2)
    assert deliver(task).json()["status"] == "succeeded"


def test_override_settings_of_secret_key_rejects_nothing_django_q_would_run(deliver, settings):
    """Conf keeps the key the process started with, and signs with it."""
    settings.SECRET_KEY = "overridden in a test"
    task = make_task("math.copysign", 2, -2)
    assert deliver(task).json()["status"] == "succeeded"


def test_a_patched_conf_max_attempts_decides_when_a_failing_task_stops(
    deliver, monkeypatch, tmp_path
):
    monkeypatch.setattr(Conf, "MAX_ATTEMPTS", 1)  # the settings say 3
    task = make_task("tests.project.tasks.count_and_fail", str(tmp_path / "runs"))
    assert deliver(task).json()["status"] == "failed"


# Headers that are not what Cloud Tasks sends


@pytest.mark.parametrize(
    "value", ["9" * 5000, "-1", "1e400", "nan", "inf", "\u0663", "0x10", "", " 7 ", "7.5", "1_0"]
)
def test_an_odd_retry_count_counts_as_none(deliver, caplog, value):
    task = make_task("math.copysign", 2, -2)
    response = deliver(task, headers={"X-CloudTasks-TaskRetryCount": value})
    assert response.json()["status"] == "succeeded"
    (line,) = [r for r in caplog.records if r.name == RECEIVER_LOGGER]
    assert line.cloud_tasks_retries == 0


@pytest.mark.parametrize("value", ["9" * 5000, "nan", "inf", "-5", "soon"])
def test_an_odd_schedule_time_forces_nothing(deliver, paused_cloud_tasks, value):
    task = make_task("math.copysign", 2, -2, run_after=timezone.now() + timedelta(days=2))
    response = deliver(task, headers={"X-CloudTasks-TaskETA": value})
    assert response.json()["status"] == "forwarded"
    assert not Success.objects.filter(id=task["id"]).exists()


def test_an_app_engine_delivery_is_read_from_its_own_headers(rf):
    from django_q_cloudtasks.receiver.delivery import Delivery

    request = rf.post(
        "/_tasks/",
        data=b"body",
        content_type="application/vnd.django-q.package",
        headers={
            "X-AppEngine-QueueName": "worker",
            "X-AppEngine-TaskName": "t1",
            "X-AppEngine-TaskRetryCount": "2",
            "X-AppEngine-TaskETA": "1800000000.5",
        },
    )
    delivery = Delivery.from_request(request)
    assert (delivery.queue, delivery.cloud_task, delivery.retries) == ("worker", "t1", 2)
    assert delivery.scheduled is not None
    assert delivery.scheduled.timestamp() == 1800000000.5
