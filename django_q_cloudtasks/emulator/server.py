"""The emulator as one object: gRPC API, dispatcher and certificate endpoint together, and
Cloud Run Jobs beside them when the ``jobs`` extra is installed."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent import futures
from pathlib import Path
from types import TracebackType

import grpc

from ..conf import emulator_identity
from .dispatcher import Dispatcher
from .identity import CertificateServer, Identity
from .jobs import GRACE_SECONDS, JobRecord, Jobs
from .journal import FileJournal
from .service import handlers
from .state import DEFAULT_DEDUP_WINDOW, ApiError, QueueRecord, Store

logger = logging.getLogger("django_q_cloudtasks.emulator")


class Emulator:
    """A local Cloud Tasks on ``host:port`` (gRPC), with certificates on ``port + 1``.

    ``state_path`` keeps queues, tasks, recently used names and the signing key in a file,
    so a restart loses nothing; without it, state lives in memory. ``duplicates`` sends
    every attempt that many times (see ``dispatcher.py``). ``job_grace``: the seconds a
    cancelled Cloud Run job execution has between SIGTERM and SIGKILL (see ``jobs.py``).
    ``app_engine_url``: where App Engine tasks go, the app's address on this machine
    (without it, they are refused).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8123,
        *,
        state_path: Path | None = None,
        max_workers: int = 64,
        dedup_window: float = DEFAULT_DEDUP_WINDOW,
        duplicates: int = 1,
        duplicates_at_once: bool = True,
        job_grace: float = GRACE_SECONDS,
        app_engine_url: str | None = None,
    ) -> None:
        self.address = f"{host}:{port}"
        self.issuer, self.certs_url = emulator_identity(self.address)
        self.state_path = state_path
        self._journal = FileJournal(state_path) if state_path else None
        self.store = Store(self._journal, dedup_window=dedup_window, app_engine_url=app_engine_url)
        if self._journal:
            self._journal.open(self.store)
            if app_engine_url is None and self.store.holds_app_engine_tasks():
                self._journal.close()
                raise ValueError(
                    f"{state_path} holds App Engine tasks, which need the app's address: start "
                    "the emulator with --app-engine-url (e.g. http://127.0.0.1:8000)."
                )
        private_pem = self._journal.signing_key if self._journal else None
        self.identity = Identity(self.issuer, private_pem)
        if self._journal and private_pem is None:
            self._journal.keep_signing_key(self.identity.private_pem)
        self.dispatcher = Dispatcher(
            self.store,
            self.identity,
            max_workers=max_workers,
            duplicates=duplicates,
            duplicates_at_once=duplicates_at_once,
        )
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="emulator-api"),
            # Without this a second emulator could bind the same port and share its calls.
            options=[("grpc.so_reuseport", 0)],
        )
        self._grpc.add_generic_rpc_handlers(handlers(self.store))
        self.jobs = Jobs(grace=job_grace)
        self.serves_jobs = _serve_jobs(self._grpc, self.jobs)
        try:
            self._grpc.add_insecure_port(self.address)
        except RuntimeError as error:  # grpc's word for a port it cannot bind
            raise OSError(
                f"Cannot listen on {self.address}: is another emulator running there?"
            ) from error
        try:
            self._certs = CertificateServer(self.identity, host, port + 1)
        except OSError as error:
            self._grpc.stop(None)
            raise OSError(
                f"Cannot serve certificates on {host}:{port + 1} ({error}); the emulator needs "
                "the port after its own free."
            ) from error

    def ensure_queue(self, name: str, fields: Mapping[str, float] | None = None) -> str | None:
        """Creates the queue ``name``, or brings the one there up to ``fields`` (its managed
        fields as an update mask names them, "retry_config.max_backoff"; Cloud Tasks'
        defaults for the rest). Returns "created", "updated", or None if it was as asked."""
        with self.store.lock:
            try:
                queue = self.store.get_queue(name)
            except ApiError:
                queue = QueueRecord(name=name)
                _apply(queue, fields or {})
                self.store.create_queue(name.rsplit("/queues/", 1)[0], queue)
                return "created"
            if not _apply(queue, fields or {}):
                return None
            self.store.save_queue(queue)
            return "updated"

    def ensure_job(self, job: JobRecord) -> bool:
        """Adds the Cloud Run job ``job``; False if one of its name exists."""
        return self.jobs.ensure_job(job)

    def start(self) -> Emulator:
        self._certs.start()
        self._grpc.start()
        self.dispatcher.start()
        return self

    def stop(self) -> None:
        self._grpc.stop(grace=0.25).wait()  # idle client connections hold it open until then
        self.jobs.stop()
        self.dispatcher.stop()
        self._certs.stop()
        if self._journal:
            self._journal.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _serve_jobs(server: grpc.Server, jobs: Jobs) -> bool:
    """Serve the Cloud Run Admin API for ``jobs``, if its messages are installed."""
    try:
        # The optional jobs extra (google-cloud-run) holds the API's messages.
        from .run_service import handlers as run_handlers
    except ImportError:
        logger.info("Cloud Run jobs are not emulated: pip install 'django-q-cloudtasks[jobs]'")
        return False
    server.add_generic_rpc_handlers(run_handlers(jobs))
    return True


def _apply(queue: QueueRecord, fields: Mapping[str, float]) -> bool:
    """Sets a queue's retry and rate fields; True if one changed."""
    parts = {"retry_config": queue.retry, "rate_limits": queue.rate}
    changed = False
    for path, value in fields.items():
        section, name = path.split(".")
        part = parts[section]
        wanted = type(getattr(part, name))(value)
        changed |= getattr(part, name) != wanted
        setattr(part, name, wanted)
    return changed
