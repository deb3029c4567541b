"""The enqueue side: ``CloudTasksBroker``, and ``async_task_after``.

django-q hands the broker signed packages; it creates Cloud Tasks HTTP tasks that POST
each package back to the receiver view (``gcp/tasks.py``). django-q builds a new broker
object on nearly every call, so constructing one is cheap: it looks up cached settings and
nothing else. The API client is made on first use.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any

from django.utils import timezone
from django_q.brokers import Broker
from django_q.conf import Conf
from django_q.humanhash import humanize
from django_q.signing import SignedPackage
from django_q.tasks import async_task

from . import delays, payloads, wire
from .conf import QueueSettings, main_cluster_name, queue_settings
from .exceptions import EnqueueError, QueueUnavailable
from .gcp import queue_admin
from .gcp.tasks import create_task, delete_task

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

    # Queue statistics by queue path, with the time read: shared by every broker object.
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
        shards = f" and {self.settings.shards - 1} shards" if self.settings.shards > 1 else ""
        return f"Cloud Tasks {self.settings.queue_path}{shards}{where}"

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

    def forward(self, task: str, package: dict[str, Any], *, name: str | None = None) -> str:
        """Send a delivered task on to its next hop (``delays.py``): the signed package as the
        receiver verified it, whose key may be one of ``SECRET_KEY_FALLBACKS``, and
        ``package``, what it holds. ``name``: a Cloud Task of that name, due now, instead."""
        return self._create(task, package, new=False, name=name)

    def _create(
        self, task: str, package: dict[str, Any], *, new: bool, name: str | None = None
    ) -> str:
        task_id: str = package["id"]
        body, content_type = task.encode(), wire.PACKAGE_CONTENT_TYPE
        stored = False  # a payload stored by this call, to discard if no Cloud Task is made
        qs = self.settings
        if new and len(body) > qs.max_package_bytes:  # a hop was measured when enqueued
            raise EnqueueError(
                f"Task {task_id} ({package['func']!r}) is {len(body):,} bytes signed, over the "
                f"limit of {qs.max_package_bytes:,} (max_package_bytes). Pass a reference to "
                "the data (a primary key, a storage path) instead of the data itself.",
                queue_path=qs.queue_path,
                task_id=task_id,
            )
        # A job execution reads the package from the database (receiver/job_runner.py).
        if len(body) > wire.MAX_TASK_BODY_BYTES or qs.runs_in_job:
            kept, stored = payloads.store(task_id, task, replace=not new)
            body = wire.reference(task_id, kept, name=package["name"], func=wire.func_name(package))
            content_type = wire.REFERENCE_CONTENT_TYPE
        hop, schedule_time = delays.next_hop(task_id, package.get("run_after"), timezone.now())
        if name is None:
            name = hop
        else:
            schedule_time = None
        timeout = package.get("timeout")
        try:
            create_task(
                qs,
                name=name,
                uri=qs.receiver_uri,
                body=body,
                content_type=content_type,
                deadline=qs.deadline_for(qs.timeout if timeout is None else timeout),
                schedule_time=schedule_time,
                task_id=task_id,
            )
        except EnqueueError:
            # A new task not enqueued must not run: a stray Cloud Task finds no payload. A hop
            # keeps it: the delivery that forwards it is retried; so does an earlier Cloud
            # Task of the same id, whose payload this call did not store.
            if new and stored:
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
                self.settings.receiver_uri,
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
        """Whether the queue answers (GetQueue, one attempt of ``api.AT_ONCE``)."""
        try:
            queue_admin.check(self.settings)
        except QueueUnavailable as error:
            logger.warning("%s", error)
            return False
        return True

    def delete(self, task_id: str) -> bool:
        """Cancel a waiting task by its django-q id, and drop its payload if it has one;
        False if it already ran or was deleted."""
        if not delete_task(self.settings, task_id):
            return False
        payloads.discard(task_id)
        return True

    def purge_queue(self) -> None:
        """Delete every waiting task of the queue (Cloud Tasks does it within a minute); a
        queue that does not exist has none. Raises QueueUnavailable when Cloud Tasks fails."""
        queue_admin.purge(self.settings)
        self._stats.pop(self.settings.queue_path, None)

    def set_stat(self, key: str, value: str, timeout: int) -> None:
        """Write a status entry (a receiver's row, ``receiver/status.py``), then list it.

        django-q lists the key first, so a reader may find it listed with no entry yet and
        unlist it. Entries whose time ran out leave the list here, when a writer rewrites
        it, never in a reader (``get_stats``).
        """
        if not self.cache:
            return
        self.cache.set(key, value, timeout)
        listed = self.cache.get(Conf.Q_STAT) or []
        alive = self.cache.get_many(listed)
        keys = [listed_key for listed_key in listed if listed_key in alive]
        if key not in keys:
            keys.append(key)
        if keys != listed:
            self.cache.set(Conf.Q_STAT, keys, None)  # bounded: the writers prune it

    def get_stats(self, pattern: str) -> list[str]:
        """The status entries django-q lists, read without writing anything.

        django-q's own reader writes the list back without the entries gone, and so drops
        every key a writer listed since it read the list: qmonitor, polling, would drop
        the rows of processes that have just started tasks.
        """
        if not self.cache:
            return []
        listed = self.cache.get(Conf.Q_STAT) or []
        found = self.cache.get_many(listed)
        return [found[key] for key in listed if key in found]

    @classmethod
    def forget_stats(cls) -> None:
        """Read the queues' statistics afresh at the next call, not from the last 5 s."""
        cls._stats.clear()

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
            stats = queue_admin.inspect(self.settings).stats
        except QueueUnavailable as error:
            logger.warning("%s", error)
            return None
        if stats is None:
            return None
        return {"waiting": stats.tasks - (stats.running or 0), "running": stats.running}


def async_task_after(run_after: delays.RunAfter, func: Any, *args: Any, **kwargs: Any) -> str:
    """``django_q.tasks.async_task``, delivered no earlier than ``run_after``.

    ``run_after`` is an aware datetime, a timedelta or a number of seconds from now.
    Every other argument is async_task's, ``q_options`` and ``cluster`` included; the task
    id is returned. A time in the past runs the task now. In django-q's sync mode the
    task runs at once, like every task there.
    """
    q_options = dict(kwargs.pop("q_options", None) or {})
    cluster = q_options.get("cluster", kwargs.get("cluster"))
    q_options["broker"] = CloudTasksBroker(cluster, run_after=delays.resolve(run_after))
    task_id: str = async_task(func, *args, q_options=q_options, **kwargs)
    return task_id
