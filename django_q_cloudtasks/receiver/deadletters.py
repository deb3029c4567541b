"""Dead letters: deliveries that could not run, kept so that none vanishes unseen, and
replayed once their cause is fixed.

A delivery is rejected when its body is nothing this project can run: signed with a key
it no longer has, naming code still missing after ``MISSING_CODE_RETRIES`` deliveries, not
a task at all. The view keeps it with :func:`keep` and answers 2xx, so that Cloud Tasks
stops retrying what retrying cannot mend. A by-reference delivery is kept with its
package itself, which outlives the ``Payload`` row.

Once the cause is fixed (the old key back in ``SECRET_KEY_FALLBACKS``, the missing code
deployed), :func:`replay` takes the body through the receiver's steps again, in the
calling process: the task runs at once, whatever its time, as with the admin's "Run
now". When Cloud Tasks would have been done with the delivery (a 2xx answer), the dead
letter is deleted; otherwise it stays, and the result says why.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from django.db import router, transaction
from django.urls import Resolver404, resolve
from django.utils import timezone

from .. import payloads, wire
from ..exceptions import DeliveryError
from ..models import DeadLetter
from .delivery import Delivery, Result, take_task, take_wake_up

logger = logging.getLogger("django_q_cloudtasks")

# The receiver's endpoints whose deliveries can be rejected, by view name (urls.py).
ENDPOINTS: dict[str, Callable[[Delivery], Result]] = {
    "django_q_cloudtasks:receive": take_task,
    "django_q_cloudtasks:schedule": take_wake_up,
}


def keep(path: str, delivery: Delivery, reason: str) -> DeadLetter:
    """Keep a rejected delivery, with its body and what Cloud Tasks said of it."""
    body, content_type = delivery.body, delivery.content_type
    if content_type == wire.REFERENCE_CONTENT_TYPE:
        with contextlib.suppress(DeliveryError):  # else the reference as it came
            body = payloads.load(wire.read_reference(body)).encode()
            content_type = wire.PACKAGE_CONTENT_TYPE
    letter = DeadLetter.objects.create(
        received=timezone.now(),
        path=path[:200],
        queue=delivery.queue[:500],
        cloud_task=delivery.cloud_task[:500],
        reason=reason,
        content_type=content_type[:200],
        body=body,
    )
    logger.error(
        "Rejected a delivery to %s (Cloud Task %r), kept as dead letter %s: %s",
        path,
        letter.cloud_task,
        letter.pk,
        reason,
    )
    return letter


@dataclass(frozen=True)
class Replayed:
    """What became of a replayed dead letter."""

    letter: int  # its id
    result: Result  # what the receiver made of its delivery
    deleted: bool

    def __str__(self) -> str:
        if self.deleted:
            return f"Dead letter {self.letter}: {self.result.outcome}; deleted."
        return f"Dead letter {self.letter}: {self.result.outcome}; kept: {self.result.error}"


def replay(letter: DeadLetter) -> Replayed:
    """Take a dead letter's delivery again; deletes the letter once it is done with.

    Call it outside ``transaction.atomic``, as the receiver runs: django-q's worker closes
    the database connection around a task, which would break the transaction.
    """
    if transaction.get_connection(router.db_for_write(DeadLetter)).in_atomic_block:
        raise RuntimeError(
            "Dead letters are replayed outside transaction.atomic: django-q closes the "
            "database connection around each task. With ATOMIC_REQUESTS, mark the view "
            "calling replay() with transaction.non_atomic_requests."
        )
    delivery = Delivery(
        body=bytes(letter.body),
        content_type=letter.content_type,
        cloud_task=letter.cloud_task,
        queue=letter.queue,
        replayed=True,
    )
    pk, result = letter.pk, _endpoint(letter)(delivery)
    # An "abandoned" reference lost its package: the letter is all that is left of it.
    deleted = result.final and result.status != "abandoned"
    if deleted:
        letter.delete()
    replayed = Replayed(pk, result, deleted)
    logger.log(logging.INFO if deleted else logging.WARNING, "Replayed: %s", replayed)
    return replayed


def replay_each(pks: Iterable[int]) -> Iterator[Replayed]:
    """Replay the letters ``pks`` names, one at a time, skipping any deleted meanwhile."""
    for pk in pks:
        # Read one at a time: a replayed task may close the database connection.
        letter = DeadLetter.objects.filter(pk=pk).first()
        if letter is not None:
            yield replay(letter)


def _endpoint(letter: DeadLetter) -> Callable[[Delivery], Result]:
    """What the letter was delivered to: by its path, or, where the URLconf changed since,
    by its content type."""
    with contextlib.suppress(Resolver404):
        take = ENDPOINTS.get(resolve(letter.path).view_name)
        if take is not None:
            return take
    return take_wake_up if letter.content_type == wire.WAKE_UP_CONTENT_TYPE else take_task
