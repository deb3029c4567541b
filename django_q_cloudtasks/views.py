"""The receiver: the endpoint Cloud Tasks POSTs each task to.

In order, and each step only if the one before passed: authenticate the caller, verify
the package's django-q signature (nothing unsigned is ever unpickled), run the task,
and answer 2xx when Cloud Tasks is done with it or another status to have it retried.
429 and 503 are never used: Cloud Tasks slows the whole queue down for those.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .auth import AuthenticationFailed, CertificatesUnavailable, authenticate
from .conf import receiver_settings
from .execution import Outcome, Verdict, execute

logger = logging.getLogger("django_q_cloudtasks")

STATUS = {
    Verdict.SUCCEEDED: 200,
    Verdict.FAILED: 200,
    Verdict.DUPLICATE: 200,
    Verdict.RETRY: 500,
    Verdict.BUSY: 409,
}
REQUIRED_KEYS = ("id", "name", "func", "args", "kwargs")


class BadPackage(Exception):
    """The body is not a django-q package signed with this project's key."""


@login_not_required  # Cloud Tasks authenticates with its token, not a session
@csrf_exempt
@require_POST
@transaction.non_atomic_requests  # django-q manages its own connections and transactions
def receive(request: HttpRequest) -> JsonResponse:
    try:
        authenticate(request, receiver_settings())
    except AuthenticationFailed as error:
        logger.warning("Refused a task delivery: %s", error)
        return _answer(error.status, error=str(error))
    except CertificatesUnavailable as error:
        logger.error("Cannot verify task deliveries: %s", error)
        return _answer(500, error="The token certificates could not be fetched; retry later.")

    try:
        task = decode(request.body)
    except BadPackage as error:
        logger.error("Refused a task delivery: %s", error)
        return _answer(400, error=str(error))

    outcome = execute(task, previous_attempts=_retry_count(request))
    return _answer(STATUS[outcome.verdict], **_describe(outcome))


def decode(body: bytes) -> dict[str, Any]:
    """Verify the signature, then unpickle. A body that fails the signature is never unpickled."""
    from django_q.signing import BadSignature, SignedPackage

    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise BadPackage("The body is not a signed django-q package.") from None
    try:
        task = SignedPackage.loads(text)
    except BadSignature:
        raise BadPackage(
            "The body's signature does not match this project's SECRET_KEY: it was not "
            "enqueued by this project, or the key changed since."
        ) from None
    except Exception as error:  # signed by us, yet unreadable: a bug, not an attack
        raise BadPackage(f"A signed package could not be read: {error!r}") from error
    if not isinstance(task, dict) or not all(key in task for key in REQUIRED_KEYS):
        raise BadPackage("The signed body is not a django-q task package.")
    return task


def _retry_count(request: HttpRequest) -> int:
    value = request.headers.get("X-CloudTasks-TaskRetryCount", "0")
    return int(value) if value.isascii() and value.isdigit() else 0


def _describe(outcome: Outcome) -> dict[str, Any]:
    return {
        "status": outcome.verdict.value,
        "task": outcome.task_id,
        "cluster": outcome.cluster,
        "attempt": outcome.attempt,
    }


def _answer(http_status: int, **body: Any) -> JsonResponse:
    return JsonResponse(body, status=http_status)
