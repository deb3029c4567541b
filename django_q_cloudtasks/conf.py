"""Settings: ``Q_CLUSTER["cloud_tasks"]`` read, checked and completed.

Two views of the same settings:

* :class:`QueueSettings`, one per django-q cluster: where that cluster's tasks go and how
  they run. ``ALT_CLUSTERS`` entries inherit the main cluster's ``cloud_tasks`` keys,
  except ``queue``, which defaults to the cluster's own name (made a valid queue id by
  :func:`queue_id_for`), and ``shards``, the queues its tasks are spread over (1: the one
  queue). A cluster ``Q_CLUSTER`` does not define runs with the main
  cluster's settings, as a qcluster started under that name does: django-q takes any
  name as a ``list_key``.
  Its ``timeout``, ``max_attempts`` and ``ack_failures`` are read where django-q reads
  them, from ``django_q.conf.Conf``, unless the cluster's ``ALT_CLUSTERS`` entry sets its
  own.
  Its ``target`` says where its tasks run (``targets.py``): in the receiver at ``url``
  (``"http"``, the default), each in an execution of a Cloud Run job
  (``"cloud_run_job"``), or in the receiver on an App Engine service (``"app_engine"``).
* :class:`ReceiverSettings`, one per process: who may call the receiver endpoint.

Every problem raises :class:`ConfigurationError` carrying the id of the system check that
reports the same problem at start-up (see ``checks.py``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import math
import os
import re
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.urls import NoReverseMatch, reverse
from django_q.conf import Conf

from . import environment, targets
from .exceptions import ConfigurationError
from .targets import AppEngineRouting, Target

BROKER_CLASS = "django_q_cloudtasks.CloudTasksBroker"
EMULATOR_ENV = "CLOUD_TASKS_EMULATOR_HOST"
# Where `cloudtasks_emulator` listens unless told otherwise.
EMULATOR_ADDRESS = "127.0.0.1:8123"
RECEIVER_URL_NAME = "django_q_cloudtasks:receive"
# Beside the receiver, under the same prefix: see urls.py.
SCHEDULE_PATH = "schedule/"
TICK_PATH = "tick/"

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")

# The biggest signed package enqueued; those over Cloud Tasks' 1 MiB go by reference.
DEFAULT_MAX_PACKAGE_BYTES = 32 * 1024 * 1024

QUEUE_KEYS = frozenset(
    {
        "project",
        "location",
        "queue",
        "url",
        "service_account_email",
        "audience",
        "emulator_host",
        "dispatch_deadline",
        "enqueue_timeout",
        "max_package_bytes",
        "queue_options",
        "shards",
        *targets.TARGET_KEYS,
    }
)
# Keys about the receiver endpoint: one endpoint serves every cluster, so they live in
# the main cluster's settings only.
ENDPOINT_KEYS = frozenset({"verify_token", "allowed_emails", "issuers", "certs_url", "clock_skew"})

QUEUE_ID = re.compile(r"^[A-Za-z0-9-]{1,100}$")
# The most queues one cluster spreads its tasks over: 50,000 dispatches a second.
MAX_SHARDS = 100
# The django-q settings of a cluster the receiver applies (``QueueSettings.own``).
OWN_KEYS = ("timeout", "max_attempts", "ack_failures")
LOCATION_ID = re.compile(r"^[a-z0-9-]{1,63}$")
EMULATOR_HOST = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")
PROJECT_ID = re.compile(r"^[a-z][a-z0-9:.-]{0,98}[a-z0-9]$|^[a-z0-9-]+$")


@dataclass(frozen=True)
class QueueOptions:
    """How Cloud Tasks dispatches and retries a cluster's tasks: ``cloud_tasks["queue_options"]``.

    The defaults are Cloud Tasks' own, so a queue made without options is left as it is.
    Durations are in seconds; ``max_retry_duration`` 0 is no limit. The queue's attempt
    limit is not here: ``cloudtasks_setup`` always sets it to unlimited (see provisioning.py).
    """

    max_dispatches_per_second: float = 500.0
    max_concurrent_dispatches: int = 1000
    min_backoff: float = 0.1
    max_backoff: float = 3600.0
    max_doublings: int = 16
    max_retry_duration: float = 0.0


# queue_options, named as Cloud Tasks' API names them: section -> field -> (test, rule).
QUEUE_OPTIONS: dict[str, dict[str, tuple[Callable[[Any], bool], str]]] = {
    "rate_limits": {
        "max_dispatches_per_second": (
            lambda v: _number(v) and 0 < v <= 500,
            "a number above 0 and at most 500",
        ),
        "max_concurrent_dispatches": (
            lambda v: _whole(v) and 1 <= v <= 5000,
            "a whole number from 1 to 5000",
        ),
    },
    "retry_config": {
        "min_backoff": (lambda v: _number(v) and v > 0, "a positive number of seconds"),
        "max_backoff": (
            lambda v: _whole(v) and v > 0,
            "a positive whole number of seconds (Cloud Tasks drops fractions)",
        ),
        "max_doublings": (lambda v: _whole(v) and v >= 0, "a whole number, 0 or more"),
        "max_retry_duration": (
            lambda v: _whole(v) and v >= 0,
            "a whole number of seconds (Cloud Tasks drops fractions), 0 for no limit",
        ),
    },
}


@dataclass(frozen=True)
class QueueSettings:
    """Where one django-q cluster's tasks go, and how long they may run."""

    cluster: str
    project: str
    location: str
    queue: str
    url: str
    audience: str
    service_account_email: str | None
    emulator_host: str | None
    dispatch_deadline: int | None
    enqueue_timeout: float
    max_package_bytes: int
    queue_options: QueueOptions = QueueOptions()
    # The django-q settings an ALT_CLUSTERS entry sets for itself (OWN_KEYS), as pairs.
    own: tuple[tuple[str, Any], ...] = ()
    target: Target = field(default_factory=Target)
    # The receiver's path, where an App Engine target's tasks go inside the app.
    relative_uri: str = ""
    # The queues the cluster's tasks are spread over: ``queue``, ``queue-1``, ...
    shards: int = 1

    @property
    def timeout(self) -> int | None:
        return self._own("timeout", Conf.TIMEOUT)  # type: ignore[no-any-return]

    @property
    def max_attempts(self) -> int:
        return self._own("max_attempts", Conf.MAX_ATTEMPTS)  # type: ignore[no-any-return]

    @property
    def ack_failures(self) -> bool:
        return bool(self._own("ack_failures", Conf.ACK_FAILURES))

    def _own(self, key: str, inherited: Any) -> Any:
        """The cluster's own value of a django-q setting, else django-q's (``Conf``), which
        tests and tools patch."""
        return next((value for name, value in self.own if name == key), inherited)

    @property
    def queue_path(self) -> str:
        """The cluster's first queue, named ``queue``: its only one unless it has shards."""
        return self.queue_paths[0]

    @functools.cached_property
    def queue_ids(self) -> tuple[str, ...]:
        """The cluster's queues: ``queue``, then ``queue-1`` to ``queue-(shards - 1)``."""
        return (self.queue, *(f"{self.queue}-{shard}" for shard in range(1, self.shards)))

    @functools.cached_property
    def queue_paths(self) -> tuple[str, ...]:
        parent = f"projects/{self.project}/locations/{self.location}/queues"
        return tuple(f"{parent}/{queue_id}" for queue_id in self.queue_ids)

    def shard_settings(self) -> tuple[QueueSettings, ...]:
        """One settings per queue of the cluster, each with that queue alone."""
        if self.shards == 1:
            return (self,)
        return tuple(dataclasses.replace(self, queue=q, shards=1) for q in self.queue_ids)

    def queue_path_for(self, name: str) -> str:
        """The queue of the Cloud Task ``name``: chosen from the name alone, so that an
        enqueue retried with the same name lands in the same queue, where Cloud Tasks
        de-duplicates it."""
        if self.shards == 1:
            return self.queue_paths[0]
        return self.queue_paths[zlib.crc32(name.encode()) % self.shards]

    def task_path(self, name: str) -> str:
        return f"{self.queue_path_for(name)}/tasks/{name}"

    @property
    def schedule_url(self) -> str:
        """Where Cloud Tasks wakes a schedule up at its slot: beside the receiver (for an
        App Engine target, its path)."""
        if self.app_engine is not None:
            return _beside(self.relative_uri, SCHEDULE_PATH)
        return _beside(self.url, SCHEDULE_PATH)

    @property
    def receiver_uri(self) -> str:
        """Where Cloud Tasks delivers a task: ``url``, or for an App Engine target the
        receiver's path inside the app."""
        return self.relative_uri if self.app_engine is not None else self.url

    @property
    def tick_url(self) -> str:
        """Where Cloud Scheduler calls the tick: beside the receiver. Raises
        ConfigurationError for an App Engine cluster without a ``url``."""
        if not self.url:
            raise ConfigurationError(
                f"Cluster {self.cluster!r} has no url, so the tick has none: Cloud Scheduler "
                "calls it over HTTPS, with a token.",
                check_id="django_q_cloudtasks.E005",
                hint='Set Q_CLUSTER["cloud_tasks"]["url"] to the public URL of the receiver, '
                'e.g. "https://my-project.appspot.com/_tasks/".',
            )
        return _beside(self.url, TICK_PATH)

    @property
    def runs_in_job(self) -> bool:
        """Whether the cluster's tasks run in Cloud Run job executions, not in the receiver."""
        return self.target.kind == targets.CLOUD_RUN_JOB

    @property
    def job(self) -> str | None:
        """The Cloud Run job's resource name, for a job cluster."""
        return self.target.job

    @property
    def app_engine(self) -> AppEngineRouting | None:
        """Where the tasks go inside App Engine, for an App Engine target."""
        return self.target.app_engine

    def deadline_for(self, timeout: int | None) -> int:
        """Seconds Cloud Tasks waits for the answer to a task with this django-q timeout. A
        job cluster's receiver answers once it has started (or looked after) the execution."""
        return self.target.deadline_for(timeout, self.dispatch_deadline)

    def execution_timeout(self, timeout: int | None) -> int | None:
        """Seconds a job execution may run for a task with this django-q timeout; None: the
        job's own task timeout."""
        if timeout is None or timeout < 0:
            return None
        return min(targets.MAX_JOB_TIMEOUT, timeout + targets.JOB_MARGIN)


@dataclass(frozen=True)
class ReceiverSettings:
    """Who may call the receiver endpoint."""

    verify_token: bool
    audiences: tuple[str, ...]
    allowed_emails: frozenset[str]
    issuers: tuple[str, ...]
    certs_url: str
    clock_skew: int
    emulator: bool
    # This process runs on App Engine (environment.on_app_engine), where App Engine's
    # headers prove that Cloud Tasks sent a request.
    on_app_engine: bool = False


def q_cluster() -> dict[str, Any]:
    value = getattr(settings, "Q_CLUSTER", None)
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            "settings.Q_CLUSTER is not set.",
            check_id="django_q_cloudtasks.E001",
            hint=f'Set Q_CLUSTER = {{"name": "myproject", "broker_class": "{BROKER_CLASS}", '
            '"cloud_tasks": {...}}.',
        )
    return dict(value)


def main_cluster_name() -> str:
    conf = q_cluster()
    return str(conf.get("cluster_name") or conf.get("name") or "default")


def queue_id_for(cluster: str) -> str:
    """The Cloud Tasks queue id of a cluster whose settings name none: its name, made a valid
    queue id where it is not one (``"scheduler_test:q"`` becomes
    ``"scheduler-test-q-<8 hex digits>"``). The hex digits, from the name's SHA-256, keep two
    names that differ only in their invalid characters apart."""
    if QUEUE_ID.fullmatch(cluster):
        return cluster
    readable = re.sub(r"[^A-Za-z0-9]+", "-", cluster).strip("-")[:90]
    digest = hashlib.sha256(cluster.encode()).hexdigest()[:8]
    return f"{readable}-{digest}" if readable else f"q-{digest}"


def cluster_names() -> list[str]:
    """The main cluster and every ``ALT_CLUSTERS`` entry."""
    alt = q_cluster().get("ALT_CLUSTERS") or {}
    return [main_cluster_name(), *(name for name in alt if name != main_cluster_name())]


@functools.cache
def queue_settings(cluster: str | None = None) -> QueueSettings:
    """Settings of one cluster (default: the main one); cached until Q_CLUSTER changes."""
    main = q_cluster()
    name = cluster or main_cluster_name()
    cloud_tasks = _cloud_tasks_dict(main, "Q_CLUSTER")
    options = _option_values(cloud_tasks, "Q_CLUSTER")
    merged_q = dict(main)
    own: tuple[tuple[str, Any], ...] = ()
    given = set(cloud_tasks)  # the keys this cluster's own cloud_tasks sets
    if name != main_cluster_name():
        where = f'Q_CLUSTER["ALT_CLUSTERS"]["{name}"]'
        alt = (main.get("ALT_CLUSTERS") or {}).get(name) or {}
        alt_cloud_tasks = _cloud_tasks_dict(alt, where, alt=True)
        merged_q.update({k: v for k, v in alt.items() if k != "cloud_tasks"})
        # A cluster's queues are its own: their name, and how many its tasks spread over.
        cloud_tasks = {
            k: v for k, v in cloud_tasks.items() if k not in ("queue", "shards")
        } | alt_cloud_tasks
        given = set(alt_cloud_tasks)
        options |= _option_values(alt_cloud_tasks, where)  # option by option
        own = tuple((key, alt[key]) for key in OWN_KEYS if key in alt)
    return _build_queue_settings(
        name, cloud_tasks, merged_q, _queue_options(name, options), own, given
    )


@functools.cache
def receiver_settings() -> ReceiverSettings:
    """Endpoint settings, with the audiences and e-mails of every cluster accepted.

    In emulator mode the issuer and certificates default to the built-in emulator's, so
    its tokens are verified exactly as Google's are in production.
    """
    cloud_tasks = _cloud_tasks_dict(q_cluster(), "Q_CLUSTER")
    verify = cloud_tasks.get("verify_token", True)
    if not isinstance(verify, bool):
        raise _invalid("verify_token", "must be True or False")
    clusters = [queue_settings(name) for name in cluster_names()]
    emails = _string_list(cloud_tasks, "allowed_emails") or [
        c.service_account_email for c in clusters if c.service_account_email
    ]
    every_task_inside_app_engine = all(c.app_engine is not None for c in clusters)
    if verify and not emails and not every_task_inside_app_engine:
        raise ConfigurationError(
            "Token verification is on, but no e-mail is allowed to call the receiver.",
            check_id="django_q_cloudtasks.E006",
            hint='Set Q_CLUSTER["cloud_tasks"]["service_account_email"] to the service account '
            "Cloud Tasks signs its requests as (or list them in allowed_emails).",
        )
    clock_skew = cloud_tasks.get("clock_skew", 10)
    if (
        not isinstance(clock_skew, int)
        or isinstance(clock_skew, bool)
        or not 0 <= clock_skew <= 300
    ):
        raise _invalid("clock_skew", "must be a whole number of seconds from 0 to 300")
    emulator_host = clusters[0].emulator_host
    issuer, certs_url = (
        emulator_identity(emulator_host) if emulator_host else (None, GOOGLE_CERTS_URL)
    )
    certs_url = cloud_tasks.get("certs_url", certs_url)
    if not isinstance(certs_url, str) or urlsplit(certs_url).scheme not in ("http", "https"):
        raise _invalid("certs_url", "must be an http(s) URL")
    return ReceiverSettings(
        verify_token=verify,
        audiences=tuple(dict.fromkeys(c.audience for c in clusters if c.audience)),
        allowed_emails=frozenset(emails),
        issuers=tuple(
            _string_list(cloud_tasks, "issuers") or ([issuer] if issuer else GOOGLE_ISSUERS)
        ),
        certs_url=certs_url,
        clock_skew=clock_skew,
        emulator=emulator_host is not None,
        on_app_engine=environment.on_app_engine(),
    )


def emulator_identity(emulator_host: str) -> tuple[str, str]:
    """The issuer and certificates URL of the built-in emulator at ``emulator_host``.

    The emulator serves them over HTTP one port above its gRPC port.
    """
    host, _, port = emulator_host.rpartition(":")
    origin = f"http://{host}:{int(port) + 1}"
    return origin, f"{origin}/certs"


def configuration_errors() -> list[ConfigurationError]:
    """Every distinct problem in the settings: each cluster's, then the endpoint's."""
    errors: dict[str, ConfigurationError] = {}

    def collect(load: Callable[[], object]) -> None:
        try:
            load()
        except ConfigurationError as error:
            errors.setdefault(str(error), error)

    collect(cluster_names)
    if not errors:
        for name in cluster_names():
            collect(functools.partial(queue_settings, name))
        collect(receiver_settings)
    return list(errors.values())


@receiver(setting_changed)
def _forget_settings(*, setting: str, **kwargs: Any) -> None:
    if setting in ("Q_CLUSTER", "ROOT_URLCONF"):
        queue_settings.cache_clear()
        receiver_settings.cache_clear()


def _cloud_tasks_dict(conf: Mapping[str, Any], where: str, *, alt: bool = False) -> dict[str, Any]:
    value = conf.get("cloud_tasks", {} if alt else None)
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f'{where}["cloud_tasks"] is missing or not a dict.',
            check_id="django_q_cloudtasks.E001",
            hint='Add "cloud_tasks": {"project": ..., "location": ..., "url": ..., '
            '"service_account_email": ...}; see the settings reference, '
            "docs/reference/settings.md.",
        )
    allowed = QUEUE_KEYS if alt else QUEUE_KEYS | ENDPOINT_KEYS
    for key in value:
        if key not in allowed:
            if alt and key in ENDPOINT_KEYS:
                raise ConfigurationError(
                    f'{where}["cloud_tasks"]["{key}"] applies to the receiver endpoint, '
                    "which all clusters share.",
                    check_id="django_q_cloudtasks.E010",
                    hint='Set it in Q_CLUSTER["cloud_tasks"] instead.',
                )
            raise ConfigurationError(
                f'Unknown key {key!r} in {where}["cloud_tasks"].',
                check_id="django_q_cloudtasks.E002",
                hint=_closest(key, allowed),
            )
    return dict(value)


def _option_values(cloud_tasks: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The options one ``cloud_tasks["queue_options"]`` sets, by field name, each checked.

    Field names are unique across sections, so an alternative cluster can inherit the
    main cluster's options one by one and override some.
    """
    value = cloud_tasks.get("queue_options")
    if value is None:
        return {}
    where = f'{where}["cloud_tasks"]["queue_options"]'
    if not isinstance(value, Mapping):
        raise _bad_option(
            f"{where} must be a dict, not {value!r}.",
            'E.g. {"rate_limits": {"max_dispatches_per_second": 10}, '
            '"retry_config": {"max_backoff": 600}}.',
        )
    values: dict[str, Any] = {}
    for section, fields in value.items():
        rules = QUEUE_OPTIONS.get(section)
        if rules is None:
            raise _bad_option(
                f"Unknown key {section!r} in {where}.", _closest(section, QUEUE_OPTIONS)
            )
        if not isinstance(fields, Mapping):
            raise _bad_option(
                f'{where}["{section}"] must be a dict, not {fields!r}.',
                f"Its keys: {', '.join(rules)}.",
            )
        for option, option_value in fields.items():
            if (section, option) == ("retry_config", "max_attempts"):
                raise _bad_option(
                    f'{where}["retry_config"]["max_attempts"] cannot be set: django-q\'s '
                    'Q_CLUSTER["max_attempts"] decides when a failing task stops.',
                    "Cloud Tasks counts every delivery, the receiver's 409 and 500 answers "
                    "included, so its own limit could drop a task django-q would still retry: "
                    'cloudtasks_setup makes it unlimited. Set Q_CLUSTER["max_attempts"] '
                    "(or the cluster's own) instead.",
                )
            if option not in rules:
                raise _bad_option(
                    f'Unknown key {option!r} in {where}["{section}"].', _closest(option, rules)
                )
            test, rule = rules[option]
            if not test(option_value):
                raise _bad_option(
                    f'{where}["{section}"]["{option}"] must be {rule}, not {option_value!r}.',
                    "See https://cloud.google.com/tasks/docs/configuring-queues for what it does.",
                )
            values[option] = option_value
    return values


def _queue_options(cluster: str, values: dict[str, Any]) -> QueueOptions:
    options = QueueOptions(**values)
    if options.max_backoff < options.min_backoff:
        raise _bad_option(
            f"Cluster {cluster!r}: queue_options retry_config max_backoff ({options.max_backoff:g} s) "
            f"is below min_backoff ({options.min_backoff:g} s).",
            "Raise max_backoff (Cloud Tasks' default: 3600 s) or lower min_backoff.",
        )
    return options


def _bad_option(message: str, hint: str) -> ConfigurationError:
    return ConfigurationError(message, check_id="django_q_cloudtasks.E014", hint=hint)


def _closest(key: object, known: Iterable[str]) -> str:
    """A hint for an unknown key: the closest known one, else all of them."""
    names = sorted(known)
    close = difflib.get_close_matches(str(key), names, n=1)
    return f"Did you mean {close[0]!r}?" if close else f"Known keys: {', '.join(names)}."


def _build_queue_settings(
    cluster: str,
    cloud_tasks: dict[str, Any],
    q: dict[str, Any],
    queue_options: QueueOptions,
    own: tuple[tuple[str, Any], ...],
    given: set[str],
) -> QueueSettings:
    emulator_host = cloud_tasks.get("emulator_host") or os.environ.get(EMULATOR_ENV) or None
    if emulator_host is not None and not EMULATOR_HOST.match(str(emulator_host)):
        raise _invalid("emulator_host", f"must be HOST:PORT, not {emulator_host!r}")
    found = {
        "project": cloud_tasks.get("project") or environment.detect_project(),
        "location": cloud_tasks.get("location") or environment.detect_location(),
    }
    if not emulator_host and not all(found.values()):
        # Every setting missing at once, rather than one per run of `check`.
        url_missing = cloud_tasks.get("target") != targets.APP_ENGINE and not (
            cloud_tasks.get("url") or _detect_receiver_url()
        )
        raise _missing([key for key, value in found.items() if not value] + ["url"] * url_missing)
    project = _required_id("project", found["project"], PROJECT_ID)
    location = _required_id("location", found["location"], LOCATION_ID)

    queue = cloud_tasks.get("queue") or queue_id_for(cluster)
    if not isinstance(queue, str) or not QUEUE_ID.fullmatch(queue):
        raise ConfigurationError(
            f"Cloud Tasks queue name {queue!r} (cluster {cluster!r}) is invalid.",
            check_id="django_q_cloudtasks.E004",
            hint="A queue id has 1 to 100 letters, digits or hyphens: set "
            'Q_CLUSTER["cloud_tasks"]["queue"], or rename the cluster.',
        )

    shards = cloud_tasks.get("shards", 1)
    if not _whole(shards) or not 1 <= shards <= MAX_SHARDS:
        raise _invalid("shards", f"must be a whole number from 1 to {MAX_SHARDS}, not {shards!r}")
    if shards > 1 and not QUEUE_ID.fullmatch(f"{queue}-{shards - 1}"):
        raise ConfigurationError(
            f"Cloud Tasks queue name {queue!r} (cluster {cluster!r}) is too long for "
            f"{shards} shards: the last would be {queue}-{shards - 1}, past 100 characters.",
            check_id="django_q_cloudtasks.E004",
            hint='Set a shorter Q_CLUSTER["cloud_tasks"]["queue"].',
        )

    target = targets.read_target(cluster, cloud_tasks, given, project, location)
    url = cloud_tasks.get("url") or _detect_receiver_url()
    relative_uri = ""
    if target.app_engine is not None:
        # Inside the app: the receiver's path, of url if given (the tick needs a URL).
        relative_uri = urlsplit(url).path if isinstance(url, str) and url else receiver_path() or ""
        if not relative_uri.startswith("/"):
            raise ConfigurationError(
                f"Cluster {cluster!r} sends App Engine tasks, but the receiver's path is not "
                "known: url has none, and the URLconf does not mount the receiver.",
                check_id="django_q_cloudtasks.E005",
                hint='Mount it (path("_tasks/", include("django_q_cloudtasks.urls"))), or set '
                'Q_CLUSTER["cloud_tasks"]["url"] to its URL, e.g. '
                '"https://my-project.appspot.com/_tasks/".',
            )
    if not url and target.app_engine is None:
        raise ConfigurationError(
            'Q_CLUSTER["cloud_tasks"]["url"] is not set and could not be detected.',
            check_id="django_q_cloudtasks.E005",
            hint="Set it to the public URL where the receiver is mounted, "
            'e.g. "https://app.example.com/_tasks/".',
        )
    audience = ""
    if url:
        _check_url("url", url, https=not emulator_host)
        audience = cloud_tasks.get("audience") or _origin(url)
        _check_url("audience", audience, https=False)

    email = cloud_tasks.get("service_account_email") or None
    if email is None and emulator_host:
        email = f"cloud-tasks@{project}.iam.gserviceaccount.com"  # the emulator signs as anyone
    if email is not None and (not isinstance(email, str) or "@" not in email):
        raise _invalid("service_account_email", f"is not an e-mail address: {email!r}")

    timeout = q.get("timeout")
    if timeout is not None and (not isinstance(timeout, int) or timeout <= 0):
        raise ConfigurationError(
            f'Q_CLUSTER["timeout"] must be a positive number of seconds, not {timeout!r}.',
            check_id="django_q_cloudtasks.E009",
        )
    max_attempts = q.get("max_attempts", 0)
    if not isinstance(max_attempts, int) or max_attempts < 0:
        raise ConfigurationError(
            f'Q_CLUSTER["max_attempts"] must be 0 (no limit) or more, not {max_attempts!r}.',
            check_id="django_q_cloudtasks.E009",
        )

    deadline = cloud_tasks.get("dispatch_deadline")
    targets.check_deadline(cluster, target, deadline)
    targets.check_timeout(cluster, target, timeout, deadline)

    enqueue_timeout = cloud_tasks.get("enqueue_timeout", 30)
    if (
        not isinstance(enqueue_timeout, int | float)
        or isinstance(enqueue_timeout, bool)
        or enqueue_timeout <= 0
    ):
        raise _invalid("enqueue_timeout", "must be a positive number of seconds")
    max_package_bytes = cloud_tasks.get("max_package_bytes", DEFAULT_MAX_PACKAGE_BYTES)
    if (
        not isinstance(max_package_bytes, int)
        or isinstance(max_package_bytes, bool)
        or max_package_bytes <= 0
    ):
        raise _invalid("max_package_bytes", "must be a positive number of bytes")

    return QueueSettings(
        cluster=cluster,
        project=project,
        location=location,
        queue=queue,
        url=url or "",
        audience=audience,
        service_account_email=email,
        emulator_host=emulator_host,
        dispatch_deadline=deadline,
        enqueue_timeout=float(enqueue_timeout),
        max_package_bytes=max_package_bytes,
        queue_options=queue_options,
        own=own,
        target=target,
        relative_uri=relative_uri,
        shards=shards,
    )


def _required_id(key: str, value: object, pattern: re.Pattern[str]) -> str:
    if not value:  # only in emulator mode: the emulator takes any id
        return "local"
    if not isinstance(value, str) or not pattern.match(value):
        raise _invalid(key, f"is not a valid Cloud Tasks {key} id: {value!r}")
    return value


def _missing(keys: list[str]) -> ConfigurationError:
    names = ", ".join(f'"{key}"' for key in keys)
    return ConfigurationError(
        f'Q_CLUSTER["cloud_tasks"] needs {names}: not set, and not detected (detection works '
        "on Cloud Run and App Engine).",
        check_id="django_q_cloudtasks.E003",
        hint=f"For local development, run python manage.py cloudtasks_emulator and set "
        f"{EMULATOR_ENV}={EMULATOR_ADDRESS} in the environment of every manage.py command "
        "(migrate, check, shell, runserver): the emulator needs no project or location. "
        f'In production, set {names} in Q_CLUSTER["cloud_tasks"].',
    )


def receiver_path() -> str | None:
    """The path the receiver is mounted at, or None when the URLconf does not include it."""
    try:
        return reverse(RECEIVER_URL_NAME)
    except NoReverseMatch:
        return None


def _detect_receiver_url() -> str | None:
    root, path = environment.detect_service_url(), receiver_path()
    return root + path if root and path else None


def _check_url(key: str, url: object, *, https: bool) -> None:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f'Q_CLUSTER["cloud_tasks"]["{key}"] must be an absolute http(s) URL, not {url!r}.',
            check_id="django_q_cloudtasks.E005",
        )
    if https and parts.scheme != "https":
        raise ConfigurationError(
            f'Q_CLUSTER["cloud_tasks"]["{key}"] must use https: {url!r}.',
            check_id="django_q_cloudtasks.E005",
            hint="Cloud Tasks attaches OIDC tokens to https targets only. "
            "Plain http is accepted in emulator mode.",
        )


def _beside(receiver_url: str, path: str) -> str:
    return receiver_url.rstrip("/") + "/" + path


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _string_list(cloud_tasks: Mapping[str, Any], key: str) -> list[str]:
    value = cloud_tasks.get(key) or []
    if isinstance(value, str) or not all(isinstance(item, str) for item in value):
        raise _invalid(key, "must be a list of strings")
    return list(value)


def _invalid(key: str, problem: str) -> ConfigurationError:
    return ConfigurationError(
        f'Q_CLUSTER["cloud_tasks"]["{key}"] {problem}.', check_id="django_q_cloudtasks.E011"
    )


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
