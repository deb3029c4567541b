"""ID tokens from the emulator pass the receiver's real verification (google-auth), with
the issuer and certificates that emulator mode points the receiver at by itself."""

from __future__ import annotations

import json
import urllib.request

import pytest
from django.test import RequestFactory

from django_q_cloudtasks.conf import receiver_settings
from django_q_cloudtasks.emulator import Emulator
from django_q_cloudtasks.receiver.auth import AuthenticationFailed, authenticate, certificates
from tests.conftest import wait_for
from tests.support.ports import free_port_pair

EMAIL = "tasks@test-project.iam.gserviceaccount.com"


@pytest.fixture
def emulator_mode(configure, emulator):
    configure(emulator_host=emulator.address, url="http://127.0.0.1:8000/_tasks/")
    certificates.clear()
    return receiver_settings()


def _delivered_token(create, target, audience="http://127.0.0.1:8000"):
    create(
        "signed",
        http_request={"oidc_token": {"service_account_email": EMAIL, "audience": audience}},
    )
    delivery = wait_for(lambda: target.deliveries and target.deliveries[0])
    return delivery.header("Authorization")


def _request(authorization):
    return RequestFactory().post("/_tasks/", HTTP_AUTHORIZATION=authorization)


def test_emulator_mode_verifies_tokens_against_the_emulator(emulator, emulator_mode):
    assert emulator_mode.verify_token is True
    assert emulator_mode.certs_url == emulator.certs_url
    assert emulator_mode.issuers == (emulator.issuer,)


def test_a_delivered_token_is_accepted_by_the_receiver(emulator_mode, create, target):
    claims = authenticate(_request(_delivered_token(create, target)), emulator_mode).claims
    assert claims["email"] == EMAIL
    assert claims["aud"] == "http://127.0.0.1:8000"


def test_a_token_for_another_audience_is_refused(emulator_mode, create, target):
    token = _delivered_token(create, target, audience="https://elsewhere.example.com")
    with pytest.raises(AuthenticationFailed):
        authenticate(_request(token), emulator_mode)


def test_a_token_from_another_emulator_is_refused(emulator_mode):
    with Emulator(port=free_port_pair()) as stranger:
        token = stranger.identity.token(EMAIL, "http://127.0.0.1:8000")
    with pytest.raises(AuthenticationFailed):
        authenticate(_request(f"Bearer {token}"), emulator_mode)


def test_the_certificates_are_served_with_a_cache_lifetime(emulator):
    with urllib.request.urlopen(emulator.certs_url, timeout=5) as response:
        assert response.headers["Cache-Control"] == "public, max-age=3600"
        published = json.load(response)
    assert published == {emulator.identity.kid: emulator.identity.certificate_pem}
