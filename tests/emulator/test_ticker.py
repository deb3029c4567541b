"""The emulator's stand-in for the Cloud Scheduler job: the tick, called on the clock."""

from __future__ import annotations

import time

from django.test import RequestFactory

from django_q_cloudtasks.conf import receiver_settings
from django_q_cloudtasks.emulator.ticker import Ticker
from django_q_cloudtasks.receiver.auth import authenticate, certificates
from tests.conftest import wait_for
from tests.support.ports import free_port

EMAIL = "tasks@test-project.iam.gserviceaccount.com"
AUDIENCE = "http://127.0.0.1:8000"


def ticker_for(emulator, target, every: float = 60) -> Ticker:
    return Ticker(emulator.identity, target.url, audience=AUDIENCE, email=EMAIL, every=every)


def test_a_tick_posts_with_a_token_the_receiver_accepts(emulator, target, configure):
    configure(emulator_host=emulator.address, url=f"{AUDIENCE}/_tasks/")
    certificates.clear()
    assert ticker_for(emulator, target).call() == 200
    (delivery,) = target.deliveries
    assert (delivery.method, delivery.header("User-Agent")) == ("POST", "Google-Cloud-Scheduler")
    request = RequestFactory().post(
        "/_tasks/tick/", HTTP_AUTHORIZATION=delivery.header("Authorization")
    )
    assert authenticate(request, receiver_settings()).claims["email"] == EMAIL


def test_ticks_come_on_the_clock_until_stopped(emulator, target):
    ticker = ticker_for(emulator, target, every=1).start()
    wait_for(lambda: len(target.deliveries) >= 2, timeout=5)
    ticker.stop()
    count = len(target.deliveries)
    assert all(delivery.received % 1 < 0.3 for delivery in target.deliveries)
    time.sleep(1.5)
    assert len(target.deliveries) == count


def test_an_unreachable_server_is_reported_not_raised(emulator):
    ticker = Ticker(
        emulator.identity,
        f"http://127.0.0.1:{free_port()}/_tasks/tick/",
        audience=AUDIENCE,
        email=EMAIL,
        every=60,
    )
    assert ticker.call() is None


def test_an_error_answer_is_returned(emulator, target):
    target.answer(500)
    assert ticker_for(emulator, target).call() == 500
