"""CloudTasksBroker: the enqueue side. django-q hands it signed packages; it creates
Cloud Tasks HTTP tasks that POST each package back to the receiver view.

django-q builds a new broker object on nearly every call, so constructing one is cheap:
it looks up cached settings and nothing else. The API client is made on first use.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any

from django.utils import timezone
from django_q.brokers import Broker
from django_q.humanhash import humanize
from django_q.signing import SignedPackage

from . import delays, payloads, queues
from .client import get_client
from .conf import QueueSettings, main_cluster_name, queue_settings
from .exceptions import EnqueueError
from .packages import CONTENT_TYPE, func_name

logger = logging.getLogger("django_q_cloudtasks")

# qmonitor polls queue_size() every second; List and Get calls are rate-limited.
STATS_TTL_SECONDS = 5.0
# A qcluster that calls dequeue() on this push-only broker sleeps this long per call.
IDLE_DEQUEUE_SECONDS = 5.0


class CloudTasksBroker(Broker):  # type: ignore[misc]
    """A django-q broker whose queue is a Google Cloud Tasks queue.

    Tasks are pushed: Cloud Tasks POSTs each one to the receiver view, so no ``qcluster``
    needs to run. ``list_key`` is the django-q cluster name; each cluster has its own queue.

    ``async_task(..., q_options={"broker": CloudTasksBroker(cluster, ...)})`` enqueues one
    task with options django-q has no words for: ``task_id`` replaces django-q's random id
    (schedule slots use it for a deterministic one), ``run_after`` delays the task.
    """

    _stats: dict[str, tuple[float, Any]] = {}
    _warned_dequeue = threading.Event()

    def __init__(
        self,
        list_key: str | None = None,
        *,
        task_id: str | None = None,
        run_after: datetime | None = None,
    ) -> None:
        super().__init__(list_key)
        self.task_id = task_id
        self.run_after = run_after

    @staticmethod
    def get_connection(list_key: str | None = None) -> QueueSettings:
        return queue_settings(list_key)

    @property
    def settings(self) -> QueueSettings:
        """The settings of the cluster ``list_key`` names now: django-q's own code and its
        users change ``list_key`` on a broker already made."""
        return queue_settings(self.list_key)

    def info(self) -> str:
        where = (
            f" (emulator at {self.settings.emulator_host})" if self.settings.emulator_host else ""
        )
        return f"Cloud Tasks {self.settings.queue_path}{where}"

    def enqueue(self, task: str) -> str:
        """Create the Cloud Tasks task for one signed package; returns the django-q task id.

        The Cloud Tasks task is named after the django-q id, so a CreateTask retried after
        a lost answer finds its first copy (ALREADY_EXISTS) instead of making a second.
        A package whose ``run_after`` lies beyond Cloud Tasks' 30 days is sent to arrive
        earlier, and the receiver sends it on again (see ``delays.py``). A package over
        Cloud Tasks' 1 MiB is kept in the database and sent by reference (``payloads.py``).
        """
        package = SignedPackage.loads(task)  # our own package, signed a moment ago
        changes: dict[str, Any] = {}
        if package.get("cluster", main_cluster_name()) != self.list_key:
            changes["cluster"] = self.list_key  # the receiver runs it with this cluster's settings
        if self.task_id is not None:
            changes.update(id=self.task_id, name=humanize(self.task_id))
        if self.run_after is not None:
            changes["run_after"] = self.run_after
        if changes:
            package.update(changes)
            task = SignedPackage.dumps(package)
        return self._create(task, package, new=True)

    def forward(self, task: str, package: dict[str, Any]) -> str:
        """Send a delivered task on to its next hop (``delays.py``): the signed package as the
        receiver verified it, whose key may be one of ``SECRET_KEY_FALLBACKS``, and
        ``package``, what it holds."""
        return self._create(task, package, new=False)

    def _create(self, task: str, package: dict[str, Any], *, new: bool) -> str:
        task_id: str = package["id"]
        body, content_type = task.encode(), CONTENT_TYPE
        qs = self.settings
        if new and len(body) > qs.max_package_bytes:  # a hop was measured when enqueued
            raise EnqueueError(
                f"Task {task_id} ({package['func']!r}) is {len(body):,} bytes signed, over the "
                f"limit of {qs.max_package_bytes:,} (max_package_bytes). Pass a reference to "
                "the data (a primary key, a storage path) instead of the data itself.",
                queue_path=qs.queue_path,
                task_id=task_id,
            )
        if len(body) > payloads.MAX_TASK_BODY_BYTES:
            body = payloads.store(task_id, task, name=package["name"], func=func_name(package))
            content_type = payloads.REFERENCE_CONTENT_TYPE
        name, schedule_time = delays.next_hop(task_id, package.get("run_after"), timezone.now())
        timeout = package.get("timeout")
        try:
            create_http_task(
                qs,
                name=name,
                url=qs.url,
                body=body,
                content_type=content_type,
                deadline=qs.deadline_for(qs.timeout if timeout is None else timeout),
                schedule_time=schedule_time,
                task_id=task_id,
            )
        except EnqueueError:
            # A new task not enqueued must not run: a stray Cloud Task finds no payload. A hop
            # keeps it: the delivery that forwards it is retried.
            if new and content_type == payloads.REFERENCE_CONTENT_TYPE:
                payloads.discard(task_id)
            raise
        return task_id

    def dequeue(self) -> None:
        """Push-only: a ``qcluster`` started with this broker has nothing to pull.

        Its scheduler still enqueues due schedules; its workers stay idle. Sleeping here
        keeps the pusher loop from spinning a CPU.
        """
        if not self._warned_dequeue.is_set():
            self._warned_dequeue.set()
            logger.warning(
                "CloudTasksBroker is push-only: Cloud Tasks delivers %s's tasks to the receiver "
                "at %s, so this qcluster's workers stay idle. You do not need a qcluster.",
                self.settings.queue_path,
                self.settings.url,
            )
        time.sleep(IDLE_DEQUEUE_SECONDS)

    def queue_size(self) -> int | None:
        """Tasks waiting in the queue, as django-q counts them: not those being delivered
        now (Cloud Tasks counts both). From the statistics, or a count of ListTasks on an
        emulator without them; None, within 15 s, when the queue cannot be read."""
        stats = self._queue_stats()
        return stats["waiting"] if stats else None

    def lock_size(self) -> int | None:
        """Tasks being delivered right now; None where Cloud Tasks does not say."""
        stats = self._queue_stats()
        return stats["running"] if stats else None

    def ping(self) -> bool:
        """Whether the queue answers (GetQueue), within ``queues.API_TIMEOUT``: a health
        check answers now, with no retries."""
        try:
            queues.check(self.settings)
        except queues.QueueUnavailable as error:
            logger.warning("%s", error)
            return False
        return True

    def delete(self, task_id: str) -> bool:
        """Cancel a waiting task by its django-q id; False if it already ran or was deleted."""
        from google.api_core import exceptions

        try:
            get_client(self.settings.emulator_host).delete_task(
                name=self.settings.task_path(task_id), timeout=10
            )
        except exceptions.NotFound:
            return False
        return True

    def purge_queue(self) -> None:
        """Delete every waiting task of the queue (Cloud Tasks does it within a minute); a
        queue that does not exist has none. Raises QueueUnavailable when Cloud Tasks fails."""
        queues.purge(self.settings)
        self._stats.pop(self.settings.queue_path, None)

    def delete_queue(self) -> None:
        """Purges the queue but never deletes it: Cloud Tasks locks a deleted queue's name
        for days, which would break enqueueing until then."""
        self.purge_queue()

    def acknowledge(self, task_id: str) -> None:
        """Nothing to do: the receiver's 2xx answer is what acknowledges a pushed task."""

    def fail(self, task_id: str) -> None:
        """Nothing to do: the receiver's non-2xx answer is what makes Cloud Tasks retry."""

    def _queue_stats(self) -> dict[str, int | None] | None:
        path = self.settings.queue_path
        cached = self._stats.get(path)
        if cached and time.monotonic() - cached[0] < STATS_TTL_SECONDS:
            return cached[1]  # type: ignore[no-any-return]
        stats = self._fetch_stats()
        self._stats[path] = (time.monotonic(), stats)
        return stats

    def _fetch_stats(self) -> dict[str, int | None] | None:
        try:
            stats = queues.inspect(self.settings).stats
        except queues.QueueUnavailable as error:
            logger.warning("%s", error)
            return None
        if stats is None:
            return None
        return {"waiting": stats.tasks - (stats.running or 0), "running": stats.running}


def create_http_task(
    qs: QueueSettings,
    *,
    name: str,
    url: str,
    body: bytes,
    content_type: str,
    deadline: int,
    schedule_time: datetime | None = None,
    task_id: str | None = None,
) -> bool:
    """Create one named HTTP task in ``qs``'s queue, signed with its OIDC identity.

    Transient errors are retried for up to ``enqueue_timeout``: safely, because the task
    is named. Returns False when a task of that name exists already, which counts as
    done: an earlier attempt, or a concurrent caller, created it. ``task_id``, the
    django-q task the Cloud Task is for (default: ``name``), is what an error names.
    """
    from google.api_core import exceptions, retry

    http_request: dict[str, Any] = {
        "http_method": "POST",
        "url": url,
        "headers": {"Content-Type": content_type},
        "body": body,
    }
    if qs.service_account_email:
        http_request["oidc_token"] = {
            "service_account_email": qs.service_account_email,
            "audience": qs.audience,
        }
    cloud_task: dict[str, Any] = {
        "name": qs.task_path(name),
        "http_request": http_request,
        "dispatch_deadline": {"seconds": deadline},
    }
    if schedule_time is not None:
        cloud_task["schedule_time"] = schedule_time
    transient = retry.if_exception_type(
        exceptions.ServiceUnavailable,
        exceptions.DeadlineExceeded,
        exceptions.InternalServerError,
        exceptions.TooManyRequests,
        exceptions.Aborted,
        exceptions.Unknown,
    )
    policy = retry.Retry(
        predicate=transient,
        initial=0.2,
        maximum=5.0,
        multiplier=2.0,
        timeout=qs.enqueue_timeout,
    )
    try:
        get_client(qs.emulator_host).create_task(
            parent=qs.queue_path,
            task=cloud_task,  # type: ignore[arg-type]  # proto-plus takes a dict as well
            retry=policy,
            timeout=min(10.0, qs.enqueue_timeout),
        )
    except exceptions.AlreadyExists:
        logger.debug("Task %s already exists in %s", name, qs.queue_path)
        return False
    except exceptions.RetryError as error:
        raise _enqueue_error(qs, task_id or name, error.cause or error) from error
    except exceptions.GoogleAPICallError as error:
        raise _enqueue_error(qs, task_id or name, error) from error
    return True


def _enqueue_error(qs: QueueSettings, task_id: str, error: BaseException) -> EnqueueError:
    from google.api_core import exceptions

    hints: list[tuple[type[BaseException] | tuple[type[BaseException], ...], str]] = [
        (
            exceptions.NotFound,
            f"The queue does not exist. Create it: gcloud tasks queues create {qs.queue} "
            f"--location={qs.location} --project={qs.project}",
        ),
        (
            exceptions.PermissionDenied,
            "The caller needs roles/cloudtasks.enqueuer on the queue"
            + (
                f" and roles/iam.serviceAccountUser on {qs.service_account_email}"
                if qs.service_account_email
                else ""
            )
            + ".",
        ),
        (
            (exceptions.ServiceUnavailable, exceptions.DeadlineExceeded),
            f"Cloud Tasks did not answer within {qs.enqueue_timeout:g} s"
            + (f"; is the emulator at {qs.emulator_host} running?" if qs.emulator_host else "."),
        ),
    ]
    hint = next((text for kind, text in hints if isinstance(error, kind)), "")
    return EnqueueError(
        f"Could not enqueue task {task_id} to Cloud Tasks queue {qs.queue_path}: {error}. {hint}".strip(),
        queue_path=qs.queue_path,
        task_id=task_id,
    )
