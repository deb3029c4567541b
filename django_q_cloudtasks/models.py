"""Receipts: which django-q tasks a receiver has taken, so that none runs twice;
payloads: packages too big for a Cloud Task, waiting for their delivery (``payloads.py``);
dead letters: deliveries that could not run, kept so that none vanishes unseen.

Cloud Tasks delivers at least once: the same task can arrive again after it succeeded,
or twice at the same moment. Before running a task the receiver claims its receipt; the
database's primary key makes that claim atomic across processes and machines. Each claim
has its own ``holder`` token: only the delivery holding the claim may renew, finish or
release it, so a delivery that stalled past its lease cannot undo the work of the one
that took over. A task of a job cluster is claimed by the receiver for the Cloud Run job
execution it starts, which adopts the claim (``execution``).

A receipt also carries what happens to the task from outside: ``cancelled``, when
``cancel()`` asked for it to stop, and ``lost``, the runs that ended without an outcome
because the process running them died.
"""

from __future__ import annotations

import contextlib
import enum
import random
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, models, router, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

# Cloud Tasks keeps a task at most 31 days: no delivery of an older one can arrive.
RETENTION = timedelta(days=32)
# Each finished task deletes expired receipts and payloads with this probability.
PRUNE_PROBABILITY = 0.002


class Claim(enum.Enum):
    """What a receiver may do with a task it has just been handed."""

    RUN = "run"  # no one else runs it: go ahead
    RESUMED = "resumed"  # an earlier delivery failed or died: run it, unless its result was saved
    DONE = "done"  # it already finished: answer 2xx and run nothing
    BUSY = "busy"  # another delivery is running it now: ask Cloud Tasks to come back later


class Found(enum.Enum):
    """What a task was doing when ``cancel()`` marked its receipt."""

    NOTHING = "nothing"  # no delivery had claimed it: waiting, on its way, or no task
    WAITING = "waiting"  # it failed, and waited for a retry
    RUNNING = "running"  # a delivery or a job execution holds its claim
    FINISHED = "finished"


class ReceiptManager(models.Manager["Receipt"]):
    def claim(self, task_id: str, cluster: str, holder: str, lease: timedelta) -> Claim:
        now = timezone.now()
        if create_unless_exists(
            self,
            task_id=task_id,
            cluster=cluster,
            state=Receipt.State.RUNNING,
            holder=holder,
            lease_until=now + lease,
            claimed=now,
            updated=now,
        ):
            return Claim.RUN
        # A failed delivery leaves RETRY; a dead one leaves RUNNING with its lease run out,
        # and a run lost.
        resumed = (
            self.filter(task_id=task_id)
            .filter(
                Q(state=Receipt.State.RETRY) | Q(state=Receipt.State.RUNNING, lease_until__lt=now)
            )
            .update(
                state=Receipt.State.RUNNING,
                holder=holder,
                lease_until=now + lease,
                deliveries=F("deliveries") + 1,
                lost=F("lost")
                + Case(When(state=Receipt.State.RUNNING, then=Value(1)), default=Value(0)),
                execution="",
                claimed=now,
                updated=now,
            )
        )
        if resumed:
            return Claim.RESUMED
        state = self.filter(task_id=task_id).values_list("state", flat=True).first()
        return Claim.DONE if state == Receipt.State.DONE else Claim.BUSY

    def adopt(
        self, task_id: str, holder: str, execution: str, lease: timedelta, *, retried: bool
    ) -> bool:
        """Take over, for a job execution, the claim the receiver took when it started it.

        Only one execution adopts a claim: a second one started for the same claim (a
        RunJob answer lost and retried) finds it adopted and runs nothing. ``retried``: this
        is a later attempt of the same execution (Cloud Run retries an attempt that died),
        so the earlier attempt's run was lost.
        """
        now = timezone.now()
        return bool(
            self.filter(task_id=task_id, holder=holder, state=Receipt.State.RUNNING)
            .filter(Q(execution="") | Q(execution=execution))
            .update(
                execution=execution,
                lease_until=now + lease,
                lost=F("lost") + (1 if retried else 0),
                updated=now,
            )
        )

    def let_go(self, task_id: str, holder: str) -> None:
        """End the lease of ``holder``'s claim now: the job execution it was taken for ended
        without a word, as Cloud Run says."""
        self.filter(task_id=task_id, holder=holder, state=Receipt.State.RUNNING).update(
            lease_until=timezone.now() - timedelta(microseconds=1)
        )

    def note_execution(self, task_id: str, holder: str, execution: str) -> None:
        """Record the execution started for a claim, unless it adopted the claim already."""
        self.filter(task_id=task_id, holder=holder, execution="").update(execution=execution)

    def renew(self, holders: dict[str, str], lease: timedelta) -> int:
        """Extend the leases of claims still held (task id -> holder); returns how many."""
        now = timezone.now()
        return self.filter(task_id__in=holders, holder__in=holders.values()).update(
            lease_until=now + lease, updated=now
        )

    def cancelled_among(self, task_ids: list[str]) -> set[str]:
        """The tasks of ``task_ids`` that ``cancel()`` asked to stop."""
        found = self.filter(task_id__in=task_ids, cancelled__isnull=False)
        return set(found.values_list("task_id", flat=True))

    def request_cancel(self, task_id: str, cluster: str) -> tuple[Found, Receipt | None]:
        """Mark a task cancelled; returns what it was doing, and its receipt now.

        A task with no receipt gets a finished one, so that no delivery runs it; one
        waiting for a retry is finished, so that none runs it again; one running is only
        marked, and whoever runs it stops it. What the task was doing comes from the
        statements that changed it, not from a read before them: a claim taken meanwhile
        is seen, and marked.
        """
        now = timezone.now()
        while True:
            waiting = self.filter(task_id=task_id, state=Receipt.State.RETRY)
            if waiting.update(state=Receipt.State.DONE, cancelled=now, updated=now):
                return Found.WAITING, self.get(task_id=task_id)
            self.filter(
                task_id=task_id, state=Receipt.State.RUNNING, cancelled__isnull=True
            ).update(cancelled=now, updated=now)
            receipt = self.filter(task_id=task_id).first()
            if receipt is None:
                # A finished, cancelled receipt, unless a delivery claims it first.
                if create_unless_exists(
                    self,
                    task_id=task_id,
                    cluster=cluster,
                    state=Receipt.State.DONE,
                    holder="",
                    lease_until=now,
                    cancelled=now,
                    updated=now,
                ):
                    return Found.NOTHING, None
            elif receipt.state == Receipt.State.DONE:
                return Found.FINISHED, receipt
            elif receipt.state == Receipt.State.RUNNING and receipt.cancelled is not None:
                return Found.RUNNING, receipt
            # Else a delivery claimed or released it between two statements: again.

    def finish(self, task_id: str, holder: str) -> None:
        self.filter(task_id=task_id, holder=holder).update(
            state=Receipt.State.DONE, updated=timezone.now()
        )
        if random.random() < PRUNE_PROBABILITY:
            prune()

    def release(self, task_id: str, holder: str, *, lost: bool = False) -> None:
        """Let the next delivery of this task run it again; ``lost``: this run ended without
        an outcome, and counts as an attempt."""
        self.filter(task_id=task_id, holder=holder).update(
            state=Receipt.State.RETRY, lost=F("lost") + (1 if lost else 0), updated=timezone.now()
        )


class Receipt(models.Model):
    class State(models.TextChoices):
        RUNNING = "running"
        RETRY = "retry"
        DONE = "done"

    task_id = models.CharField(primary_key=True, max_length=100)
    cluster = models.CharField(max_length=100)
    state = models.CharField(max_length=10, choices=State.choices)
    holder = models.CharField(max_length=32)
    lease_until = models.DateTimeField()
    deliveries = models.PositiveIntegerField(default=1)
    # When the holder took the claim: with ``updated`` of a done receipt, the run time of
    # the delivery that finished the task. None for receipts from before it was recorded.
    claimed = models.DateTimeField(null=True)
    updated = models.DateTimeField(db_index=True)
    # The Cloud Run job execution holding the claim (its resource name), for a job cluster.
    execution = models.CharField(max_length=500, blank=True, default="")
    cancelled = models.DateTimeField(null=True)  # when cancel() asked for the task to stop
    lost = models.PositiveIntegerField(default=0)  # runs whose process died without an outcome

    objects = ReceiptManager()

    class Meta:
        verbose_name = "task receipt"

    def __str__(self) -> str:
        return f"{self.task_id} ({self.state})"


class Payload(models.Model):
    task_id = models.CharField(primary_key=True, max_length=100)
    package = models.TextField()  # a signed django-q package: ASCII
    created = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "task payload"

    def __str__(self) -> str:
        return f"{self.task_id} ({len(self.package):,} bytes)"


class DeadLetter(models.Model):
    """An authenticated delivery whose body this project cannot run: signed with a key it
    no longer has, naming code still missing after many deliveries, or not a task at all.
    Answered 2xx so that Cloud Tasks stops retrying; replayed once the cause is fixed
    (``receiver/deadletters.py``). A by-reference delivery keeps its package itself."""

    received = models.DateTimeField(db_index=True)
    path = models.CharField(max_length=200)
    queue = models.CharField(max_length=500, blank=True)
    cloud_task = models.CharField(max_length=500, blank=True)
    reason = models.TextField()
    content_type = models.CharField(max_length=200, blank=True)
    body = models.BinaryField()

    class Meta:
        verbose_name = "dead letter"

    def __str__(self) -> str:
        return f"{self.cloud_task or self.pk}: {self.reason}"


def create_unless_exists(manager: models.Manager[Any], **fields: Any) -> bool:
    """Create a row through its model (its signals fire); False if its key is taken."""
    using = router.db_for_write(manager.model)
    # Outside a transaction the INSERT commits on its own, in one round trip; inside one, a
    # savepoint keeps a duplicate's IntegrityError from breaking it.
    inside = transaction.get_connection(using).in_atomic_block
    try:
        with transaction.atomic(using=using) if inside else contextlib.nullcontext():
            manager.create(**fields)
    except IntegrityError:
        return False
    return True


def prune() -> int:
    """Delete receipts of tasks finished, and payloads stored, longer ago than Cloud Tasks
    keeps a task; returns how many rows went."""
    expired = timezone.now() - RETENTION
    receipts, _ = Receipt.objects.filter(state=Receipt.State.DONE, updated__lt=expired).delete()
    payloads, _ = Payload.objects.filter(created__lt=expired).delete()
    return receipts + payloads
