"""The receivers in django-q's own monitors: ``qinfo`` and ``qmonitor`` list each process
that ran tasks recently, as they list a cluster.

django-q finds its clusters through status entries they keep in the Django cache
(``Q_CLUSTER["cache"]``). No cluster runs here: the processes serving the receiver run
the tasks, so each of them keeps such an entry, its *row* (:func:`row`), while it runs
tasks and for ``TTL`` after its last one (nothing says when a Cloud Run instance is gone).
A row is django-q's own ``Status``, marked as a receiver's: what the cache holds must
unpickle in every process reading it, whatever revision of this package it runs.
qmonitor's columns then read:

- Host: the host name, with the Cloud Run revision (``K_REVISION``) in brackets if set, or
  in a Cloud Run job execution its name (``CLOUD_RUN_EXECUTION``);
- Id: the last 8 characters of the process's random id;
- State: Working while tasks run in the process, else Idle;
- Pool: 1, the process itself (``workers`` holds its pid);
- TQ: tasks in flight in the process now (more than 1 under a threaded server);
- RQ: 0, as results are saved inside the request: there is no result queue;
- RC: 0, as nothing restarts a process in place;
- Up: the time since the process loaded the receiver (at its start or first request).

Every instance must share the cache (Redis, Memcached, the database cache) for qmonitor
to list them all: with ``LocMemCache`` each process sees only itself. django-q keeps the
list of entries in one cache key, rewritten without a lock by every writer: a process
with a row checks each second, while its thread lives, that the row is still listed, and
writes it again if another process's write dropped it. Readers leave the list alone
(``CloudTasksBroker.get_stats``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime

from django.utils import timezone
from django_q.conf import Conf
from django_q.signing import SignedPackage
from django_q.status import Stat, Status

from ..broker import CloudTasksBroker

logger = logging.getLogger("django_q_cloudtasks")

# How long a process stays listed after its last task: "recently".
TTL = 300
# The fewest seconds between two writes of a process's entry; the entry is at most this
# much behind.
WRITE_EVERY = 1.0
# A process running long tasks rewrites its unchanged entry this often, to stay listed.
KEEP_ALIVE = TTL / 3
# Writes of an entry that a concurrent writer keeps dropping from django-q's list.
LIST_ATTEMPTS = 5


def row(instance_id: str, *, host: str, tob: datetime, in_flight: int, finished: int) -> Status:
    """A process serving the receiver, in the shape django-q's monitors read a cluster in.

    ``finished`` (tasks this process has run) and ``receiver`` (True) are ours: qmonitor
    does not show them.
    """
    status = Status(os.getpid(), instance_id)
    status.host = host
    status.workers = [status.pid]
    status.tob = tob
    status.task_q_size = in_flight
    status.status = Conf.WORKING if in_flight else Conf.IDLE
    status.finished = finished
    status.receiver = True
    return status


class StatusWriter:
    """Counts the tasks in flight in this process and keeps its row current.

    Requests only change the count, under a lock: the cache is never on a task's path. A
    background thread, alive while tasks run and for a moment after, writes the entry when
    it changed, at most every ``WRITE_EVERY`` seconds: a process running a hundred tasks a
    second writes it once a second, and the end of its last task within a second.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything: a forked child is a new process, with nothing in flight."""
        self._lock = threading.Lock()  # the counts
        self._writing = threading.Lock()  # one write at a time, each of the latest state
        self._thread: threading.Thread | None = None
        self._instance_id = uuid.uuid4().hex
        self._host = _host()
        self._started = timezone.now()
        self._in_flight = 0
        self._finished = 0
        self._dirty = False
        self._written = 0.0  # time.monotonic() of the last write
        self._warned = False
        self._published = False  # whether the last write succeeded

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        """Count one task in flight while the block runs."""
        with self._lock:
            self._in_flight += 1
            self._dirty = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._write_when_changed, name="cloudtasks-status", daemon=True
                )
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                self._finished += 1
                self._dirty = True  # the thread is alive: it leaves only with nothing in flight

    def _write_when_changed(self) -> None:
        while True:
            with self._lock:
                due = self._dirty or (
                    self._in_flight and time.monotonic() - self._written >= KEEP_ALIVE
                )
            # A write that failed is not retried for the listing: only on the next change.
            if due or (self._published and not _listed(self._instance_id)):
                self._write()
            else:
                with self._lock:
                    if not self._dirty and not self._in_flight:
                        self._thread = None  # the next task starts a new thread
                        return
            time.sleep(WRITE_EVERY)

    def row(self) -> Status:
        """This process's row, as it stands."""
        with self._lock:
            return row(
                self._instance_id,
                host=self._host,
                tob=self._started,
                in_flight=self._in_flight,
                finished=self._finished,
            )

    def _write(self) -> None:
        with self._writing:
            with self._lock:
                self._dirty = False  # a change from here on is in this write, or the next
                self._written = time.monotonic()
            status = self.row()
            try:
                _publish(status)
                self._published = True
            except Exception as error:  # a monitor's view must never fail a task
                self._published = False
                if not self._warned:
                    self._warned = True
                    logger.warning(
                        "Could not write this receiver's status to the %r cache, so qinfo "
                        "and qmonitor may not list it: %s",
                        Conf.CACHE,
                        error,
                    )


def _publish(status: Status) -> None:
    """Write the entry, and make sure django-q lists it.

    django-q lists the entries in one cache key that each writer reads, extends and writes
    back without a lock: two processes starting tasks at the same moment can each write a
    list without the other. An entry is added to the list only when it is missing, so
    writing again lists it again; a process whose entry is unchanged would otherwise not
    write again for ``KEEP_ALIVE`` seconds.
    """
    broker = CloudTasksBroker()
    key = Stat.get_key(status.cluster_id)
    package = SignedPackage.dumps(status, True)
    for _ in range(LIST_ATTEMPTS):
        broker.set_stat(key, package, TTL)
        if _listed(status.cluster_id, broker):
            return
        time.sleep(random.uniform(0.005, 0.05))  # out of step with the other writer
    raise RuntimeError(f"other processes kept rewriting the list of entries ({Conf.Q_STAT!r})")


def _listed(instance_id: str, broker: CloudTasksBroker | None = None) -> bool:
    """Whether django-q's list holds this process's entry. A cache that cannot be read
    counts as listing it: the next write reports the failure."""
    cache = (broker or CloudTasksBroker()).cache
    try:
        return cache is None or Stat.get_key(instance_id) in (cache.get(Conf.Q_STAT) or ())
    except Exception:  # a monitor's view must never fail a task
        return True


def rows() -> list[Status]:
    """The rows of the receiver processes that ran tasks within ``TTL``, as the cache lists
    them."""
    broker = CloudTasksBroker()
    return [status for status in Stat.get_all(broker=broker) if getattr(status, "receiver", False)]


def _host() -> str:
    """On Cloud Run, where host names say little, the revision tells deployments apart, and
    a job execution's name tells what runs there."""
    host = socket.gethostname()
    where = os.environ.get("K_REVISION") or os.environ.get("CLOUD_RUN_EXECUTION")
    return f"{host} ({where})" if where else host


writer = StatusWriter()
os.register_at_fork(after_in_child=writer.reset)
