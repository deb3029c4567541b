"""Errors raised by django-q-cloudtasks, each saying what to do about it."""

from django.core.exceptions import ImproperlyConfigured


class CloudTasksError(Exception):
    """Base class of every error this package raises at run time."""


class EnqueueError(CloudTasksError):
    """A task could not be handed to Cloud Tasks; nothing was queued for it."""

    def __init__(self, message: str, *, queue_path: str, task_id: str) -> None:
        super().__init__(message)
        self.queue_path = queue_path
        self.task_id = task_id


class ConfigurationError(ImproperlyConfigured):
    """A setting is missing or wrong. ``check_id`` is the Django system check that reports it."""

    def __init__(self, message: str, *, check_id: str, hint: str | None = None) -> None:
        super().__init__(f"{message} {hint}" if hint else message)
        self.message = message
        self.check_id = check_id
        self.hint = hint
