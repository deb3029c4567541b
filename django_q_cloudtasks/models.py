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
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

from django.db import IntegrityError, connections, models, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Case, F, Q, Value, When
from django.db.models.signals import post_save, pre_save
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
        if _insert_unless_exists(
            Receipt(
                task_id=task_id,
                cluster=cluster,
                state=Receipt.State.RUNNING,
                holder=holder,
                lease_until=now + lease,
                claimed=now,
                updated=now,
            )
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
                    Receipt(
                        task_id=task_id,
                        cluster=cluster,
                        state=Receipt.State.DONE,
                        holder="",
                        lease_until=now,
                        cancelled=now,
                        updated=now,
                    )
                ):
                    return Found.NOTHING, None
            elif receipt.state == Receipt.State.DONE:
                return Found.FINISHED, receipt
            elif receipt.state == Receipt.State.RUNNING and receipt.cancelled is not None:
                return Found.RUNNING, receipt
            # Else a delivery claimed or released it between two statements: again.

    def finish_with(self, row: models.Model, holder: str) -> bool:
        """Insert ``row``, the first result of the task ``holder`` runs, and finish the
        task's receipt: one statement and one round trip on PostgreSQL, where most of a
        statement's cost is its round trip. False, and the receipt left as it was, if the
        row's key is taken. The row's pre_save and post_save signals are sent as its save()
        sends them, post_save once it is committed."""
        return _insert_and_finish(row, holder)

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


def create_unless_exists(row: models.Model) -> bool:
    """Save a new row through its model (its signals fire); False if its key is taken."""
    using = router.db_for_write(type(row), instance=row)
    # Outside a transaction the INSERT commits on its own, in one round trip; inside one, a
    # savepoint keeps a duplicate's IntegrityError from breaking it.
    inside = transaction.get_connection(using).in_atomic_block
    try:
        with transaction.atomic(using=using) if inside else contextlib.nullcontext():
            row.save(force_insert=True, using=using)
    except IntegrityError:
        return False
    return True


# The statements run for every task, as text written once per database vendor: the ORM
# compiles each anew, at a cost near the round trip's. PostgreSQL and SQLite say in the
# INSERT's row count whether the key was taken, with no savepoint needed to keep a
# duplicate from breaking a transaction; other databases go through the ORM.
_FAST_VENDORS = ("postgresql", "sqlite")
_STATEMENTS: dict[tuple[str, str], str] = {}


def _insert_unless_exists(receipt: Receipt) -> bool:
    """Insert a receipt; False if its task has one."""
    connection = connections[router.db_for_write(Receipt)]
    if connection.vendor not in _FAST_VENDORS:
        return create_unless_exists(receipt)
    with connection.cursor() as cursor:
        cursor.execute(_insert_statement(connection, Receipt), _values(receipt, connection))
        return bool(cursor.rowcount == 1)


def _insert_and_finish(row: models.Model, holder: str) -> bool:
    """``ReceiptManager.finish_with``'s statements, with the row's save signals."""
    using = router.db_for_write(type(row), instance=row)
    connection = connections[using]
    if connection.vendor not in _FAST_VENDORS or using != router.db_for_write(Receipt):
        if not create_unless_exists(row):
            return False
        Receipt.objects.finish(row.pk, holder)
        return True
    pre_save.send(sender=type(row), instance=row, raw=False, using=using, update_fields=None)
    finish = _statement(
        connection,
        "finish",
        lambda quote: "UPDATE {} SET {} = %s, {} = %s WHERE {} = %s AND {} = %s".format(
            *map(quote, (Receipt._meta.db_table, "state", "updated", "task_id", "holder"))
        ),
    )
    finish_values = [
        Receipt.State.DONE,
        Receipt._meta.get_field("updated").get_db_prep_save(timezone.now(), connection),
        row.pk,
        holder,
    ]
    insert, values = _insert_statement(connection, type(row)), _values(row, connection)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One round trip: the receipt is finished only if the row went in.
            cursor.execute(
                f"WITH inserted AS ({insert} RETURNING 1), finished AS ({finish} AND EXISTS "
                "(SELECT 1 FROM inserted)) SELECT EXISTS (SELECT 1 FROM inserted)",
                [*values, *finish_values],
            )
            inserted = bool(cursor.fetchone()[0])
        else:
            cursor.execute(insert, values)
            inserted = cursor.rowcount == 1
            if inserted:
                cursor.execute(finish, finish_values)
    if not inserted:
        return False
    row._state.adding, row._state.db = False, using
    post_save.send(
        sender=type(row), instance=row, created=True, raw=False, using=using, update_fields=None
    )
    return True


def _statement(
    connection: BaseDatabaseWrapper, name: str, write: Callable[[Callable[[str], str]], str]
) -> str:
    """The statement ``name`` for the connection's vendor, written with its quote_name."""
    key = (connection.vendor, name)
    if key not in _STATEMENTS:
        _STATEMENTS[key] = write(connection.ops.quote_name)
    return _STATEMENTS[key]


def _insert_statement(connection: BaseDatabaseWrapper, model: type[models.Model]) -> str:
    """An INSERT of every column of ``model`` that skips a row whose key is taken."""
    fields = model._meta.concrete_fields
    return _statement(
        connection,
        f"insert {model._meta.label}",
        lambda quote: "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO NOTHING".format(
            quote(model._meta.db_table),
            ", ".join(quote(cast(str, field.column)) for field in fields),
            ", ".join(["%s"] * len(fields)),
            quote(cast(str, model._meta.pk.column)),
        ),
    )


def _values(row: models.Model, connection: BaseDatabaseWrapper) -> list[Any]:
    """The row's values for ``_insert_statement``, as its save() would write them."""
    return [
        field.get_db_prep_save(field.pre_save(row, add=True), connection)
        for field in row._meta.concrete_fields
    ]


def prune() -> int:
    """Delete receipts of tasks finished, and payloads stored, longer ago than Cloud Tasks
    keeps a task; returns how many rows went."""
    expired = timezone.now() - RETENTION
    receipts, _ = Receipt.objects.filter(state=Receipt.State.DONE, updated__lt=expired).delete()
    payloads, _ = Payload.objects.filter(created__lt=expired).delete()
    return receipts + payloads
