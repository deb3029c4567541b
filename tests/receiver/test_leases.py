"""Claims of running tasks: renewed while the task runs, left to run out when it dies."""

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from django_q_cloudtasks.models import Claim, Receipt
from django_q_cloudtasks.receiver import leases
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fast_renewals(monkeypatch):
    monkeypatch.setattr(leases, "RENEW_EVERY", 0.05)
    monkeypatch.setattr(leases, "CHECK_EVERY", 0.05)


def lease_left(task_id: str) -> timedelta:
    return Receipt.objects.get(task_id=task_id).lease_until - timezone.now()


def test_a_running_task_keeps_its_claim_past_the_first_lease(fast_renewals):
    keeper = leases.LeaseKeeper()
    Receipt.objects.claim("t1", "tests", "me", timedelta(seconds=1))
    with keeper.holding("t1", "me", until=timezone.now() + timedelta(minutes=5)):
        wait_for(lambda: lease_left("t1") > timedelta(seconds=25), timeout=10)
        threading.Event().wait(1.2)  # past the first lease of 1 s, still held
        assert Receipt.objects.claim("t1", "tests", "another", leases.LEASE) is Claim.BUSY


def test_renewals_stop_when_the_task_ends(fast_renewals):
    keeper = leases.LeaseKeeper()
    Receipt.objects.claim("t1", "tests", "me", timedelta(seconds=1))
    with keeper.holding("t1", "me", until=timezone.now() + timedelta(minutes=5)):
        pass
    threading.Event().wait(0.3)
    assert lease_left("t1") < timedelta(seconds=1)


def test_renewals_stop_at_the_dispatch_deadline(fast_renewals):
    keeper = leases.LeaseKeeper()
    Receipt.objects.claim("t1", "tests", "me", timedelta(seconds=1))
    with keeper.holding("t1", "me", until=timezone.now()):
        threading.Event().wait(0.3)
        assert lease_left("t1") < timedelta(seconds=1)


def test_a_claim_whose_lease_ran_out_is_taken_over_with_a_new_holder():
    Receipt.objects.claim("t1", "tests", "dead", timedelta(seconds=-1))
    assert Receipt.objects.claim("t1", "tests", "next", leases.LEASE) is Claim.RESUMED
    assert Receipt.objects.get(task_id="t1").holder == "next"


def test_a_delivery_that_lost_its_claim_cannot_release_or_finish_it():
    Receipt.objects.claim("t1", "tests", "stalled", timedelta(seconds=-1))
    Receipt.objects.claim("t1", "tests", "next", leases.LEASE)
    Receipt.objects.release("t1", "stalled")
    Receipt.objects.finish("t1", "stalled")
    assert Receipt.objects.get(task_id="t1").state == Receipt.State.RUNNING
    assert Receipt.objects.renew({"t1": "stalled"}, leases.LEASE) == 0


def test_a_failed_renewal_is_logged_and_retried(fast_renewals, monkeypatch, caplog):
    keeper = leases.LeaseKeeper()
    Receipt.objects.claim("t1", "tests", "me", timedelta(seconds=1))
    calls = []
    real_renew = Receipt.objects.renew

    def flaky_renew(holders, lease):
        calls.append(holders)
        if len(calls) == 1:
            raise ConnectionError("database gone")
        return real_renew(holders, lease)

    monkeypatch.setattr(Receipt.objects, "renew", flaky_renew)
    with keeper.holding("t1", "me", until=timezone.now() + timedelta(minutes=5)):
        threading.Event().wait(0.4)
    assert len(calls) >= 2
    assert "database gone" in caplog.text
    assert lease_left("t1") > timedelta(seconds=25)


def test_a_cancellation_is_learnt_within_a_check_and_told_once(fast_renewals):
    keeper = leases.LeaseKeeper()
    Receipt.objects.claim("t1", "tests", "me", leases.LEASE)
    told = []
    with keeper.holding(
        "t1", "me", until=timezone.now() + timedelta(minutes=5), on_cancel=lambda: told.append(1)
    ):
        threading.Event().wait(0.2)
        assert not keeper.is_cancelled("t1")
        Receipt.objects.request_cancel("t1", "tests")
        wait_for(lambda: keeper.is_cancelled("t1"), timeout=5)
        threading.Event().wait(0.3)  # more checks: still told only once
    assert told == [1]
    assert not keeper.is_cancelled("t1")  # no longer held here
