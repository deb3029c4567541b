"""Where a cluster's tasks run, and how long they may: its ``target``.

* ``"http"`` (the default): Cloud Tasks POSTs each task to the receiver's ``url``, with an
  OIDC token, and waits for the answer at most 30 minutes.
* ``"cloud_run_job"``: the receiver starts an execution of the Cloud Run job ``job`` for
  each task, which may run for 168 hours (``receiver/launcher.py``).
* ``"app_engine"``: Cloud Tasks sends each task inside App Engine to the receiver's path
  on the service ``service`` (and ``version``), with no token; App Engine lets it run for
  as long as the service's ``scaling`` lets a request last: 10 minutes (automatic), 24
  hours (basic, manual), 60 minutes (the flexible environment).

Each problem raises :class:`ConfigurationError` with its system check's id, as in
``conf.py``, which reads the rest of a cluster's settings.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from . import environment
from .exceptions import ConfigurationError

HTTP = "http"
CLOUD_RUN_JOB = "cloud_run_job"
APP_ENGINE = "app_engine"
TARGETS = (HTTP, CLOUD_RUN_JOB, APP_ENGINE)

# Cloud Tasks' bounds for an HTTP task's dispatch deadline, in seconds.
MIN_DISPATCH_DEADLINE = 15
MAX_DISPATCH_DEADLINE = 1800
DEFAULT_DISPATCH_DEADLINE = 600
# Time the receiver needs after a timed-out task to save its Failure and answer.
DISPATCH_MARGIN = 15

# Cloud Run Jobs' longest task timeout: 168 hours.
MAX_JOB_TIMEOUT = 168 * 3600
# Time an execution needs beyond the task's timeout: to start, save the result and stop.
JOB_MARGIN = 60
# Seconds Cloud Tasks waits for the receiver to start (or look after) a job execution.
DEFAULT_LAUNCH_DEADLINE = 60

# How long App Engine lets a request last, by the service's scaling (and environment).
APP_ENGINE_REQUEST_LIMITS = {"automatic": 600, "basic": 86400, "manual": 86400, "flexible": 3600}
# An App Engine task's explicit dispatch deadline: 15 s to 24 h 15 s.
MAX_APP_ENGINE_DEADLINE = 86400 + 15

JOB_ID = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
JOB_PATH = re.compile(r"^projects/([^/]+)/locations/([^/]+)/jobs/([^/]+)$")
# An App Engine service's or version's id.
APP_ENGINE_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
TARGET_KEYS = frozenset({"target", "job", "service", "version", "scaling"})


@dataclass(frozen=True)
class AppEngineRouting:
    """Where an App Engine target's tasks go inside the app, and how long they may run."""

    service: str | None  # None: App Engine's choice (the queue's routing, else "default")
    version: str | None  # None: the version that serves the service's traffic
    scaling: str  # a key of APP_ENGINE_REQUEST_LIMITS

    @property
    def request_limit(self) -> int:
        """Seconds App Engine lets one of this service's requests last."""
        return APP_ENGINE_REQUEST_LIMITS[self.scaling]


@dataclass(frozen=True)
class Target:
    """Where one cluster's tasks run."""

    kind: str = HTTP
    job: str | None = None  # the Cloud Run job's resource name, for CLOUD_RUN_JOB
    app_engine: AppEngineRouting | None = None  # for APP_ENGINE

    def deadline_for(self, timeout: int | None, explicit: int | None) -> int:
        """Seconds Cloud Tasks waits for the answer to a task with this django-q timeout;
        ``explicit``: the cluster's ``dispatch_deadline``, which wins."""
        if explicit is not None:
            return explicit
        if self.kind == CLOUD_RUN_JOB:
            return DEFAULT_LAUNCH_DEADLINE  # the receiver answers once it started one
        longest = MAX_DISPATCH_DEADLINE
        if self.app_engine is not None:
            longest = self.app_engine.request_limit + DISPATCH_MARGIN
            if timeout is None or timeout < 0:
                return longest
        elif timeout is None or timeout < 0:
            return DEFAULT_DISPATCH_DEADLINE
        return max(MIN_DISPATCH_DEADLINE, min(longest, timeout + DISPATCH_MARGIN))

    def longest_timeout(self, explicit_deadline: int | None) -> int:
        """The longest django-q timeout a task of this target may have."""
        if self.kind == CLOUD_RUN_JOB:
            return MAX_JOB_TIMEOUT - JOB_MARGIN
        if self.app_engine is not None:
            limit = self.app_engine.request_limit
            return min(limit, (explicit_deadline or limit + DISPATCH_MARGIN) - DISPATCH_MARGIN)
        return (explicit_deadline or MAX_DISPATCH_DEADLINE) - DISPATCH_MARGIN


def read_target(
    cluster: str, cloud_tasks: dict[str, Any], given: set[str], project: str, location: str
) -> Target:
    """A cluster's target from its ``cloud_tasks`` (``given``: the keys it sets itself, not
    inherited from the main cluster)."""
    kind = cloud_tasks.get("target", HTTP)
    if kind not in TARGETS:
        raise _error(
            f"Cluster {cluster!r} has target {kind!r}.",
            f'Set "target" to {HTTP!r} (run tasks in the receiver, the default), '
            f"{CLOUD_RUN_JOB!r} (each task in an execution of a Cloud Run job) or "
            f"{APP_ENGINE!r} (tasks routed inside App Engine to the receiver).",
        )
    for key, belongs in (
        ("job", CLOUD_RUN_JOB),
        ("service", APP_ENGINE),
        ("version", APP_ENGINE),
        ("scaling", APP_ENGINE),
    ):
        if key in given and cloud_tasks[key] is not None and kind != belongs:
            raise _error(
                f"Cluster {cluster!r} sets {key!r}, which only clusters with target {belongs!r} have.",
                f'Add "target": "{belongs}", or remove {key!r}.',
            )
    if kind == CLOUD_RUN_JOB:
        return Target(kind, job=_job(cluster, cloud_tasks.get("job"), project, location))
    if kind == APP_ENGINE:
        routing = dict(cloud_tasks)
        if "service" in given:  # a service of its own: the main cluster's version, scaling
            routing.update({key: None for key in ("version", "scaling") if key not in given})
        return Target(kind, app_engine=_app_engine(cluster, routing))
    return Target()


def check_deadline(cluster: str, target: Target, deadline: object) -> None:
    """A cluster's explicit ``dispatch_deadline``, in the range of its target's tasks."""
    longest = MAX_APP_ENGINE_DEADLINE if target.app_engine is not None else MAX_DISPATCH_DEADLINE
    if deadline is not None and (
        not isinstance(deadline, int)
        or isinstance(deadline, bool)
        or not MIN_DISPATCH_DEADLINE <= deadline <= longest
    ):
        raise ConfigurationError(
            f"Cluster {cluster!r}: dispatch_deadline {deadline!r} is out of Cloud Tasks' range.",
            check_id="django_q_cloudtasks.E007",
            hint=f"Use a whole number of seconds from {MIN_DISPATCH_DEADLINE} to {longest}.",
        )


def check_timeout(cluster: str, target: Target, timeout: int | None, deadline: int | None) -> None:
    """A cluster's django-q ``timeout``, within what its target lets a task run."""
    longest = target.longest_timeout(deadline)
    if timeout is None or timeout <= longest:
        return
    if target.kind == CLOUD_RUN_JOB:
        raise ConfigurationError(
            f"Cluster {cluster!r} has timeout {timeout} s, but a Cloud Run job's task runs at "
            f"most {MAX_JOB_TIMEOUT} s (168 hours).",
            check_id="django_q_cloudtasks.E020",
            hint=f"Lower the timeout to {longest} s or less (the execution needs a margin to "
            "start and save the result), or split the work into tasks.",
        )
    routing = target.app_engine
    if routing is not None and longest == routing.request_limit:  # not dispatch_deadline
        raise ConfigurationError(
            f"Cluster {cluster!r} has timeout {timeout} s, but App Engine lets a request of "
            f"{_scaling_words(routing.scaling)} last {_span(routing.request_limit)}.",
            check_id="django_q_cloudtasks.E022",
            hint=f"Lower the timeout to {longest} s or less; or route the cluster's tasks to a "
            'service with basic or manual scaling, which App Engine lets run 24 hours ("scaling": '
            '"basic" beside its "service"); or run them in a Cloud Run job ("target": '
            '"cloud_run_job").',
        )
    explicit = f"{deadline} s (dispatch_deadline)" if deadline else f"{MAX_DISPATCH_DEADLINE} s"
    raise ConfigurationError(
        f"Cluster {cluster!r} has timeout {timeout} s, but Cloud Tasks waits at most "
        f"{explicit} for an answer.",
        check_id="django_q_cloudtasks.E007",
        hint=f"Lower the timeout to {longest} s or less (the receiver needs a margin to save "
        "the result), or raise dispatch_deadline. For longer work, run the cluster's tasks in a "
        'Cloud Run job: "target": "cloud_run_job" (see the guide Long tasks on Cloud Run Jobs, '
        "docs/how-to/long-tasks.md).",
    )


def _job(cluster: str, job: object, project: str, location: str) -> str:
    if job is None:
        raise _error(
            f'Cluster {cluster!r} has target "{CLOUD_RUN_JOB}", but no "job".',
            'Set "job" to the name of the Cloud Run job that runs its tasks, e.g. '
            '"mysite-worker" (or projects/PROJECT/locations/REGION/jobs/JOB).',
        )
    if isinstance(job, str) and JOB_ID.match(job):
        return f"projects/{project}/locations/{location}/jobs/{job}"
    if isinstance(job, str) and JOB_PATH.match(job) and JOB_ID.match(job.rsplit("/", 1)[1]):
        return job
    raise _error(
        f"Cluster {cluster!r}: {job!r} is not a Cloud Run job name.",
        "A job name has up to 63 lowercase letters, digits and hyphens, starting with a "
        "letter; or give its resource name, projects/PROJECT/locations/REGION/jobs/JOB.",
    )


def _app_engine(cluster: str, cloud_tasks: dict[str, Any]) -> AppEngineRouting:
    # By default, the service that enqueues: App Engine's runtime names it.
    own_service = os.environ.get("GAE_SERVICE") or None
    service = cloud_tasks.get("service") or own_service
    version = cloud_tasks.get("version")
    for key, value in (("service", service), ("version", version)):
        if value is not None and (not isinstance(value, str) or not APP_ENGINE_ID.match(value)):
            raise _error(
                f"Cluster {cluster!r}: {value!r} is not an App Engine {key} id.",
                f"An App Engine {key} id has up to 63 lowercase letters, digits and hyphens.",
            )
    # The environment tells its own service's (the flexible one's) alone: another
    # service's scaling is automatic unless the settings say otherwise.
    on_flexible = environment.app_engine_environment() == "flexible" and service == own_service
    scaling = cloud_tasks.get("scaling") or ("flexible" if on_flexible else "automatic")
    if scaling not in APP_ENGINE_REQUEST_LIMITS:
        raise _error(
            f"Cluster {cluster!r} has scaling {scaling!r}.",
            f"Set it to the scaling of the service its tasks go to: "
            f"{', '.join(map(repr, APP_ENGINE_REQUEST_LIMITS))}.",
        )
    return AppEngineRouting(service, version, scaling)


def _scaling_words(scaling: str) -> str:
    if scaling == "flexible":
        return "the flexible environment"
    return f"a service with {scaling} scaling"


def _span(seconds: int) -> str:
    return f"{seconds // 3600} hours" if seconds >= 7200 else f"{seconds // 60} minutes"


def _error(message: str, hint: str) -> ConfigurationError:
    return ConfigurationError(message, check_id="django_q_cloudtasks.E019", hint=hint)
