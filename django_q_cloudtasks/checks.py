"""System checks: every setting this package reads, checked when Django starts.

Ids: ``django_q_cloudtasks.E0xx`` are errors (tasks would not run), ``W0xx`` warnings.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import ipaddress
import re
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
from .wire import MAX_TASK_BODY_BYTES


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
        *_check_upload_size(),
        *_check_verification(),
        *_check_https_redirect(),
        *_check_cache(),
        *_check_sync(),
        *_check_timeouts(),
        *_check_emulator_host(),
        *_check_jobs_extra(),
        *_check_app_engine(),
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
    """One cluster per receiver URL (an App Engine cluster may have none)."""
    clusters = [queue for queue in map(conf.queue_settings, conf.cluster_names()) if queue.url]
    return list({queue.url: queue for queue in reversed(clusters)}.values())


def _check_upload_size() -> list[CheckMessage]:
    # Django answers 400 to a body over DATA_UPLOAD_MAX_MEMORY_SIZE before the view sees it.
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    largest = max(
        min(conf.queue_settings(name).max_package_bytes, MAX_TASK_BODY_BYTES)
        for name in conf.cluster_names()
    )
    if limit is None or limit >= largest:
        return []
    return [
        Error(
            f"DATA_UPLOAD_MAX_MEMORY_SIZE is {limit:,} bytes, but a task's body can be "
            f"{largest:,} bytes: Django would answer 400 to each such delivery, every time "
            "Cloud Tasks tries it.",
            hint=f"Raise DATA_UPLOAD_MAX_MEMORY_SIZE to {largest:,} or more (Django's "
            "default, 2,621,440, is enough), or lower max_package_bytes.",
            id="django_q_cloudtasks.E018",
        )
    ]


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
    # With the emulator, the server, the emulator and the monitor are processes of their
    # own even while debugging: a cache in one process is seen by no other.
    local = bool(conf.queue_settings().emulator_host)
    if issubclass(backend, DummyCache):
        where = "keeps nothing"
    elif local and issubclass(backend, LocMemCache):
        where = "is local to one process"
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
    hint = "Use a shared cache: Redis (Memorystore), Memcached or DatabaseCache." + (
        ' Locally, DatabaseCache needs no server: CACHES = {"default": {"BACKEND": '
        '"django.core.cache.backends.db.DatabaseCache", "LOCATION": "django_cache"}}, then '
        "python manage.py createcachetable."
        if local
        else ""
    )
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


def _check_timeouts() -> list[CheckMessage]:
    # With no timeout, nothing stops a task before Cloud Tasks stops waiting for it, or, in
    # a job, before the job's own task timeout stops the execution.
    messages: list[CheckMessage] = []
    for queue in map(conf.queue_settings, conf.cluster_names()):
        if queue.timeout is not None:
            continue
        if queue.runs_in_job:
            problem = (
                "its executions run with the Cloud Run job's own task timeout (10 minutes "
                "unless the job sets another), which stops a task without a Failure row"
            )
        else:
            problem = (
                f"Cloud Tasks waits {queue.deadline_for(None)} s (its dispatch deadline) for "
                "the answer, then delivers the task again, and a task still running then is "
                "run a second time once its claim runs out"
            )
        longest = queue.target.longest_timeout(queue.dispatch_deadline)
        messages.append(
            Warning(
                f"Cluster {queue.cluster!r} has no timeout: {problem}.",
                hint=f'Set Q_CLUSTER["timeout"] (or the cluster\'s own) to the longest a task '
                f"may run, at most {longest} s.",
                id="django_q_cloudtasks.W007",
            )
        )
    return messages


def _check_jobs_extra() -> list[CheckMessage]:
    jobs = [q.cluster for q in map(conf.queue_settings, conf.cluster_names()) if q.runs_in_job]
    if not jobs or importlib.util.find_spec("google.cloud.run_v2") is not None:
        return []
    return [
        Error(
            f"Cluster(s) {', '.join(map(repr, jobs))} run their tasks in a Cloud Run job, but "
            "the Cloud Run client (google-cloud-run) is not installed: the receiver could not "
            "start the executions.",
            hint="pip install 'django-q-cloudtasks[jobs]'",
            id="django_q_cloudtasks.E021",
        )
    ]


def _check_app_engine() -> list[CheckMessage]:
    """What an App Engine cluster's tasks need of the project: to come in over plain http,
    to be told from a caller's made-up headers, and, for its schedules, someone who may call
    the tick."""
    clusters = [q for q in map(conf.queue_settings, conf.cluster_names()) if q.app_engine]
    if not clusters:
        return []
    messages: list[CheckMessage] = []
    exempt = [re.compile(pattern) for pattern in settings.SECURE_REDIRECT_EXEMPT]
    if settings.SECURE_SSL_REDIRECT:
        messages += [
            Error(
                f"SECURE_SSL_REDIRECT is on and does not exempt {path}: App Engine tasks come "
                "in over plain http inside Google, and Cloud Tasks counts the redirect as a "
                "failure, every time.",
                hint=f'Add r"^{re.escape(path.lstrip("/"))}" to SECURE_REDIRECT_EXEMPT.',
                id="django_q_cloudtasks.E023",
            )
            for path in sorted({queue.relative_uri for queue in clusters})
            if not any(pattern.search(path.lstrip("/")) for pattern in exempt)
        ]
    gunicorn = _version("gunicorn")
    if gunicorn is not None and gunicorn < (22,):
        messages.append(
            Error(
                "gunicorn before 22.0 passes on request headers whose names have underscores "
                "as if they had hyphens: a caller could spell X_AppEngine_QueueName, which App "
                "Engine does not remove, and be taken for one of App Engine's tasks.",
                hint="pip install 'gunicorn>=22' (which drops such headers; do not run it "
                "with --header-map dangerous).",
                id="django_q_cloudtasks.E024",
            )
        )
    receiver = conf.receiver_settings()
    if receiver.verify_token and not receiver.allowed_emails:  # every cluster's on App Engine
        messages.append(
            Warning(
                "No e-mail may call the tick: Cloud Scheduler's calls would be refused, and "
                "schedules would not run.",
                hint='Set Q_CLUSTER["cloud_tasks"]["service_account_email"] (or '
                "allowed_emails) to the service account Cloud Scheduler signs its calls as.",
                id="django_q_cloudtasks.W009",
            )
        )
    return messages


def _version(distribution: str) -> tuple[int, ...] | None:
    """The installed version of ``distribution``, as numbers, or None when not installed."""
    try:
        release = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    return tuple(int(part) for part in re.findall(r"\d+", release)[:3])


def _check_emulator_host() -> list[CheckMessage]:
    # Emulator mode trusts the emulator's tokens, and its certificates fetched over plain
    # HTTP: right on a developer's machine, wrong in a deployment that inherited it.
    if settings.DEBUG:
        return []
    hosts = {
        queue.emulator_host
        for queue in map(conf.queue_settings, conf.cluster_names())
        if queue.emulator_host and not _loopback(queue.emulator_host)
    }
    return [
        Warning(
            f"Emulator mode is on, with the emulator at {host}, not on this machine, and "
            "DEBUG off: tasks go to that emulator, and the receiver accepts tokens it signs, "
            "checked against certificates fetched over plain HTTP.",
            hint=f"In production, unset {conf.EMULATOR_ENV} and "
            'Q_CLUSTER["cloud_tasks"]["emulator_host"]. For an emulator on another host '
            "during development, turn DEBUG on.",
            id="django_q_cloudtasks.W008",
        )
        for host in sorted(hosts)
    ]


def _loopback(host_and_port: str) -> bool:
    host = host_and_port.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
