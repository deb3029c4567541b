"""Cloud Tasks' tasks: created (every task, hop and wake-up this package sends, as HTTP or
App Engine tasks), deleted and run now, through the one policy of ``api.py``."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from ..conf import QueueSettings
from ..exceptions import EnqueueError, QueueUnavailable
from . import api
from .client import tasks_client

logger = logging.getLogger("django_q_cloudtasks")

ENQUEUER = "roles/cloudtasks.enqueuer on the queue"
DELETER = "roles/cloudtasks.taskDeleter"
RUNNER = "roles/cloudtasks.taskRunner"


def create_task(
    qs: QueueSettings,
    *,
    name: str,
    uri: str,
    body: bytes,
    content_type: str,
    deadline: int,
    schedule_time: datetime | None = None,
    task_id: str | None = None,
) -> bool:
    """Create one named task in ``qs``'s queue: POST ``body`` to ``uri``.

    For an HTTP target ``uri`` is a URL, and the request carries an OIDC token of the
    cluster's service account; for an App Engine target it is a path inside the app,
    routed to the cluster's service and version, with no token (App Engine vouches for
    its requests). Failures that pass are retried for ``enqueue_timeout``: safely, since
    the task is named. Returns False when a task of that name exists already, which
    counts as done: an earlier attempt, or a concurrent caller, created it. ``task_id``,
    the django-q task the Cloud Task is for (default: ``name``), is what an error names.
    """
    from google.api_core import exceptions  # see api.py's docstring

    cloud_task: dict[str, Any] = {
        "name": qs.task_path(name),
        "dispatch_deadline": {"seconds": deadline},
    }
    request: dict[str, Any] = {
        "http_method": "POST",
        "headers": {"Content-Type": content_type},
        "body": body,
    }
    if qs.app_engine is not None:
        routing = {"service": qs.app_engine.service, "version": qs.app_engine.version}
        request["relative_uri"] = uri
        request["app_engine_routing"] = {k: v for k, v in routing.items() if v}
        cloud_task["app_engine_http_request"] = request
    else:
        request["url"] = uri
        if qs.service_account_email:
            request["oidc_token"] = {
                "service_account_email": qs.service_account_email,
                "audience": qs.audience,
            }
        cloud_task["http_request"] = request
    if schedule_time is not None:
        cloud_task["schedule_time"] = schedule_time
    budget = api.patient(qs.enqueue_timeout)
    queue_path = qs.queue_path_for(name)
    try:
        api.call(
            tasks_client(qs.emulator_host).create_task,
            budget,
            parent=queue_path,
            task=cloud_task,
        )
    except exceptions.AlreadyExists:
        logger.debug("Task %s already exists in %s", name, queue_path)
        return False
    except api.failures() as error:
        needs = ENQUEUER + (
            f" and roles/iam.serviceAccountUser on {qs.service_account_email}"
            if qs.service_account_email and qs.app_engine is None
            else ""
        )
        raise EnqueueError(
            f"Could not enqueue task {task_id or name} to Cloud Tasks queue {queue_path}: "
            + api.explain(error, qs, budget, needs=needs),
            queue_path=queue_path,
            task_id=task_id or name,
        ) from error
    return True


def delete_task(qs: QueueSettings, task_id: str) -> bool:
    """Delete a waiting task; False if it was gone (it ran, or was deleted)."""
    return _on_task(qs, "delete a task of", "delete_task", task_id, needs=DELETER)


def run_task(qs: QueueSettings, task_id: str) -> bool:
    """Dispatch a waiting task now, even from a paused queue; False if it was gone. Never
    retried: a second attempt could deliver it twice."""
    return _on_task(qs, "run a task of", "run_task", task_id, needs=RUNNER)


def _on_task(qs: QueueSettings, verb: str, method: str, task_id: str, *, needs: str) -> bool:
    from google.api_core import exceptions  # see api.py's docstring

    # The task is in the queue its name chooses, unless it was enqueued before the cluster
    # had as many shards as it has now: then it may be in any of them.
    home = qs.queue_path_for(task_id)
    for queue_path in (home, *(path for path in qs.queue_paths if path != home)):
        try:
            api.call(
                getattr(tasks_client(qs.emulator_host), method),
                api.AT_ONCE,
                name=f"{queue_path}/tasks/{task_id}",
            )
        except exceptions.NotFound:
            # A screen a moment old often asks for a task that is gone: not a queue to create.
            continue
        except api.failures() as error:
            raise QueueUnavailable(
                f"Could not {verb} queue {queue_path}: "
                + api.explain(error, qs, api.AT_ONCE, needs=needs)
            ) from error
        return True
    return False
