"""System checks: every setting this package reads, checked when Django starts.

Ids: ``django_q_cloudtasks.E0xx`` are errors (tasks would not run), ``W0xx`` warnings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django.apps import AppConfig, apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from . import conf


@register()
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if not apps.is_installed("django_q"):
        messages.append(
            Error(
                '"django_q" is not in INSTALLED_APPS.',
                hint='Add "django_q" before "django_q_cloudtasks": its models hold the results.',
                id="django_q_cloudtasks.E013",
            )
        )
    q_cluster = getattr(settings, "Q_CLUSTER", None)
    if isinstance(q_cluster, dict) and q_cluster.get("broker_class") != conf.BROKER_CLASS:
        return [
            *messages,
            Warning(
                "django_q_cloudtasks is installed, but django-q does not use it.",
                hint=f'Set Q_CLUSTER["broker_class"] = "{conf.BROKER_CLASS}".',
                id="django_q_cloudtasks.W001",
            ),
        ]
    messages += [
        Error(error.message, hint=error.hint, id=error.check_id)
        for error in conf.configuration_errors()
    ]
    if messages:
        return messages
    return messages + _check_receiver_mounted() + _check_verification()


def _check_receiver_mounted() -> list[CheckMessage]:
    mounted = conf.receiver_path()
    if mounted is None:
        return [
            Error(
                "The receiver view is not in the URLconf: Cloud Tasks would have nowhere to deliver.",
                hint='Add path("_tasks/", include("django_q_cloudtasks.urls")) to urlpatterns.',
                id="django_q_cloudtasks.E012",
            )
        ]
    return [
        Warning(
            f"Cluster {queue.cluster!r} delivers to {queue.url}, but the receiver is mounted at {mounted}.",
            hint='Make the path of Q_CLUSTER["cloud_tasks"]["url"] match the URLconf.',
            id="django_q_cloudtasks.W003",
        )
        for queue in _first_cluster_per_url()
        if urlsplit(queue.url).path != mounted  # a missing slash means a redirect, not a task
    ]


def _first_cluster_per_url() -> list[conf.QueueSettings]:
    clusters = map(conf.queue_settings, conf.cluster_names())
    return list({queue.url: queue for queue in reversed(list(clusters))}.values())


def _check_verification() -> list[CheckMessage]:
    receiver = conf.receiver_settings()
    if receiver.verify_token or receiver.emulator or settings.DEBUG:
        return []
    return [
        Warning(
            "Token verification is off: anyone who can reach the receiver URL can run tasks.",
            hint="Leave verify_token on, unless Cloud Run IAM (--no-allow-unauthenticated) already "
            "admits only the tasks service account.",
            id="django_q_cloudtasks.W002",
        )
    ]
