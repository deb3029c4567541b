"""System checks: every setting this package reads, checked when Django starts.

Ids: ``django_q_cloudtasks.E0xx`` are errors (tasks would not run), ``W0xx`` warnings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django.apps import AppConfig, apps
from django.conf import settings
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.checks import CheckMessage, Error, Warning, register
from django.http.request import validate_host
from django.utils.module_loading import import_string

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
    return [
        *_check_receiver_mounted(),
        *_check_allowed_hosts(),
        *_check_verification(),
        *_check_https_redirect(),
        *_check_cache(),
        *_check_sync(),
    ]


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


def _check_allowed_hosts() -> list[CheckMessage]:
    # Django answers 400 to a request for a host ALLOWED_HOSTS does not name: every delivery.
    allowed = settings.ALLOWED_HOSTS or (
        [".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else []
    )
    return [
        Error(
            f"Cluster {queue.cluster!r} delivers to {queue.url}, but ALLOWED_HOSTS does not "
            f"allow {host!r}: Django would answer every delivery 400 Bad Request.",
            hint=f'Add "{host}" to ALLOWED_HOSTS.',
            id="django_q_cloudtasks.E015",
        )
        for queue in _first_cluster_per_url()
        if (host := urlsplit(queue.url).hostname or "") and not validate_host(host, allowed)
    ]


def _check_https_redirect() -> list[CheckMessage]:
    # Cloud Run and App Engine end TLS in front of the app, which then sees plain http.
    receiver = conf.receiver_settings()
    if receiver.emulator or not settings.SECURE_SSL_REDIRECT or settings.SECURE_PROXY_SSL_HEADER:
        return []
    return [
        Warning(
            "SECURE_SSL_REDIRECT is on, but SECURE_PROXY_SSL_HEADER is not set: behind Cloud "
            "Run's or App Engine's TLS front end every delivery arrives as http and is "
            "redirected, and Cloud Tasks counts a redirect as a failure.",
            hint='Set SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https").',
            id="django_q_cloudtasks.W005",
        )
    ]


def _check_cache() -> list[CheckMessage]:
    """django-q keeps cached results, iter and group collation, and the receiver rows of
    qinfo and qmonitor in its cache; receivers on many instances must share it."""
    q_cluster = conf.q_cluster()
    alias = q_cluster.get("cache", "default")
    cache = settings.CACHES.get(alias)
    if cache is None:
        return [
            Error(
                f'Q_CLUSTER["cache"] names the cache {alias!r}, which CACHES does not define.',
                hint=f"Define CACHES[{alias!r}] or name another cache.",
                id="django_q_cloudtasks.E016",
            )
        ]
    backend = import_string(cache["BACKEND"])
    if issubclass(backend, DummyCache):
        where = "keeps nothing"
    elif not settings.DEBUG and issubclass(backend, LocMemCache | FileBasedCache):
        where = (
            "is local to one process"
            if issubclass(backend, LocMemCache)
            else "is local to one machine"
        )
    else:
        return []
    problem = (
        f"django-q's cache {alias!r} ({backend.__name__}) {where}, but every receiver "
        "instance must see the same cache"
    )
    hint = "Use a shared cache: Redis (Memorystore), Memcached or DatabaseCache."
    if q_cluster.get("cached"):
        return [
            Error(
                f'{problem}: with Q_CLUSTER["cached"] on, results would be lost.',
                hint=hint,
                id="django_q_cloudtasks.E017",
            )
        ]
    return [
        Warning(
            f"{problem}: async_iter, cached=True results and qinfo/qmonitor would not work.",
            hint=hint,
            id="django_q_cloudtasks.W004",
        )
    ]


def _check_sync() -> list[CheckMessage]:
    if not conf.q_cluster().get("sync") or settings.DEBUG:
        return []
    return [
        Warning(
            'Q_CLUSTER["sync"] is on: async_task() runs each task in the caller, and nothing '
            "reaches Cloud Tasks.",
            hint="Turn sync off outside tests and debugging.",
            id="django_q_cloudtasks.W006",
        )
    ]
