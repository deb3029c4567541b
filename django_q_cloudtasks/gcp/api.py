"""Every call to Google's APIs: one retry and timeout policy, and one table of what a
failure means and what to do about it.

The policy (:func:`call`): each attempt waits at most ``Budget.attempt`` seconds; the
failures that pass (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, RESOURCE_EXHAUSTED, ABORTED,
UNKNOWN) are tried again after 0.2 s, doubling up to 5 s, while ``Budget.total`` lasts.
Two budgets serve every caller:

* :data:`AT_ONCE`, one attempt of 5 s: what a screen, a health check or an operator's
  action calls (the admin, ``cloudtasks_monitor``, ``qinfo``'s ``queue_size``, ``ping``,
  RunTask, which a second attempt could deliver twice). An unreachable queue shows at once.
* :func:`patient`, retried for ``enqueue_timeout`` seconds: enqueueing (a named task
  cannot be created twice), and setting up a queue or the scheduler job.

Google's libraries are imported in the functions that use them: ``google.api_core`` costs
about 0.25 s at import, which a process that only receives tasks never pays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..conf import QueueSettings

T = TypeVar("T")

# The most one attempt waits, whatever the budget.
MAX_ATTEMPT_SECONDS = 10.0


@dataclass(frozen=True)
class Budget:
    """How long a call may take: ``attempt`` seconds each attempt; failures that pass are
    tried again while ``total`` seconds last (0: one attempt)."""

    attempt: float
    total: float = 0.0


AT_ONCE = Budget(attempt=5.0)


def patient(seconds: float) -> Budget:
    """Retried for ``seconds`` in all, each attempt within the time left."""
    return Budget(attempt=min(MAX_ATTEMPT_SECONDS, seconds), total=seconds)


def call(method: Callable[..., T], budget: Budget, **request: Any) -> T:
    """``method(**request)``, a client library method, under the policy. Raises what the
    library raises, a retried call its last failure rather than a RetryError."""
    from google.api_core import exceptions, retry  # see the module's docstring

    policy = None
    if budget.total:
        policy = retry.Retry(
            predicate=retry.if_exception_type(
                exceptions.ServiceUnavailable,
                exceptions.DeadlineExceeded,
                exceptions.InternalServerError,
                exceptions.TooManyRequests,
                exceptions.Aborted,
                exceptions.Unknown,
            ),
            initial=0.2,
            maximum=5.0,
            multiplier=2.0,
            timeout=budget.total,
        )
    try:
        return method(**request, retry=policy, timeout=budget.attempt)
    except exceptions.RetryError as error:
        if isinstance(error.cause, Exception):
            raise error.cause from error
        raise


def failures() -> tuple[type[Exception], ...]:
    """What :func:`call` raises when Google fails or refuses: catch these."""
    from google.api_core import exceptions  # see the module's docstring
    from google.auth.exceptions import GoogleAuthError

    return exceptions.GoogleAPICallError, exceptions.RetryError, GoogleAuthError


def explain(
    error: BaseException,
    qs: QueueSettings,
    budget: Budget,
    *,
    needs: str,
    missing: str = "Create the queue: python manage.py cloudtasks_setup",
    service: str = "Cloud Tasks",
) -> str:
    """What ``error`` means and what to do about it, in a sentence or two. ``needs``: the
    role the call takes, for a refusal; ``missing``: what to do about a NOT_FOUND;
    ``service``: the API called, as its console names it."""
    from google.api_core import exceptions  # see the module's docstring
    from google.auth.exceptions import GoogleAuthError

    said = (getattr(error, "message", None) or str(error)).rstrip(".")
    if isinstance(error, exceptions.NotFound):
        hint = missing
    elif isinstance(error, exceptions.PermissionDenied):
        hint = f"It needs {needs}, and the {service} API enabled"
    elif isinstance(error, exceptions.FailedPrecondition):
        hint = (
            "If a queue of this name was deleted lately, Cloud Tasks keeps the name for up "
            'to 7 days: wait, or set Q_CLUSTER["cloud_tasks"]["queue"] to another name'
        )
    elif isinstance(error, exceptions.ServiceUnavailable | exceptions.DeadlineExceeded):
        waited = budget.total or budget.attempt
        hint = f"{service} did not answer within {waited:g} s" + (
            f"; is the emulator at {qs.emulator_host} running?" if qs.emulator_host else ""
        )
    elif isinstance(error, GoogleAuthError):
        hint = (
            "No credentials to call Google with: on Cloud Run, the service's account; "
            "elsewhere, gcloud auth application-default login (or, for the emulator, set "
            "CLOUD_TASKS_EMULATOR_HOST)"
        )
    else:
        return f"{said}."
    return f"{said}. {hint}" + ("" if hint.endswith("?") else ".")
