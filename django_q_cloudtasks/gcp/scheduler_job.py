"""The Cloud Scheduler job that calls the tick every minute, in production.

It POSTs to the tick endpoint with an OIDC token of the tasks service account, which the
endpoint checks exactly as it checks Cloud Tasks' deliveries. Needs the optional
``google-cloud-scheduler`` (``pip install 'django-q-cloudtasks[scheduler]'``). Calls are
retried for ``enqueue_timeout`` (``api.patient``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..conf import QueueSettings
from ..exceptions import ProvisioningError
from . import api, client
from .provisioning import Change

EVERY_MINUTE = "* * * * *"
TIME_ZONE = "Etc/UTC"
# A tick plans a few dozen slots; a minute is plenty, and the next tick comes anyway.
ATTEMPT_DEADLINE_SECONDS = 60
DESCRIPTION = "Plans the django-q schedules of {queue}: calls the django-q-cloudtasks tick."


ADMIN = (
    "roles/cloudscheduler.admin, and roles/iam.serviceAccountUser on the service account "
    "the job signs its token as"
)
API_DISABLED = (
    "Is the Cloud Scheduler API enabled? gcloud services enable cloudscheduler.googleapis.com"
)


@dataclass(frozen=True)
class JobSpec:
    """The job as this project wants it."""

    name: str
    uri: str
    service_account_email: str
    audience: str
    schedule: str = EVERY_MINUTE
    time_zone: str = TIME_ZONE
    description: str = ""

    @classmethod
    def for_queue(
        cls, queue: QueueSettings, *, job_id: str | None = None, location: str | None = None
    ) -> JobSpec:
        if not queue.service_account_email:
            raise ValueError(
                'Q_CLUSTER["cloud_tasks"]["service_account_email"] is not set: the job needs '
                "an account to sign its OIDC token as."
            )
        job_id = job_id or f"{queue.queue}-tick"
        return cls(
            name=f"projects/{queue.project}/locations/{location or queue.location}/jobs/{job_id}",
            uri=queue.tick_url,
            service_account_email=queue.service_account_email,
            audience=queue.audience,
            description=DESCRIPTION.format(queue=queue.queue_path),
        )

    @property
    def parent(self) -> str:
        return self.name.rsplit("/jobs/", 1)[0]

    def fields(self) -> dict[str, Any]:
        """The job's fields this project manages, as the API names them."""
        return {
            "description": self.description,
            "schedule": self.schedule,
            "time_zone": self.time_zone,
            "http_target.uri": self.uri,
            "http_target.http_method": "POST",
            "http_target.oidc_token.service_account_email": self.service_account_email,
            "http_target.oidc_token.audience": self.audience,
            "attempt_deadline": f"{ATTEMPT_DEADLINE_SECONDS}s",
        }

    def job(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "schedule": self.schedule,
            "time_zone": self.time_zone,
            "http_target": {
                "uri": self.uri,
                "http_method": "POST",
                "oidc_token": {
                    "service_account_email": self.service_account_email,
                    "audience": self.audience,
                },
            },
            "attempt_deadline": {"seconds": ATTEMPT_DEADLINE_SECONDS},
        }


def differences(spec: JobSpec, existing: Any) -> dict[str, tuple[Any, Any]]:
    """Field by field, (existing value, wanted value) where the job differs from ``spec``."""
    actual = _fields_of(existing)
    return {
        key: (actual.get(key), wanted)
        for key, wanted in spec.fields().items()
        if actual.get(key) != wanted
    }


def sync(
    spec: JobSpec, queue: QueueSettings, *, dry_run: bool = False
) -> tuple[Change, dict[str, tuple[Any, Any]]]:
    """Create the job, or update the fields that differ; idempotent. Raises MissingExtra
    without the client, ProvisioningError when Cloud Scheduler fails or refuses."""
    from google.api_core import exceptions  # see api.py's docstring

    budget = api.patient(queue.enqueue_timeout)
    try:
        scheduler = client.scheduler_client()
        try:
            existing = api.call(scheduler.get_job, budget, name=spec.name)
        except exceptions.NotFound:
            if not dry_run:
                api.call(scheduler.create_job, budget, parent=spec.parent, job=spec.job())
            return Change.CREATED, {key: (None, value) for key, value in spec.fields().items()}
        changes = differences(spec, existing)
        if not changes:
            return Change.UNCHANGED, {}
        if not dry_run:
            mask = sorted({key.split(".")[0] for key in changes})
            api.call(scheduler.update_job, budget, job=spec.job(), update_mask={"paths": mask})
    except api.failures() as error:
        hint = api.explain(error, queue, budget, needs=ADMIN, missing=API_DISABLED)
        raise ProvisioningError(
            f"Cloud Scheduler could not set up job {spec.name}: {hint}", resource=spec.name
        ) from error
    return Change.UPDATED, changes


def _fields_of(job: Any) -> dict[str, Any]:
    target = job.http_target
    deadline = job.attempt_deadline
    return {
        "description": job.description,
        "schedule": job.schedule,
        "time_zone": job.time_zone,
        "http_target.uri": target.uri,
        "http_target.http_method": target.http_method.name,
        "http_target.oidc_token.service_account_email": target.oidc_token.service_account_email,
        "http_target.oidc_token.audience": target.oidc_token.audience,
        "attempt_deadline": f"{int(deadline.total_seconds())}s" if deadline else None,
    }
