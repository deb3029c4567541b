"""Delivering tasks: one thread decides what is due, a pool of threads sends the requests.

Each attempt is a real HTTP request carrying the headers Cloud Tasks sends (names and
values as recorded from the real service), the task's own headers and body, and an OIDC
token when the task asks for one. The request times out at the task's dispatch deadline.
A 2xx answer deletes the task; anything else, or no answer, schedules a retry with the
queue's backoff until its retry config gives up.

Cloud Tasks delivers at least once: now and then the same attempt arrives twice, even at
the same moment. ``duplicates`` makes that happen on every attempt, so that a project can
watch its tasks stay once-only: each attempt is sent that many times, all at once or one
after another, and the first 2xx answer (else the first answer) is the attempt's.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from .identity import Identity
from .state import APP_ENGINE_USER_AGENT, Attempt, Dispatch, Store, TaskRecord

logger = logging.getLogger("django_q_cloudtasks.emulator")

USER_AGENT = "Google-Cloud-Tasks"
# Set by the service; a task's own header of the same name is dropped.
RESERVED_HEADERS = frozenset({"authorization", "user-agent", "host", "content-length"})
MAX_RESPONSE_BYTES = 1024 * 1024


class Dispatcher:
    def __init__(
        self,
        store: Store,
        identity: Identity,
        *,
        max_workers: int = 64,
        duplicates: int = 1,
        duplicates_at_once: bool = True,
    ) -> None:
        if duplicates < 1:
            raise ValueError(f"duplicates must be 1 or more, not {duplicates}.")
        self.store = store
        self.identity = identity
        self.max_workers = max_workers
        self.duplicates = duplicates
        self.duplicates_at_once = duplicates_at_once
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="emulator-dispatch")
        self._in_flight = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="emulator-dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stops dispatching; attempts under way finish or time out on their own."""
        with self.store.lock:
            self._stopping = True
            self.store.changed.notify_all()
        self._thread.join()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        with self.store.lock:
            while not self._stopping:
                if self._in_flight >= self.max_workers:
                    self.store.changed.wait()
                    continue
                next_dispatch = self.store.next_dispatch()
                if isinstance(next_dispatch, float | None):
                    self.store.changed.wait(next_dispatch)
                    continue
                self._in_flight += 1
                self._pool.submit(self._attempt, next_dispatch)

    def _attempt(self, dispatch: Dispatch) -> None:
        try:
            attempt = self._send_copies(dispatch) if self.duplicates > 1 else self.send(dispatch)
        except Exception as error:  # never lose the task to a bug in sending it
            logger.exception("Dispatching %s failed", dispatch.task.name)
            attempt = Attempt(dispatch.schedule_time, time.time(), time.time(), None, repr(error))
        with self.store.lock:
            self._in_flight -= 1
            self.store.finish(dispatch, attempt)
        task = dispatch.task
        duration = (attempt.response_time or attempt.dispatch_time) - attempt.dispatch_time
        outcome = str(attempt.http_status) if attempt.http_status else attempt.error
        logger.info(
            "%s %s -> %s in %.0f ms (task %s, queue %s, attempt %d)",
            task.http_method,
            self.destination(task),
            outcome,
            duration * 1000,
            task.task_id,
            dispatch.queue_id,
            dispatch.retry_count + 1,
        )

    def _send_copies(self, dispatch: Dispatch) -> Attempt:
        if self.duplicates_at_once:
            with ThreadPoolExecutor(self.duplicates) as copies:
                attempts = list(copies.map(self.send, [dispatch] * self.duplicates))
        else:
            attempts = [self.send(dispatch) for _ in range(self.duplicates)]
        succeeded = (a for a in attempts if a.http_status and 200 <= a.http_status < 300)
        return next(succeeded, attempts[0])

    def headers(self, dispatch: Dispatch) -> dict[str, str]:
        """The request headers of one attempt, as Cloud Tasks sends them: ``X-CloudTasks-*``
        and an ID token for an HTTP task, ``X-AppEngine-*`` and none for an App Engine one."""
        task = dispatch.task
        prefix = "X-AppEngine-" if task.app_engine is not None else "X-CloudTasks-"
        headers = {
            k: v
            for k, v in task.headers.items()
            if k.lower() not in RESERVED_HEADERS
            and not k.lower().startswith(("x-cloudtasks-", "x-appengine-"))
        }
        # An App Engine task keeps the User-Agent it was created with (service.py).
        headers["User-Agent"] = (
            task.headers.get("User-Agent", APP_ENGINE_USER_AGENT) if task.app_engine else USER_AGENT
        )
        headers[prefix + "QueueName"] = dispatch.queue_id
        headers[prefix + "TaskName"] = task.task_id
        headers[prefix + "TaskRetryCount"] = str(dispatch.retry_count)
        headers[prefix + "TaskExecutionCount"] = str(dispatch.execution_count)
        headers[prefix + "TaskETA"] = f"{dispatch.schedule_time:.6f}"
        if dispatch.previous_response is not None:
            headers[prefix + "TaskPreviousResponse"] = str(dispatch.previous_response)
            # As recorded: empty for HTTP targets, the app's error for App Engine ones.
            headers[prefix + "TaskRetryReason"] = "App Error" if task.app_engine else ""
        if task.oidc_email:
            token = self.identity.token(task.oidc_email, task.oidc_audience or task.url)
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def destination(self, task: TaskRecord) -> str:
        """Where an attempt goes: the task's URL, or the app's address and the task's path."""
        if task.app_engine is None:
            return task.url
        return (self.store.app_engine_url or "").rstrip("/") + task.relative_uri

    def send(self, dispatch: Dispatch) -> Attempt:
        task = dispatch.task
        url = urlsplit(self.destination(task))
        connection_class = (
            http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        )
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        started = time.time()
        attempt = Attempt(schedule_time=dispatch.schedule_time, dispatch_time=started)
        connection = connection_class(url.netloc, timeout=task.dispatch_deadline)
        try:
            connection.request(
                task.http_method, path, body=task.body, headers=self.headers(dispatch)
            )
            response = connection.getresponse()
            response.read(MAX_RESPONSE_BYTES)
            attempt.http_status = response.status
        except TimeoutError:
            attempt.error = f"DEADLINE_EXCEEDED after {task.dispatch_deadline:g} s"
        except (OSError, http.client.HTTPException) as error:
            attempt.error = f"UNAVAILABLE ({error.__class__.__name__}: {error})"
        finally:
            connection.close()
        attempt.response_time = time.time()
        return attempt
