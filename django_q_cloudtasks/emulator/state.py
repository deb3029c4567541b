"""The emulator's state: queues, tasks and recently used names, behind one lock.

Every change goes through :class:`Store`. It validates the change as Cloud Tasks does,
raising :class:`ApiError` with the real service's status code and message (recorded in
``cloud-tasks-golden``), writes it to the journal when there is one, and wakes the
dispatcher, which asks :meth:`Store.next_dispatch` what to send and when.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc

# Limits of the real service (Cloud Tasks quotas and API reference).
MAX_TASK_BYTES = 1024 * 1024
MAX_SCHEDULE_AHEAD = 30 * 24 * 3600
MIN_DEADLINE, MAX_DEADLINE, DEFAULT_DEADLINE = 15.0, 1800.0, 600.0
MAX_APP_ENGINE_DEADLINE = 24 * 3600.0 + 15
# What an App Engine task's requests say they are, as recorded.
APP_ENGINE_USER_AGENT = "AppEngine-Google; (+http://code.google.com/appengine)"
# How long a finished or deleted name stays taken (the real service: about an hour or more).
DEFAULT_DEDUP_WINDOW = 3600.0

QUEUE_NAME = re.compile(r"^(projects/[^/]+/locations/[^/]+)/queues/([A-Za-z0-9-]{1,100})$")
PARENT_NAME = re.compile(r"^projects/([^/]+)/locations/([^/]+)$")
TASK_NAME = re.compile(r"^(projects/[^/]+/locations/[^/]+/queues/[^/]+)/tasks/(.*)$")
TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")

# The real service's messages, word for word.
QUEUE_NOT_FOUND = (
    "Queue does not exist. If you just created the queue, wait at least a minute for the "
    "queue to initialize."
)
ENTITY_NOT_FOUND = "Requested entity was not found."
TASK_EXISTS = "Requested entity already exists"
QUEUE_EXISTS = "Queue already exists"
QUEUE_RECENTLY_DELETED = (
    "The queue cannot be created because a queue with this name existed too recently."
)
TASK_RECENTLY_DELETED = (
    "The task no longer exists, though a task with this name existed recently. The task "
    "either successfully completed or was deleted."
)
INVALID_QUEUE_NAME = (
    'Queue name must be formatted: "projects/<PROJECT_ID>/locations/<LOCATION_ID>/queues/'
    '<QUEUE_ID>".'
)
INVALID_TASK_ID = (
    'Task ID "{}" can contain only letters ([A-Za-z]), numbers ([0-9]), hyphens (-), or '
    "underscores (_). Task ID must between 1 and 500 characters."
)
QUEUE_MISMATCH = (
    "The queue name from request ('{}') must be the same as the queue name in the named "
    "task ('{}')."
)
PARENT_DENIED = "Permission denied on resource project {}."


class ApiError(Exception):
    """A call refused as the real service refuses it."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class RetryConfig:
    """A queue's retry policy; the defaults are Cloud Tasks' own."""

    max_attempts: int = 100  # counts the first attempt; -1 is unlimited
    max_retry_duration: float = 0.0  # 0 is unlimited
    min_backoff: float = 0.1
    max_backoff: float = 3600.0
    max_doublings: int = 16

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt.

        The wait starts at min_backoff, doubles max_doublings times, then grows by that
        last doubled step each retry, and never exceeds max_backoff.
        """
        retries = max(0, attempts - 1)
        if retries <= self.max_doublings:
            interval = self.min_backoff * 2.0**retries
        else:
            interval = (
                self.min_backoff * 2.0**self.max_doublings * (retries - self.max_doublings + 1)
            )
        return min(self.max_backoff, interval)

    def gives_up(self, attempts: int, age: float) -> bool:
        """Whether a task that failed ``attempts`` times, first tried ``age`` s ago, is dropped."""
        if self.max_attempts < 0 or attempts < self.max_attempts:
            return False
        return self.max_retry_duration <= 0 or age >= self.max_retry_duration


@dataclass
class RateLimits:
    """A queue's rate limits; the defaults are Cloud Tasks' own."""

    max_dispatches_per_second: float = 500.0
    max_concurrent_dispatches: int = 1000

    @property
    def max_burst_size(self) -> int:
        """Chosen by the service from the rate, as Cloud Tasks does (output only)."""
        return max(1, min(100, math.ceil(self.max_dispatches_per_second)))


@dataclass
class QueueRecord:
    name: str
    state: str = "RUNNING"  # RUNNING or PAUSED
    retry: RetryConfig = field(default_factory=RetryConfig)
    rate: RateLimits = field(default_factory=RateLimits)
    purge_time: float | None = None

    @property
    def queue_id(self) -> str:
        return self.name.rsplit("/", 1)[-1]


@dataclass
class Attempt:
    schedule_time: float
    dispatch_time: float
    response_time: float | None = None
    http_status: int | None = None  # None: no answer (refused, reset, deadline)
    error: str = ""


@dataclass
class AppEngineRouting:
    """Where an App Engine task goes inside the app, as the task names it."""

    service: str = ""
    version: str = ""
    instance: str = ""

    def host(self, project: str) -> str:
        """The host App Engine routes it to (output only, as the API shows it)."""
        parts = [self.instance, self.version, self.service, f"{project}.appspot.com"]
        return ".".join(part for part in parts if part)


@dataclass
class TaskRecord:
    name: str
    url: str  # an HTTP task's; "" for an App Engine task
    http_method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    oidc_email: str | None = None
    oidc_audience: str | None = None
    schedule_time: float = 0.0
    create_time: float = 0.0
    dispatch_deadline: float = DEFAULT_DEADLINE
    dispatch_count: int = 0
    response_count: int = 0
    # Attempts answered (for an HTTP task, with something other than 5xx), as recorded.
    execution_count: int = 0
    first_attempt: Attempt | None = None
    last_attempt: Attempt | None = None
    version: int = 0  # bumped on every reschedule, so stale dispatch entries are skipped
    app_engine: AppEngineRouting | None = None  # an App Engine task's routing
    relative_uri: str = ""  # an App Engine task's path inside the app

    @property
    def queue_name(self) -> str:
        return self.name.rsplit("/tasks/", 1)[0]

    @property
    def task_id(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["body"] = self.body.hex()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskRecord:
        data = dict(data, body=bytes.fromhex(data["body"]))
        for key in ("first_attempt", "last_attempt"):
            if data[key] is not None:
                data[key] = Attempt(**data[key])
        if data.get("app_engine") is not None:  # absent from state files of before
            data["app_engine"] = AppEngineRouting(**data["app_engine"])
        return cls(**data)


def queue_to_json(queue: QueueRecord) -> dict[str, Any]:
    return asdict(queue)


def queue_from_json(data: dict[str, Any]) -> QueueRecord:
    return QueueRecord(
        **{
            **data,
            "retry": RetryConfig(**data["retry"]),
            "rate": RateLimits(**data["rate"]),
        }
    )


class Journal:
    """Where the store writes each change; the no-op base keeps state in memory only."""

    def queue_saved(self, queue: QueueRecord) -> None: ...
    def queue_deleted(self, name: str, when: float) -> None: ...
    def task_saved(self, task: TaskRecord) -> None: ...
    def task_deleted(self, name: str, when: float) -> None: ...


@dataclass
class _QueueRuntime:
    """What the dispatcher needs per queue and the journal does not keep."""

    due: list[tuple[float, int, str, int]] = field(default_factory=list)  # heap
    forced: deque[str] = field(default_factory=deque)  # RunTask: now, whatever the limits
    running: int = 0
    tokens: float = 0.0
    tokens_at: float = 0.0
    finished: deque[float] = field(default_factory=deque)  # answers in the last minute


@dataclass(frozen=True)
class Dispatch:
    """One attempt the dispatcher is to make: a snapshot, safe to use outside the lock."""

    task: TaskRecord
    queue_id: str
    retry_count: int
    execution_count: int
    previous_response: int | None
    schedule_time: float


class Store:
    """All queues and tasks; every method is atomic under one lock."""

    def __init__(
        self,
        journal: Journal | None = None,
        *,
        dedup_window: float = DEFAULT_DEDUP_WINDOW,
        clock: Callable[[], float] = time.time,
        app_engine_url: str | None = None,
    ) -> None:
        self.journal = journal or Journal()
        # Where App Engine tasks go: the app's address on this machine (None: refused).
        self.app_engine_url = app_engine_url
        self.dedup_window = dedup_window
        self.clock = clock
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.queues: dict[str, QueueRecord] = {}
        self.tasks: dict[str, dict[str, TaskRecord]] = {}  # queue name -> task name -> task
        self.deleted_queues: dict[str, float] = {}  # name -> when: names not yet reusable
        self.deleted_tasks: dict[str, float] = {}
        self._runtime: dict[str, _QueueRuntime] = {}
        self._sequence = itertools.count()

    # Loading (replaying a journal); no validation, no journalling.

    def load_queue(self, queue: QueueRecord) -> None:
        self.queues[queue.name] = queue
        self.tasks.setdefault(queue.name, {})
        self._runtime.setdefault(queue.name, _QueueRuntime())
        self.deleted_queues.pop(queue.name, None)

    def load_task(self, task: TaskRecord) -> None:
        self.tasks.setdefault(task.queue_name, {})[task.name] = task
        self._push(task)

    def forget_queue(self, name: str, when: float) -> None:
        self.queues.pop(name, None)
        self._runtime.pop(name, None)
        for task_name in self.tasks.pop(name, {}):
            self.deleted_tasks[task_name] = when
        self.deleted_queues[name] = when

    def forget_task(self, name: str, when: float) -> None:
        self.tasks.get(name.rsplit("/tasks/", 1)[0], {}).pop(name, None)
        self.deleted_tasks[name] = when

    # Queues.

    def create_queue(self, parent: str, queue: QueueRecord) -> QueueRecord:
        match = PARENT_NAME.match(parent)
        if not match:
            project = parent.removeprefix("projects/").split("/", 1)[0]
            raise ApiError(grpc.StatusCode.PERMISSION_DENIED, PARENT_DENIED.format(project))
        name_match = QUEUE_NAME.match(queue.name)
        if not name_match or name_match.group(1) != parent:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, INVALID_QUEUE_NAME)
        with self.lock:
            self._forget_expired()
            if queue.name in self.queues:
                raise ApiError(grpc.StatusCode.ALREADY_EXISTS, QUEUE_EXISTS)
            if queue.name in self.deleted_queues:
                raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, QUEUE_RECENTLY_DELETED)
            return self._save_queue(queue)

    def save_queue(self, queue: QueueRecord) -> QueueRecord:
        """UpdateQueue: creates the queue when it does not exist, as the real call does."""
        if not QUEUE_NAME.match(queue.name):
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, INVALID_QUEUE_NAME)
        with self.lock:
            self._forget_expired()
            if queue.name not in self.queues and queue.name in self.deleted_queues:
                raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, QUEUE_RECENTLY_DELETED)
            return self._save_queue(queue)

    def get_queue(self, name: str) -> QueueRecord:
        with self.lock:
            queue = self.queues.get(name)
            if queue is None:
                raise ApiError(grpc.StatusCode.NOT_FOUND, QUEUE_NOT_FOUND)
            return queue

    def list_queues(self, parent: str) -> list[QueueRecord]:
        with self.lock:
            return sorted(
                (q for q in self.queues.values() if q.name.startswith(parent + "/queues/")),
                key=lambda q: q.name,
            )

    def delete_queue(self, name: str) -> None:
        with self.lock:
            if name not in self.queues:
                raise ApiError(grpc.StatusCode.NOT_FOUND, ENTITY_NOT_FOUND)
            now = self.clock()
            self.forget_queue(name, now)
            self.journal.queue_deleted(name, now)
            self.changed.notify_all()

    def set_state(self, name: str, state: str) -> QueueRecord:
        with self.lock:
            queue = self.get_queue(name)
            queue.state = state
            return self._save_queue(queue)

    def purge_queue(self, name: str) -> QueueRecord:
        """Deletes every task of the queue; their names stay taken like any deleted task's."""
        with self.lock:
            queue = self.get_queue(name)
            now = self.clock()
            for task_name in list(self.tasks[name]):
                self._delete_task(task_name, now)
            queue.purge_time = now
            return self._save_queue(queue)

    def _save_queue(self, queue: QueueRecord) -> QueueRecord:
        self.load_queue(queue)
        self.journal.queue_saved(queue)
        self.changed.notify_all()
        return queue

    # Tasks.

    def create_task(self, parent: str, task: TaskRecord, *, named: bool) -> TaskRecord:
        if not QUEUE_NAME.match(parent):
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, INVALID_QUEUE_NAME)
        if named:
            match = TASK_NAME.match(task.name)
            if match and match.group(1) != parent:
                raise ApiError(
                    grpc.StatusCode.INVALID_ARGUMENT, QUEUE_MISMATCH.format(parent, match.group(1))
                )
            task_id = match.group(2) if match else task.name
            if not match or not TASK_ID.match(task_id):
                raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, INVALID_TASK_ID.format(task_id))
        else:
            task.name = f"{parent}/tasks/{random.randrange(10**18, 10**19)}"
        self._check_task(task)
        with self.lock:
            self._forget_expired()
            if parent not in self.queues:
                raise ApiError(grpc.StatusCode.NOT_FOUND, QUEUE_NOT_FOUND)
            if task.name in self.tasks[parent] or task.name in self.deleted_tasks:
                raise ApiError(grpc.StatusCode.ALREADY_EXISTS, TASK_EXISTS)
            now = self.clock()
            task.create_time = now
            task.schedule_time = max(task.schedule_time, now) if task.schedule_time else now
            self.load_task(task)
            self.journal.task_saved(task)
            self.changed.notify_all()
            return task

    def _check_task(self, task: TaskRecord) -> None:
        size = len(task.body) + sum(len(k) + len(v) for k, v in task.headers.items())
        if size > MAX_TASK_BYTES:
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Task size ({size} bytes) exceeds the maximum of {MAX_TASK_BYTES} bytes.",
            )
        if task.app_engine is not None:
            self._check_app_engine_task(task)
        elif not re.match(r"^https?://[^/]", task.url):
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f'HttpRequest.url must be an absolute http or https URL, not "{task.url}".',
            )
        elif not MIN_DEADLINE <= task.dispatch_deadline <= MAX_DEADLINE:
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "Task.dispatch_deadline must be between 15 seconds and 30 minutes.",
            )
        if task.schedule_time > self.clock() + MAX_SCHEDULE_AHEAD:
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "Task.schedule_time must be at most 30 days in the future.",
            )

    def _check_app_engine_task(self, task: TaskRecord) -> None:
        if self.app_engine_url is None:
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "This emulator delivers App Engine tasks once told where the app listens: "
                "start it with --app-engine-url (e.g. http://127.0.0.1:8000).",
            )
        if not task.relative_uri.startswith("/"):
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f'AppEngineHttpRequest.relative_uri must begin with "/", not "{task.relative_uri}".',
            )
        if not MIN_DEADLINE <= task.dispatch_deadline <= MAX_APP_ENGINE_DEADLINE:
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "Task.dispatch_deadline must be between 15 seconds and 24 hours 15 seconds.",
            )

    def get_task(self, name: str) -> TaskRecord:
        with self.lock:
            task = self.tasks.get(name.rsplit("/tasks/", 1)[0], {}).get(name)
            if task is not None:
                return task
            if name in self.deleted_tasks:
                raise ApiError(grpc.StatusCode.NOT_FOUND, TASK_RECENTLY_DELETED)
            raise ApiError(grpc.StatusCode.NOT_FOUND, ENTITY_NOT_FOUND)

    def holds_app_engine_tasks(self) -> bool:
        with self.lock:
            return any(t.app_engine for tasks in self.tasks.values() for t in tasks.values())

    def list_tasks(self, parent: str) -> list[TaskRecord]:
        with self.lock:
            if parent not in self.queues:
                raise ApiError(grpc.StatusCode.NOT_FOUND, QUEUE_NOT_FOUND)
            return sorted(self.tasks[parent].values(), key=lambda t: (t.schedule_time, t.name))

    def delete_task(self, name: str) -> None:
        with self.lock:
            if name not in self.tasks.get(name.rsplit("/tasks/", 1)[0], {}):
                raise ApiError(grpc.StatusCode.NOT_FOUND, ENTITY_NOT_FOUND)
            self._delete_task(name, self.clock())
            self.changed.notify_all()

    def run_task(self, name: str) -> TaskRecord:
        """Dispatches the task now, even in a paused or rate-limited queue."""
        with self.lock:
            task = self.tasks.get(name.rsplit("/tasks/", 1)[0], {}).get(name)
            if task is None:
                raise ApiError(grpc.StatusCode.NOT_FOUND, ENTITY_NOT_FOUND)
            self._runtime[task.queue_name].forced.append(name)
            self.changed.notify_all()
            return task

    def _delete_task(self, name: str, when: float) -> None:
        self.forget_task(name, when)
        self.journal.task_deleted(name, when)

    # The dispatcher's side.

    def next_dispatch(self) -> Dispatch | float | None:
        """The next attempt to make now, else seconds until one may be due (None: idle).

        Called with the lock held. A queue sends nothing while paused, at its
        concurrency limit or out of rate tokens; RunTask skips all three.
        """
        now = self.clock()
        wait: float | None = None
        for queue in self.queues.values():
            runtime = self._runtime[queue.name]
            while runtime.forced:
                task = self.tasks[queue.name].get(runtime.forced.popleft())
                if task is not None:
                    return self._start(queue, runtime, task, now)
            if queue.state != "RUNNING":
                continue
            if runtime.running >= queue.rate.max_concurrent_dispatches:
                continue  # a finishing attempt notifies
            task = self._peek_due(queue.name, runtime)
            if task is None:
                continue
            delay = task.schedule_time - now
            if delay <= 0:
                delay = self._rate_delay(queue, runtime, now)
            if delay <= 0:
                heapq.heappop(runtime.due)
                runtime.tokens -= 1
                return self._start(queue, runtime, task, now)
            wait = delay if wait is None else min(wait, delay)
        return wait

    def _peek_due(self, queue_name: str, runtime: _QueueRuntime) -> TaskRecord | None:
        while runtime.due:
            _, _, name, version = runtime.due[0]
            task = self.tasks[queue_name].get(name)
            if task is not None and task.version == version:
                return task
            heapq.heappop(runtime.due)  # deleted, rescheduled or already running
        return None

    def _rate_delay(self, queue: QueueRecord, runtime: _QueueRuntime, now: float) -> float:
        """Seconds until the queue's token bucket holds a token (0: it holds one now)."""
        rate = queue.rate.max_dispatches_per_second
        burst = queue.rate.max_burst_size
        runtime.tokens = min(burst, runtime.tokens + (now - runtime.tokens_at) * rate)
        runtime.tokens_at = now
        return 0.0 if runtime.tokens >= 1 else (1 - runtime.tokens) / rate

    def _start(
        self, queue: QueueRecord, runtime: _QueueRuntime, task: TaskRecord, now: float
    ) -> Dispatch:
        previous = task.last_attempt
        dispatch = Dispatch(
            task=task,
            queue_id=queue.queue_id,
            retry_count=task.dispatch_count,
            execution_count=task.execution_count,
            previous_response=previous.http_status if previous else None,
            schedule_time=task.schedule_time,
        )
        task.version += 1  # takes it off the due heap while it runs
        runtime.running += 1
        return dispatch

    def finish(self, dispatch: Dispatch, attempt: Attempt) -> None:
        """Records an attempt's answer: a 2xx deletes the task, anything else retries it."""
        with self.lock:
            task = dispatch.task
            runtime = self._runtime.get(task.queue_name)
            now = self.clock()
            if runtime is not None:
                runtime.running -= 1
                runtime.finished.append(now)
            current = self.tasks.get(task.queue_name, {}).get(task.name)
            if current is not task:
                self.changed.notify_all()
                return  # deleted or purged while it ran
            task.dispatch_count += 1
            if attempt.http_status is not None:
                task.response_count += 1
                # An HTTP task's 5xx never reached its execution; an App Engine task's did.
                if attempt.http_status < 500 or task.app_engine is not None:
                    task.execution_count += 1
            task.first_attempt = task.first_attempt or attempt
            task.last_attempt = attempt
            queue = self.queues[task.queue_name]
            age = now - task.first_attempt.dispatch_time
            succeeded = attempt.http_status is not None and 200 <= attempt.http_status < 300
            if succeeded or queue.retry.gives_up(task.dispatch_count, age):
                self._delete_task(task.name, now)
            else:
                task.schedule_time = now + queue.retry.backoff(task.dispatch_count)
                self._push(task)
                self.journal.task_saved(task)
            self.changed.notify_all()

    def _push(self, task: TaskRecord) -> None:
        task.version += 1
        runtime = self._runtime.setdefault(task.queue_name, _QueueRuntime())
        heapq.heappush(
            runtime.due, (task.schedule_time, next(self._sequence), task.name, task.version)
        )

    # Statistics, as v2beta3 reports them.

    def stats(self, name: str) -> dict[str, Any]:
        with self.lock:
            queue = self.get_queue(name)
            runtime = self._runtime[name]
            now = self.clock()
            while runtime.finished and runtime.finished[0] < now - 60:
                runtime.finished.popleft()
            tasks = self.tasks[name].values()
            return {
                "tasks_count": len(tasks),
                "oldest_estimated_arrival_time": min(
                    (t.schedule_time for t in tasks), default=None
                ),
                "executed_last_minute_count": len(runtime.finished),
                "concurrent_dispatches_count": runtime.running,
                "effective_execution_rate": queue.rate.max_dispatches_per_second
                if queue.state == "RUNNING"
                else 0.0,
            }

    def _forget_expired(self) -> None:
        """Frees names whose de-duplication window has passed."""
        horizon = self.clock() - self.dedup_window
        for deleted in (self.deleted_tasks, self.deleted_queues):
            for name in [n for n, when in deleted.items() if when < horizon]:
                del deleted[name]

    def snapshot(self) -> Iterator[tuple[str, Any]]:
        """Everything the journal needs to rebuild this state: (kind, record) pairs."""
        with self.lock:
            for queue in self.queues.values():
                yield "queue", queue
            for name, when in self.deleted_queues.items():
                yield "queue-deleted", (name, when)
            for name, when in self.deleted_tasks.items():
                yield "task-deleted", (name, when)
            for tasks in self.tasks.values():
                for task in tasks.values():
                    yield "task", task
