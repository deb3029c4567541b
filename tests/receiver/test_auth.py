"""Only requests with a valid Google-signed OIDC token for an allowed account get in.

Tokens are signed with a key made for the run and verified by google-auth against a
certificate endpoint served on loopback. Every refused request runs nothing.
"""

import hashlib
import hmac
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django_q.models import Task

from tests.conftest import logged_by_the_package_alone
from tests.support.packages import make_task
from tests.support.tokens import CertsServer, SigningKey, forged_token, valid_claims

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def traced_task(tmp_path: Path) -> dict:
    return make_task("tests.project.tasks.append", str(tmp_path / "ran"), "x")


def ran(task: dict) -> bool:
    return Path(task["args"][0]).exists() or Task.objects.filter(id=task["id"]).exists()


def test_a_valid_token_runs_the_task(deliver, traced_task):
    response = deliver(traced_task)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "succeeded"
    assert ran(traced_task)


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        pytest.param(
            {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, 401, id="expired"
        ),
        pytest.param(
            {"iat": int(time.time()) + 3600, "exp": int(time.time()) + 7200},
            401,
            id="issued-in-the-future",
        ),
        pytest.param({"aud": "https://evil.example.com"}, 401, id="wrong-audience"),
        pytest.param({"iss": "https://evil.example.com"}, 401, id="wrong-issuer"),
        pytest.param(
            {"email": "intruder@evil.iam.gserviceaccount.com"}, 403, id="email-not-allowed"
        ),
        pytest.param({"email_verified": False}, 403, id="email-unverified"),
        pytest.param({"email_verified": None}, 403, id="email-verified-missing"),
        pytest.param({"email": None}, 403, id="email-missing"),
    ],
)
def test_a_token_with_bad_claims_is_refused(deliver, signing_key, traced_task, claims, status):
    response = deliver(traced_task, token=signing_key.token(**claims))
    assert response.status_code == status, response.content
    assert not ran(traced_task)


def test_a_missing_token_is_refused(deliver, traced_task):
    response = deliver(traced_task, token=None)
    assert response.status_code == 401
    assert not ran(traced_task)


def test_a_tampered_signature_is_refused(deliver, signing_key, traced_task):
    header, payload, signature = signing_key.token().split(".")
    flipped = signature[:-6] + ("AAAAAA" if signature[-6:] != "AAAAAA" else "BBBBBB")
    response = deliver(traced_task, token=f"{header}.{payload}.{flipped}")
    assert response.status_code == 401
    assert not ran(traced_task)


def hs256_with(secret: bytes):
    return lambda signing_input: hmac.new(secret, signing_input, hashlib.sha256).digest()


def public_key_pem(key: SigningKey) -> bytes:
    certificate = x509.load_pem_x509_certificate(key.certificate_pem)
    return certificate.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(
            lambda key: forged_token({"alg": "none", "typ": "JWT"}, valid_claims()), id="alg-none"
        ),
        pytest.param(
            lambda key: forged_token({"alg": "none", "kid": key.kid}, valid_claims()),
            id="alg-none-known-kid",
        ),
        pytest.param(
            lambda key: forged_token(
                {"alg": "HS256", "kid": key.kid}, valid_claims(), hs256_with(public_key_pem(key))
            ),
            id="hs256-signed-with-the-public-key",
        ),
        pytest.param(
            lambda key: forged_token(
                {"alg": "HS256", "kid": key.kid}, valid_claims(), hs256_with(key.certificate_pem)
            ),
            id="hs256-signed-with-the-certificate",
        ),
        pytest.param(lambda key: SigningKey.generate("unknown-kid").token(), id="unknown-kid"),
        pytest.param(
            lambda key: forged_token({"alg": "RS256"}, valid_claims(), lambda _: b"x" * 256),
            id="no-kid",
        ),
    ],
)
def test_a_forged_token_is_refused(deliver, signing_key, traced_task, forge):
    response = deliver(traced_task, token=forge(signing_key))
    assert response.status_code == 401, response.content
    assert not ran(traced_task)


def test_a_token_signed_by_another_key_is_refused(deliver, traced_task):
    stranger = SigningKey.generate("test-key-1")  # same key id, different key
    response = deliver(traced_task, token=stranger.token())
    assert response.status_code == 401
    assert not ran(traced_task)


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "Basic abc"])
def test_garbage_tokens_are_refused(deliver, traced_task, token):
    response = deliver(traced_task, token=token)
    assert response.status_code == 401
    assert not ran(traced_task)


def test_certificates_are_fetched_once_then_cached(deliver, verifying, tmp_path):
    before = verifying.fetches
    for index in range(3):
        deliver(make_task("tests.project.tasks.append", str(tmp_path / "ran"), str(index)))
    assert verifying.fetches - before == 1
    assert (tmp_path / "ran").read_text() == "012"


def test_allowed_emails_replace_the_service_account(deliver, configure, signing_key, traced_task):
    configure(allowed_emails=["other@test-project.iam.gserviceaccount.com"])
    assert deliver(traced_task).status_code == 403
    other = signing_key.token(email="other@test-project.iam.gserviceaccount.com")
    assert deliver(traced_task, token=other).status_code == 200


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens google-auth checked the signature of, in order."""
    from google.oauth2 import id_token

    checked: list[str] = []
    verify = id_token.verify_token

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        checked.append(token)
        return verify(token, *args, **kwargs)

    monkeypatch.setattr(id_token, "verify_token", counting)
    return checked


def test_a_token_sent_again_is_not_checked_again(deliver, signing_key, signature_checks):
    token = signing_key.token()
    for _ in range(3):
        assert deliver(make_task("math.floor", 1.5), token=token).status_code == 200
    assert signature_checks == [token]


def test_a_token_sent_again_is_still_refused_for_an_account_not_allowed(
    deliver, signing_key, configure, traced_task
):
    token = signing_key.token()
    assert deliver(make_task("math.floor", 1.5), token=token).status_code == 200
    configure(allowed_emails=["someone-else@example.iam.gserviceaccount.com"])
    assert deliver(traced_task, token=token).status_code == 403
    assert not ran(traced_task)


def test_a_remembered_token_is_refused_once_it_expires(
    deliver, signing_key, configure, traced_task
):
    configure(clock_skew=0)
    now = int(time.time())
    token = signing_key.token(iat=now, exp=now + 2)
    assert deliver(make_task("math.floor", 1.5), token=token).status_code == 200
    time.sleep(now + 3.1 - time.time())  # google-auth compares whole seconds
    response = deliver(traced_task, token=token)
    assert response.status_code == 401, response.content
    assert not ran(traced_task)


def test_new_certificates_mean_a_new_check(deliver, signing_key, signature_checks):
    from django_q_cloudtasks.receiver.auth import certificates

    token = signing_key.token()
    assert deliver(make_task("math.floor", 1.5), token=token).status_code == 200
    certificates.clear()  # as when their max-age ran out, or a key id was unknown
    assert deliver(make_task("math.floor", 1.5), token=token).status_code == 200
    assert signature_checks == [token, token]


# The certificate endpoint in trouble


@pytest.fixture
def own_certs_server(configure, signing_key):
    """A certificate endpoint of this test's own, which the test may take down."""
    from django_q_cloudtasks.receiver.auth import certificates

    server = CertsServer([signing_key]).start()
    configure(certs_url=server.url, verify_token=True)
    certificates.clear()
    yield server
    server.stop()


def test_an_unknown_key_id_while_the_endpoint_is_down_keeps_the_certificates(
    deliver, own_certs_server, traced_task, monkeypatch
):
    """A caller with no token of its own sends a made-up key id while Google's endpoint is
    unreachable: it is refused, and valid deliveries still verify against the cache."""
    from django_q_cloudtasks.receiver import auth

    assert deliver(make_task("math.floor", 1.5)).status_code == 200  # certificates cached
    monkeypatch.setattr(auth, "MIN_REFRESH_INTERVAL", 0.0)  # the refresh is due
    own_certs_server.stop()
    stranger = SigningKey.generate("unknown-kid").token()
    assert deliver(make_task("math.floor", 1.5), token=stranger).status_code == 401
    response = deliver(traced_task)
    assert response.status_code == 200, response.content
    assert ran(traced_task)


def test_expired_certificates_keep_serving_while_the_endpoint_fails(
    deliver, own_certs_server, traced_task
):
    own_certs_server.max_age = 0  # every verification asks for a fresh document
    assert deliver(make_task("math.floor", 1.5)).status_code == 200
    own_certs_server.status = 503
    fetches = own_certs_server.fetches
    for _ in range(3):
        response = deliver(make_task("math.floor", 1.5))
        assert response.status_code == 200, response.content
    assert own_certs_server.fetches == fetches + 1  # the failure is remembered a while
    own_certs_server.status = 200
    assert deliver(traced_task).status_code == 200


def test_a_page_that_is_not_certificates_does_not_replace_them(deliver, own_certs_server):
    own_certs_server.max_age = 0
    assert deliver(make_task("math.floor", 1.5)).status_code == 200
    own_certs_server.body = b"<html>Sign in to the hotel Wi-Fi</html>"
    response = deliver(make_task("math.floor", 1.5))
    assert response.status_code == 200, response.content


def test_no_certificates_at_all_is_a_500_to_retry_not_a_refusal(deliver, own_certs_server, caplog):
    own_certs_server.status = 503
    response = deliver(make_task("math.floor", 1.5))
    assert response.status_code == 500
    assert "certificates could not be fetched" in response.json()["error"]
    (line,) = logged_by_the_package_alone(caplog, logging.ERROR)
    assert line.getMessage().startswith("Cannot verify calls to /_tasks/: ")


# What a caller sends never reaches the log as it came


def test_a_token_header_with_a_newline_writes_no_line_of_its_own(
    deliver, signing_key, traced_task, caplog
):
    forged_line = "\nCRITICAL django_q_cloudtasks: all tasks deleted"
    token = forged_token({"alg": "RS256" + forged_line, "kid": signing_key.kid}, valid_claims())
    response = deliver(traced_task, token=token)
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid token."}
    (refusal,) = [r for r in caplog.records if r.getMessage().startswith("Refused a call")]
    message = refusal.getMessage()
    assert "\n" not in message
    assert "\\nCRITICAL" in message  # there, escaped
    assert not ran(traced_task)


def test_a_long_detail_is_cut_short(deliver, traced_task, caplog):
    token = forged_token({"alg": "x" * 10_000, "kid": "k"}, valid_claims())
    assert deliver(traced_task, token=token).status_code == 401
    (refusal,) = [r for r in caplog.records if r.getMessage().startswith("Refused a call")]
    assert len(refusal.getMessage()) < 500


# App Engine: its tasks carry no token, and App Engine vouches for them.

APP_ENGINE_HEADERS = {"X-AppEngine-QueueName": "worker", "X-AppEngine-TaskName": "t1"}


@pytest.fixture
def app_engine_cluster(configure: Any) -> None:
    """The App Engine cluster "worker", whose queue is "worker"."""
    worker = {"timeout": 60, "cloud_tasks": {"target": "app_engine", "service": "worker"}}
    configure(q_cluster={"ALT_CLUSTERS": {"worker": worker}})


@pytest.fixture
def on_app_engine(app_engine_instance: Any, app_engine_cluster: None) -> None:
    """This process is an App Engine instance: its runtime's variables are set."""
    app_engine_instance("worker")


def test_on_app_engine_a_task_of_an_app_engine_queue_needs_no_token(
    deliver, traced_task, on_app_engine
):
    traced_task["cluster"] = "worker"
    response = deliver(traced_task, token=None, headers=APP_ENGINE_HEADERS)
    assert response.status_code == 200, response.content
    assert ran(traced_task)


def test_off_app_engine_its_headers_count_for_nothing(deliver, traced_task, app_engine_cluster):
    traced_task["cluster"] = "worker"
    response = deliver(traced_task, token=None, headers=APP_ENGINE_HEADERS)
    assert (response.status_code, response.json()) == (401, {"error": "No bearer token."})
    assert not ran(traced_task)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-AppEngine-QueueName": "worker"},  # no task name
        {"X-AppEngine-TaskName": "t1"},  # no queue
        {"X-AppEngine-QueueName": "worker\n", "X-AppEngine-TaskName": "t1"},
        {"X-AppEngine-QueueName": "", "X-AppEngine-TaskName": "t1"},
    ],
    ids=["no-task-name", "no-queue", "mangled-queue", "empty-queue"],
)
def test_on_app_engine_without_the_headers_of_an_app_engine_task_a_token_is_needed(
    deliver, traced_task, on_app_engine, headers
):
    traced_task["cluster"] = "worker"
    response = deliver(traced_task, token=None, headers=headers)
    assert response.status_code == 401
    assert not ran(traced_task)


def test_on_app_engine_a_task_with_a_token_still_runs(deliver, traced_task, on_app_engine):
    response = deliver(traced_task)  # the main cluster's HTTP task, with its token
    assert response.status_code == 200, response.content
    assert ran(traced_task)


@pytest.mark.parametrize(
    ("cluster", "queue"),
    [
        ("tests", "tests"),  # an HTTP cluster's task, as if App Engine delivered it
        (None, "worker"),  # the main cluster's package, through the App Engine queue
        ("worker", "other-queue"),  # the App Engine cluster's, through another queue
    ],
)
def test_on_app_engine_a_task_from_a_queue_its_cluster_does_not_send_to_never_runs(
    deliver, traced_task, on_app_engine, cluster, queue
):
    from tests.conftest import assert_rejected

    traced_task["cluster"] = cluster
    headers = {"X-AppEngine-QueueName": queue, "X-AppEngine-TaskName": "t1"}
    letter = assert_rejected(
        deliver(traced_task, token=None, headers=headers),
        f"came as an App Engine task of queue {queue!r}, where its cluster does not send",
    )
    assert letter.queue == queue
    assert not ran(traced_task)


def test_on_app_engine_the_tick_still_needs_a_token(client, on_app_engine):
    response = client.post("/_tasks/tick/", headers=APP_ENGINE_HEADERS)
    assert (response.status_code, response.json()) == (401, {"error": "No bearer token."})


def test_on_app_engine_a_body_not_signed_by_the_project_is_never_unpickled(
    deliver, on_app_engine, tmp_path
):
    from tests.conftest import assert_rejected
    from tests.project.tasks import LeavesATrace
    from tests.support.packages import signed_with

    trace = tmp_path / "unpickled"
    forged = signed_with("not-the-project-key", make_task("math.floor", LeavesATrace(str(trace))))
    response = deliver(forged, token=None, headers=APP_ENGINE_HEADERS)
    assert_rejected(response, "signature")
    assert not trace.exists()
