"""django-q's cluster loops, with Cloud Tasks and the receiver in their place.

django-q's own tests drive a cluster by hand: ``pusher`` takes a task from the broker into
a task queue, ``worker`` runs what the task queue holds and puts each result in a result
queue, ``monitor`` saves what the result queue holds. :class:`CloudTasksLoops` offers the
same three functions, and a ``Queue``, but the task travels as it does in production:
the pusher has Cloud Tasks (the built-in emulator, its queues paused) deliver the task
over HTTP to a live receiver, which runs it with django-q's worker and monitor.

Each step stops where django-q's step would: the receiver's run is held at django-q's
``pre_execute`` signal until the test calls ``worker``, and at ``post_execute_in_worker``
until it calls ``monitor``. The queues' sizes are what was pushed and what came back,
as those signals tell. A test that asserts a result is not there yet before the worker
ran, or that a queue is empty after the monitor, finds what it would under a cluster.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django_q.brokers import get_broker
from django_q.signals import post_execute_in_worker, pre_execute

from django_q_cloudtasks.broker import CloudTasksBroker
from django_q_cloudtasks.gcp.client import tasks_client

# How long a step waits for the receiver before the test fails.
STEP_TIMEOUT = 30.0


class Queue:
    """The task or result queue of a test: what it put there, and what the steps did."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._items: collections.deque[Any] = collections.deque()

    def put(self, item: Any, *args: Any, **kwargs: Any) -> None:
        self._items.append(item)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._items.popleft() if self._items else "STOP"

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def drain(self) -> Iterator[Any]:
        """What the queue holds up to its "STOP", taken out; the "STOP" too."""
        while self._items:
            item = self._items.popleft()
            if item == "STOP":
                return
            yield item


@dataclass
class _Held:
    """A delivery the receiver holds at a django-q signal until the test's step."""

    task: dict[str, Any]
    go: threading.Event = field(default_factory=threading.Event)


class CloudTasksLoops:
    """``pusher``, ``worker`` and ``monitor`` over Cloud Tasks (see the module's docstring)."""

    def __init__(self, emulator_address: str) -> None:
        self.client = tasks_client(emulator_address)
        self._lock = threading.Condition()
        self._pushed: dict[str, _Held] = {}  # held at pre_execute
        self._worked: dict[str, _Held] = {}  # held at post_execute_in_worker
        # Cloud Tasks the pusher had delivered: name -> answers they had had before.
        self._dispatched: dict[str, int] = {}

    # django-q's signals, in the receiver's threads

    def connect(self) -> None:
        pre_execute.connect(self._on_pre_execute, dispatch_uid="django_q_loops.pre")
        post_execute_in_worker.connect(self._on_executed, dispatch_uid="django_q_loops.post")

    def disconnect(self) -> None:
        pre_execute.disconnect(dispatch_uid="django_q_loops.pre")
        post_execute_in_worker.disconnect(dispatch_uid="django_q_loops.post")
        self.release_all()

    def _on_pre_execute(self, sender: Any, task: dict[str, Any], **kwargs: Any) -> None:
        self._hold(self._pushed, task)

    def _on_executed(self, sender: Any, task: dict[str, Any], **kwargs: Any) -> None:
        self._hold(self._worked, task)

    def _hold(self, where: dict[str, _Held], task: dict[str, Any]) -> None:
        if threading.current_thread() is threading.main_thread():
            return  # a sync task, run in the test itself: nothing to hold
        held = _Held(task)
        with self._lock:
            where[task["id"]] = held
            self._lock.notify_all()
        held.go.wait(STEP_TIMEOUT)

    def release_all(self) -> None:
        with self._lock:
            for held in (*self._pushed.values(), *self._worked.values()):
                held.go.set()
            self._pushed.clear()
            self._worked.clear()
            self._dispatched.clear()

    # The test's steps

    def pusher(self, task_queue: Queue, event: Any = None, broker: Any = None, **_: Any) -> None:
        """Have Cloud Tasks deliver the oldest task waiting in the broker's queue; once the
        receiver holds it at pre_execute, it is in ``task_queue``. A delivery the receiver
        refuses before that (a package it cannot verify) ends here, as in django-q."""
        broker = broker or get_broker()
        assert isinstance(broker, CloudTasksBroker)
        CloudTasksBroker.forget_stats()
        waiting = [
            task
            for task in self.client.list_tasks(parent=broker.settings.queue_path)
            if task.name not in self._dispatched
        ]
        if not waiting:
            return
        cloud_task = min(waiting, key=lambda task: (task.create_time, task.name))
        task_id = cloud_task.name.rsplit("/", 1)[1]
        self._dispatched[cloud_task.name] = cloud_task.response_count
        self.client.run_task(name=cloud_task.name)
        held = self._wait(lambda: self._pushed.get(task_id), or_ended=cloud_task.name)
        if held is not None:
            task_queue.put(held.task)

    def worker(self, task_queue: Queue, result_queue: Queue, *args: Any, **kwargs: Any) -> None:
        """Let the receiver run each pushed task; each result then waits in ``result_queue``."""
        for task in task_queue.drain():
            with self._lock:
                held = self._pushed.pop(task["id"])
            held.go.set()
            done = self._wait(lambda task_id=task["id"]: self._worked.get(task_id))
            result_queue.put(done.task)

    def monitor(self, result_queue: Queue, broker: Any = None, **kwargs: Any) -> None:
        """Let the receiver save each result, and answer Cloud Tasks."""
        for task in result_queue.drain():
            with self._lock:
                held = self._worked.pop(task["id"])
            held.go.set()
            self._wait(lambda task_id=task["id"]: self._answered(task_id) or None)
        CloudTasksBroker.forget_stats()

    # Waiting on the receiver

    def _wait(self, found: Callable[[], Any], *, or_ended: str | None = None) -> Any:
        deadline = time.monotonic() + STEP_TIMEOUT
        with self._lock:
            while (value := found()) is None:
                if or_ended and self._ended(or_ended):
                    return None
                if time.monotonic() > deadline:
                    raise AssertionError(f"the receiver did not get this far in {STEP_TIMEOUT} s")
                self._lock.wait(0.05)
        return value

    def _answered(self, task_id: str) -> bool:
        """Whether the receiver has answered the delivery of ``task_id``."""
        name = next((name for name in self._dispatched if name.endswith(f"/{task_id}")), None)
        return name is None or self._ended(name)

    def _ended(self, name: str) -> bool:
        """Whether Cloud Tasks has the receiver's answer to the delivery of ``name``: the task
        is gone (2xx), or waits for a retry (other answers)."""
        from google.api_core import exceptions

        try:
            task = self.client.get_task(name=name)
        except exceptions.NotFound:
            return True
        return task.response_count > self._dispatched.get(name, task.response_count)
