"""Every error django-q-cloudtasks raises, in one hierarchy; each message says what to do.

* :class:`ConfigurationError`: a setting is wrong (also a Django ``ImproperlyConfigured``).
* :class:`CloudTasksError`: Google's APIs failed or refused: enqueueing
  (:class:`EnqueueError`), reading or steering a queue (:class:`QueueUnavailable`),
  setting up a queue or the scheduler job (:class:`ProvisioningError`), starting, reading or
  cancelling a Cloud Run job execution (:class:`ExecutionError`).
* :class:`DeliveryError`: a delivered body the receiver cannot run, now
  (:class:`PayloadPending`, :class:`CodeMissing`) or ever (:class:`PayloadGone`;
  :class:`BadBody` and its kinds, kept as dead letters).
* :class:`AuthenticationFailed`: the caller of an endpoint is refused;
  :class:`CertificatesUnavailable`: its token cannot be checked now.
* :class:`TaskCancelled`: raised inside a task that ``cancel()`` stops.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class ConfigurationError(ImproperlyConfigured):
    """A setting is missing or wrong. ``check_id`` is the Django system check that reports it."""

    def __init__(self, message: str, *, check_id: str, hint: str | None = None) -> None:
        super().__init__(f"{message} {hint}" if hint else message)
        self.message = message
        self.check_id = check_id
        self.hint = hint


class CloudTasksError(Exception):
    """A call to Google's APIs failed or was refused."""


class EnqueueError(CloudTasksError):
    """A task could not be handed to Cloud Tasks; nothing was queued for it."""

    def __init__(self, message: str, *, queue_path: str, task_id: str) -> None:
        super().__init__(message)
        self.queue_path = queue_path
        self.task_id = task_id


class QueueUnavailable(CloudTasksError):
    """Cloud Tasks did not answer for a queue, or refused."""


class ProvisioningError(CloudTasksError):
    """A queue, or the Cloud Scheduler job, could not be read, created or updated."""

    def __init__(self, message: str, *, resource: str) -> None:
        super().__init__(message)
        self.resource = resource


class ExecutionError(CloudTasksError):
    """A Cloud Run job execution could not be started, read or cancelled."""


class MissingExtra(ImportError):
    """An optional dependency is not installed (``google-cloud-scheduler``, ``google-cloud-run``)."""


class TaskCancelled(Exception):
    """The running task was cancelled (``django_q_cloudtasks.cancel``).

    In a Cloud Run job execution it is raised inside the task as the execution is stopped:
    catch it to clean up, and let it go on, so that the task's ``Failure`` row says it was
    cancelled. In the receiver, cancellation is cooperative: a task checks
    ``django_q_cloudtasks.cancelled()`` and raises it to stop.
    """

    def __init__(
        self, message: str = "The task was cancelled (django_q_cloudtasks.cancel)."
    ) -> None:
        super().__init__(message)


class DeliveryError(Exception):
    """A delivered body the receiver cannot run."""


class PayloadPending(DeliveryError):
    """A big task's package is not in the database yet: the transaction that stores it has
    not committed. A later delivery finds it."""


class CodeMissing(DeliveryError):
    """A package signed with this project's key names a module or class this revision of
    the code lacks: one enqueued by a newer revision, during a rollout or a traffic split."""


class BadBody(DeliveryError):
    """The body can never run: retrying cannot change that."""


class BadPackage(BadBody):
    """The body is not a django-q package signed with this project's key."""


class BadReference(BadBody):
    """The body is not a reference this project signed, or does not match its payload."""


class PayloadGone(DeliveryError):
    """A big task's package will never come: its transaction rolled back, or the enqueue
    failed. The task is abandoned, not kept as a dead letter: there is nothing to keep."""


class BadWakeUp(BadBody):
    """A wake-up body that this project did not sign."""


class AuthenticationFailed(Exception):
    """The request is refused: 401 without a valid token, 403 for a caller not allowed.

    ``str()`` is the reason, fixed text fit for an answer; ``detail`` is empty, or what
    the token said, escaped and cut short for a log line.
    """

    def __init__(self, reason: str, status: int = 401, *, detail: object = "") -> None:
        super().__init__(reason)
        self.status = status
        self.detail = f" ({escaped(detail)})" if detail != "" else ""


class CertificatesUnavailable(Exception):
    """The signing certificates could not be fetched: the caller is not at fault."""


# The longest detail of a refused token that is logged, before escaping.
MAX_DETAIL_LENGTH = 200


def escaped(text: object) -> str:
    """``text`` for a log line: cut to MAX_DETAIL_LENGTH, quoted, every control escaped."""
    text = str(text)
    cut = text[:MAX_DETAIL_LENGTH]
    return repr(cut) + ("..." if len(text) > len(cut) else "")
