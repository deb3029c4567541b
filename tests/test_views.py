"""The receiver endpoint: only POST, and a body is unpickled only after its django-q
signature checks out."""

import base64
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.signing import TimestampSigner
from django.test import Client
from django_q.conf import Conf
from django_q.models import Success

from django_q_cloudtasks.views import BadPackage, decode
from tests.project.tasks import LeavesATrace
from tests.support.packages import make_task, sign

pytestmark = pytest.mark.django_db(transaction=True)


def signed_with(key: str, obj: object) -> bytes:
    """What django-q's SignedPackage.dumps makes, with any key."""
    data = base64.urlsafe_b64encode(pickle.dumps(obj)).rstrip(b"=").decode()
    return TimestampSigner(key=key, salt=Conf.PREFIX).sign(data).encode()


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    return tmp_path / "unpickled"


def test_the_canary_leaves_a_trace_when_unpickled(canary):
    """The control for the tests below: a correctly signed canary is unpickled."""
    with pytest.raises(BadPackage):  # it is not a task package...
        decode(signed_with(Conf.SECRET_KEY, LeavesATrace(str(canary))))
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
    response = deliver(forge(LeavesATrace(str(canary))))
    assert response.status_code == 400
    assert not canary.exists()


@pytest.mark.parametrize("body", [b"", b"\xff\xfe", b"{}", b"a:b:c"])
def test_a_body_that_is_no_package_gets_400(deliver, body):
    assert deliver(body).status_code == 400


def test_a_signed_object_that_is_not_a_task_gets_400(deliver):
    response = deliver(signed_with(Conf.SECRET_KEY, {"not": "a task"}))
    assert response.status_code == 400
    assert "not a django-q task" in response.json()["error"]


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
from tests.support.packages import make_task, sign
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
