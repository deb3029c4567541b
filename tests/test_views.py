"""The receiver endpoint: only POST, and a body is unpickled only after its django-q
signature checks out."""

import base64
import logging
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core import signing
from django.db import OperationalError
from django.test import Client
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Schedule, Success

from django_q_cloudtasks.exceptions import BadPackage
from django_q_cloudtasks.scheduling import Slot
from django_q_cloudtasks.wire import PACKAGE_CONTENT_TYPE, read_package
from tests.conftest import assert_rejected, logged_by_the_package_alone
from tests.project.tasks import LeavesATrace
from tests.support.packages import make_task, sign, signed_with
from tests.support.tokens import ISSUER

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    return tmp_path / "unpickled"


def test_the_canary_leaves_a_trace_when_unpickled(canary):
    """The control for the tests below: a correctly signed canary is unpickled."""
    with pytest.raises(BadPackage):  # it is not a task package...
        read_package(signed_with(Conf.SECRET_KEY, LeavesATrace(str(canary))))
    assert canary.exists()  # ...but it was unpickled


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda obj: signed_with("some-other-key", obj), id="signed-with-another-key"),
        pytest.param(
            lambda obj: base64.urlsafe_b64encode(pickle.dumps(obj)).rstrip(b"="), id="no-signature"
        ),
        pytest.param(lambda obj: pickle.dumps(obj), id="raw-pickle"),
        pytest.param(
            lambda obj: signed_with(Conf.SECRET_KEY, obj)[:-3] + b"xyz", id="signature-altered"
        ),
    ],
)
def test_a_forged_body_is_refused_and_never_unpickled(deliver, canary, forge):
    body = forge(LeavesATrace(str(canary)))
    letter = assert_rejected(deliver(body))
    assert not canary.exists()
    assert bytes(letter.body) == body  # kept as it came, for a look or a replay


@pytest.mark.parametrize("body", [b"", b"\xff\xfe", b"{}", b"a:b:c"])
def test_a_body_that_is_no_package_is_rejected(deliver, body):
    assert_rejected(deliver(body))


def test_a_signed_object_that_is_not_a_task_is_rejected(deliver):
    assert_rejected(deliver(signed_with(Conf.SECRET_KEY, {"not": "a task"})), "not a django-q task")


def test_a_rejected_delivery_records_which_cloud_task_it_was(client, signing_key, verifying):
    response = client.post(
        "/_tasks/",
        data=b"garbage",
        content_type=PACKAGE_CONTENT_TYPE,
        headers={
            "Authorization": f"Bearer {signing_key.token()}",
            "X-CloudTasks-QueueName": "tests",
            "X-CloudTasks-TaskName": "0123abcd",
        },
    )
    letter = assert_rejected(response)
    assert (letter.queue, letter.cloud_task, letter.path) == ("tests", "0123abcd", "/_tasks/")


@pytest.mark.parametrize("fallbacks", [["old-key"], ["another-key", "old-key"]])
def test_a_task_signed_with_a_key_in_secret_key_fallbacks_runs(deliver, settings, fallbacks):
    body = signed_with("old-key", make_task("math.copysign", 2, -2))
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "new-key", fallbacks
    assert deliver(body).json()["status"] == "succeeded"


def test_a_task_signed_with_a_key_no_longer_known_is_rejected_once(deliver, settings, canary):
    body = signed_with("old-key", LeavesATrace(str(canary)))
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "new-key", []
    assert_rejected(deliver(body), "SECRET_KEY_FALLBACKS")
    assert not canary.exists()


def test_an_unauthenticated_body_is_not_even_decoded(deliver, canary):
    response = deliver(signed_with(Conf.SECRET_KEY, LeavesATrace(str(canary))), token=None)
    assert response.status_code == 401
    assert not canary.exists()


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_only_post_is_allowed(client, method):
    assert getattr(client, method)("/_tasks/").status_code == 405


def test_no_csrf_token_is_needed(verifying, signing_key, settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.middleware.csrf.CsrfViewMiddleware"]
    task = make_task("math.copysign", 2, -2)
    response = Client(enforce_csrf_checks=True).post(
        "/_tasks/",
        data=sign(task),
        content_type="application/octet-stream",
        headers={"Authorization": f"Bearer {signing_key.token()}"},
    )
    assert response.status_code == 200
    assert Success.objects.get(id=task["id"]).result == -2.0


def test_the_request_path_does_not_import_the_cloud_tasks_client(tmp_path):
    """Receiving a task must not pay for google.cloud.tasks_v2 (about 0.35 s and 58 MB)."""
    script = """
import sys, django
django.setup()
from django.conf import settings
from django.test.utils import setup_test_environment
from django.core.management import call_command
call_command("migrate", verbosity=0)
settings.Q_CLUSTER["cloud_tasks"]["verify_token"] = False
setup_test_environment()
from django.test import Client
from tests.support.packages import make_task, sign, signed_with
response = Client().post("/_tasks/", data=sign(make_task("math.copysign", 2, -2)),
                         content_type="application/octet-stream")
assert response.status_code == 200, response.content
print("loaded" if "google.cloud.tasks_v2" in sys.modules else "not loaded")
"""
    env = {**os.environ, "DJQ_TEST_DB": "sqlite", "DJQ_DB_NAME": str(tmp_path / "db.sqlite3")}
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=Path(__file__).parent.parent,
    )
    assert result.stdout.strip().splitlines()[-1] == "not loaded"


# The scheduling endpoints beside the receiver


@pytest.mark.parametrize("path", ["/_tasks/tick/", "/_tasks/schedule/"])
def test_the_scheduling_endpoints_refuse_calls_without_a_token(deliver, path):
    assert deliver(b"", token=None, path=path).status_code == 401


@pytest.mark.parametrize("path", ["/_tasks/tick/", "/_tasks/schedule/"])
def test_the_scheduling_endpoints_take_only_post(client, path):
    assert client.get(path).status_code == 405


def test_the_tick_plans_the_due_schedules_and_reports(paused_cloud_tasks, deliver):
    Schedule.objects.create(func="math.floor", args="1.5", next_run=timezone.now())
    response = deliver(b"", path="/_tasks/tick/")
    assert response.status_code == 200
    assert response.json() == {"due": 1, "created": 1, "existing": 0, "failed": {}}
    assert len(paused_cloud_tasks.tasks()) == 1


def test_a_tick_that_cannot_reach_cloud_tasks_answers_500_to_be_retried(deliver, configure, caplog):
    configure(emulator_host="127.0.0.1:9", enqueue_timeout=1, issuers=[ISSUER])
    for _ in range(20):
        Schedule.objects.create(func="math.floor", args="1.5", next_run=timezone.now())
    started = time.monotonic()
    response = deliver(b"", path="/_tasks/tick/")
    assert response.status_code == 500
    logged_by_the_package_alone(caplog, logging.ERROR)
    failed = response.json()["failed"]
    assert len(failed) == 20
    assert all("emulator at 127.0.0.1:9" in error for error in failed.values())
    assert time.monotonic() - started < 10  # one enqueue_timeout, not one per schedule


def test_a_wake_up_fires_its_slot(paused_cloud_tasks, deliver):
    schedule = Schedule.objects.create(func="math.floor", args="1.5", next_run=timezone.now())
    slot = Slot(schedule.pk, schedule.next_run)
    response = deliver(slot.sign(), path="/_tasks/schedule/")
    assert response.status_code == 200
    assert response.json()["status"] == "enqueued"
    assert [t.name.rsplit("/", 1)[1] for t in paused_cloud_tasks.tasks()] == [slot.task_id]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b'{"schedule": 1, "slot": "2027-01-01T00:00:00+00:00"}', id="unsigned"),
        pytest.param(
            signing.dumps({"schedule": 1, "slot": "2027-01-01T00:00:00+00:00"}, key="other"),
            id="signed-with-another-key",
        ),
    ],
)
def test_a_wake_up_not_signed_by_this_project_is_rejected(deliver, body):
    body = body.encode() if isinstance(body, str) else body
    assert_rejected(deliver(body, path="/_tasks/schedule/"))


def test_a_database_failure_answers_500_to_be_retried(deliver, monkeypatch, caplog):
    def unavailable(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr("django_q_cloudtasks.models.Receipt.objects.claim", unavailable)
    response = deliver(make_task("math.copysign", 2, -2))
    assert response.status_code == 500
    assert response.json() == {"error": "The database is unavailable; retry later."}
    (line,) = logged_by_the_package_alone(caplog, logging.ERROR)
    assert "connection refused" in line.getMessage()
