"""Receipts: a claim taken once, and a first result saved with its receipt's finish."""

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models.signals import post_save, pre_save
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import Success, Task

from django_q_cloudtasks.models import Claim, Receipt

pytestmark = pytest.mark.django_db(transaction=True)

LEASE = timedelta(minutes=1)


def result_row(task_id: str, *, success: bool = True) -> Task:
    now = timezone.now()
    return Task(
        id=task_id,
        name="a-name",
        func="math.floor",
        args=(1.5,),
        kwargs={"k": [1, 2]},
        started=now,
        stopped=now,
        result=1,
        success=success,
        attempt_count=1,
    )


@pytest.fixture
def saves_seen() -> Any:
    """(signal, created, whether the row was committed then) for each save signal of a Task."""
    seen: list[tuple[str, bool | None, bool]] = []

    def note(signal: str) -> Any:
        def receiver(sender: Any, instance: Task, **kwargs: Any) -> None:
            committed = Task.objects.filter(id=instance.id).exists()
            seen.append((signal, kwargs.get("created"), committed))

        return receiver

    on_pre, on_post = note("pre_save"), note("post_save")
    pre_save.connect(on_pre, sender=Task, weak=False)
    post_save.connect(on_post, sender=Task, weak=False)
    yield seen
    pre_save.disconnect(on_pre, sender=Task)
    post_save.disconnect(on_post, sender=Task)


def test_a_task_is_claimed_once_in_one_insert():
    with CaptureQueriesContext(connection) as queries:
        assert Receipt.objects.claim("t1", "tests", "me", LEASE) is Claim.RUN
    assert [query["sql"].split()[0] for query in queries] == ["INSERT"]
    assert Receipt.objects.claim("t1", "tests", "another", LEASE) is Claim.BUSY
    receipt = Receipt.objects.get(task_id="t1")
    assert (receipt.holder, receipt.state, receipt.deliveries, receipt.lost) == (
        "me",
        Receipt.State.RUNNING,
        1,
        0,
    )
    assert receipt.claimed is not None
    assert timedelta(seconds=50) < receipt.lease_until - timezone.now() <= LEASE


def test_a_claim_taken_inside_a_transaction_leaves_it_usable():
    with transaction.atomic():
        assert Receipt.objects.claim("t1", "tests", "me", LEASE) is Claim.RUN
        assert Receipt.objects.claim("t1", "tests", "another", LEASE) is Claim.BUSY
        assert Receipt.objects.count() == 1  # the duplicate did not break the transaction


def test_a_first_result_is_saved_with_its_receipts_finish(saves_seen):
    Receipt.objects.claim("t1", "tests", "me", LEASE)
    assert Receipt.objects.finish_with(result_row("t1"), "me") is True
    saved = Success.objects.get(id="t1")
    assert (saved.args, saved.kwargs, saved.result, saved.attempt_count) == (
        (1.5,),
        {"k": [1, 2]},
        1,
        1,
    )
    assert Receipt.objects.get(task_id="t1").state == Receipt.State.DONE
    # As save() sends them, post_save once the row can be read from another transaction.
    assert saves_seen == [("pre_save", None, False), ("post_save", True, True)]


def test_a_first_result_does_not_finish_a_claim_another_delivery_took_over():
    Receipt.objects.claim("t1", "tests", "me", LEASE)
    assert Receipt.objects.finish_with(result_row("t1"), "a-stalled-delivery") is True
    assert Task.objects.filter(id="t1").exists()
    assert Receipt.objects.get(task_id="t1").state == Receipt.State.RUNNING


def test_a_row_already_there_is_left_with_the_receipt_and_no_save_signal(saves_seen):
    Receipt.objects.claim("t1", "tests", "me", LEASE)
    result_row("t1", success=False).save()
    saves_seen.clear()
    assert Receipt.objects.finish_with(result_row("t1"), "me") is False
    assert Task.objects.get(id="t1").success is False
    assert Receipt.objects.get(task_id="t1").state == Receipt.State.RUNNING
    assert [signal for signal, _, _ in saves_seen] == ["pre_save"]
