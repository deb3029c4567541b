"""Keeping the claims of running tasks alive, so that a dead delivery's claim expires soon,
and bringing back word of their cancellation.

A receipt in state RUNNING carries a lease: until it runs out, other deliveries of the
task are turned away. While a task runs, one thread per process renews the lease of every
task the process is running. A process that dies, or loses its database, stops renewing,
so its claim runs out within ``LEASE`` and the next delivery takes the task over.

The same thread asks, twice as often, which of those tasks ``cancel()`` has asked to stop,
so that ``cancelled()`` turns true inside them within ``CHECK_EVERY`` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

from ..models import Receipt

logger = logging.getLogger("django_q_cloudtasks")

# How long a claim holds without renewal: the longest a dead delivery blocks a retry.
LEASE = timedelta(seconds=30)
# Renewals per lease: two may fail (a database hiccup) before the lease runs out.
RENEW_EVERY = LEASE.total_seconds() / 3
# How often the thread asks whether a task it holds was cancelled: one indexed query.
CHECK_EVERY = RENEW_EVERY / 2


@dataclass(frozen=True)
class _Held:
    holder: str
    until: datetime  # renewals stop here: Cloud Tasks gave up on the delivery long ago
    on_cancel: Callable[[], None] | None = None  # called once, when cancellation is learnt
    cancelled: threading.Event = field(default_factory=threading.Event)


class LeaseKeeper:
    """Renews the leases of the tasks this process is running, from one thread."""

    def __init__(self) -> None:
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def holding(
        self,
        task_id: str,
        holder: str,
        *,
        until: datetime,
        on_cancel: Callable[[], None] | None = None,
    ) -> Iterator[None]:
        """Keep ``holder``'s claim on ``task_id`` alive while the block runs, up to ``until``;
        ``on_cancel`` is called (from the renewing thread) if the task is cancelled."""
        with self._lock:
            self._held[task_id] = _Held(holder, until, on_cancel)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._renew_while_held, name="cloudtasks-leases", daemon=True
                )
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(task_id, None)

    def _renew_while_held(self) -> None:
        renewed = time.monotonic()
        while True:
            time.sleep(CHECK_EVERY)
            with self._lock:
                if not self._held:
                    self._thread = None  # the next holding() starts a new thread
                    return
                now = timezone.now()
                due = {
                    task_id: held.holder for task_id, held in self._held.items() if held.until > now
                }
            if not due:
                continue
            renew = time.monotonic() - renewed >= RENEW_EVERY
            self._look_after(due, renew=renew)
            if renew:
                renewed = time.monotonic()

    def is_cancelled(self, task_id: str) -> bool:
        """Whether ``task_id``, held here, was cancelled, as far as this process has learnt."""
        held = self._held.get(task_id)
        return held is not None and held.cancelled.is_set()

    def _look_after(self, holders: dict[str, str], *, renew: bool) -> None:
        """Renew the claims (task id -> holder), if ``renew``, and learn which were cancelled."""
        try:
            if renew:
                renewed = Receipt.objects.renew(holders, LEASE)
                if renewed < len(holders):
                    logger.warning(
                        "%d running task(s) lost their claim: another delivery may run them too.",
                        len(holders) - renewed,
                    )
            for task_id in Receipt.objects.cancelled_among(list(holders)):
                self._learn_cancelled(task_id)
        except Exception as error:  # the next round tries again; the lease has room for it
            logger.warning("Could not renew the claims of running tasks: %s", error)
        finally:
            connection.close()  # this thread's own connection: hold none between rounds

    def _learn_cancelled(self, task_id: str) -> None:
        held = self._held.get(task_id)
        if held is None or held.cancelled.is_set():
            return
        held.cancelled.set()
        logger.info("Task %s was cancelled: cancelled() is now true inside it.", task_id)
        if held.on_cancel is not None:
            held.on_cancel()


keeper = LeaseKeeper()
