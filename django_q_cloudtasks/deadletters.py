"""Dead letters: deliveries that could not run, kept so that none vanishes unseen, and
replayed once their cause is fixed.

A delivery is rejected when its body is nothing this project can run: signed with a key
it no longer has, naming code still missing after ``MISSING_CODE_RETRIES`` deliveries, not
a task at all. The view keeps it with :func:`keep` and answers 2xx, so that Cloud Tasks
stops retrying what retrying cannot mend.

Once the cause is fixed (the old key back in ``SECRET_KEY_FALLBACKS``, the missing code
deployed), :func:`replay` takes the body through the receiver's steps again, in the
calling process: the task runs at once, whatever its time, as with the admin's "Run
now". When Cloud Tasks would have been done with the delivery (a 2xx answer), the dead
letter is deleted; otherwise it stays, and the result says why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import router, transaction
from django.urls import Resolver404, resolve
from django.utils import timezone

from .delivery import Delivery, Result, take_task, take_wake_up
from .models import DeadLetter
from .scheduling import WAKE_UP_CONTENT_TYPE

logger = logging.getLogger("django_q_cloudtasks")

# The receiver's endpoints whose deliveries can be rejected, by URL name (urls.py).
ENDPOINTS: dict[str, Callable[[Delivery], Result]] = {
    "receive": take_task,
    "schedule": take_wake_up,
}


def keep(path: str, delivery: Delivery, reason: str) -> DeadLetter:
    """Keep a rejected delivery, with its body and what Cloud Tasks said of it."""
    letter = DeadLetter.objects.create(
        received=timezone.now(),
        path=path[:200],
        queue=delivery.queue[:500],
        cloud_task=delivery.cloud_task[:500],
        reason=reason,
        content_type=delivery.content_type[:200],
        body=delivery.body,
    )
    logger.error(
        "Rejected a delivery to %s (Cloud Task %r), kept as dead letter %s: %s",
        path,
        letter.cloud_task,
        letter.pk,
        reason,
    )
    return letter


def replay(letter: DeadLetter) -> Result:
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
    if result.final:
        letter.delete()
        logger.info("Replayed dead letter %s: %s; deleted.", pk, result.outcome)
    else:
        logger.warning("Replayed dead letter %s: %s; kept: %s", pk, result.outcome, result.error)
    return result


def _endpoint(letter: DeadLetter) -> Callable[[Delivery], Result]:
    """What the letter was delivered to: by its path, or, where the URLconf moved since, by
    its content type."""
    try:
        name = resolve(letter.path).url_name or ""
    except Resolver404:
        name = "schedule" if letter.content_type == WAKE_UP_CONTENT_TYPE else "receive"
    return ENDPOINTS.get(name, take_task)
