"""Cloud Run Jobs, as the emulator runs them: each execution's tasks are local processes.

A job is a command and its arguments (the container's entry point and arguments), an
environment, a task timeout and a number of retries. RunJob starts an execution: each of its tasks runs the command once, with the
execution's overrides merged into the environment and the variables Cloud Run sets
(``CLOUD_RUN_JOB``, ``CLOUD_RUN_EXECUTION``, ``CLOUD_RUN_TASK_INDEX``,
``CLOUD_RUN_TASK_ATTEMPT``, ``CLOUD_RUN_TASK_COUNT``). As on Cloud Run:

* a task whose process exits 0 has succeeded; one that exits otherwise, is killed, or
  outlives its timeout has failed, and is tried again up to the job's ``max_retries``;
* an attempt past its timeout, and every attempt of a cancelled execution, gets SIGTERM,
  then SIGKILL after ``grace`` seconds (10 by default, as Cloud Run's);
* an execution is done when all its tasks are.

Each task's output goes to the emulator's log, each line prefixed with the execution's
name. Executions live in memory: the state file keeps queues and tasks only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import signal
import string
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

import grpc

from .state import ApiError

logger = logging.getLogger("django_q_cloudtasks.emulator")

# Cloud Run's defaults and limits for a job's tasks.
DEFAULT_TASK_TIMEOUT = 600.0
MAX_TASK_TIMEOUT = 168 * 3600.0
DEFAULT_MAX_RETRIES = 3
MAX_TASK_COUNT = 10_000
GRACE_SECONDS = 10.0
# Finished executions kept for GetExecution and ListExecutions; the oldest go first.
KEPT_EXECUTIONS = 1000

JOB_NAME = re.compile(
    r"^projects/([^/]+)/locations/([^/]+)/jobs/([a-z]([-a-z0-9]{0,61}[a-z0-9])?)$"
)
EXECUTION_NAME = re.compile(r"^(projects/[^/]+/locations/[^/]+/jobs/[^/]+)/executions/([^/]+)$")


@dataclass
class JobRecord:
    name: str
    command: list[str]  # the entry point
    args: list[str] = field(default_factory=list)  # what RunJob's args override replaces
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    max_retries: int = DEFAULT_MAX_RETRIES
    timeout: float = DEFAULT_TASK_TIMEOUT
    create_time: float = field(default_factory=time.time)

    @property
    def job_id(self) -> str:
        return self.name.rsplit("/", 1)[-1]


@dataclass
class ExecutionRecord:
    """One execution, its counts as Cloud Run reports them."""

    name: str
    job: JobRecord
    operation: str
    task_count: int
    timeout: float
    env: dict[str, str]  # the job's, with the execution's overrides
    args: list[str] | None = None  # replaces the command's arguments when set
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    create_time: float = field(default_factory=time.time)
    start_time: float | None = None
    completion_time: float | None = None
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    retried: int = 0
    cancel_requested: bool = False
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def execution_id(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def done(self) -> bool:
        return self.completion_time is not None


class Jobs:
    """Every job and execution; executions' tasks run in threads of their own."""

    def __init__(self, *, grace: float = GRACE_SECONDS, clock: Callable[[], float] = time.time):
        self.grace = grace
        self.clock = clock
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.jobs: dict[str, JobRecord] = {}
        self.executions: dict[str, ExecutionRecord] = {}
        self.operations: dict[str, str] = {}  # operation name -> execution name
        self._stopping = False

    # Jobs.

    def ensure_job(self, job: JobRecord) -> bool:
        """Add ``job`` unless one of that name exists; False if it did."""
        _check_job_name(job.name)
        with self.lock:
            if job.name in self.jobs:
                return False
            self.jobs[job.name] = job
            return True

    def get_job(self, name: str) -> JobRecord:
        with self.lock:
            job = self.jobs.get(name)
            if job is None:
                raise _job_not_found(name)
            return job

    def list_jobs(self, parent: str) -> list[JobRecord]:
        with self.lock:
            return sorted(
                (job for job in self.jobs.values() if job.name.startswith(parent + "/jobs/")),
                key=lambda job: job.name,
            )

    # Executions.

    def run_job(
        self,
        name: str,
        *,
        env: dict[str, str] | None = None,
        args: Sequence[str] | None = None,
        task_count: int | None = None,
        timeout: float | None = None,
    ) -> ExecutionRecord:
        """Start an execution of the job ``name``, with RunJob's overrides."""
        job = self.get_job(name)
        count = task_count or 1
        if not 1 <= count <= MAX_TASK_COUNT:
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"task_count must be between 1 and {MAX_TASK_COUNT}, not {count}.",
            )
        task_timeout = timeout or job.timeout
        if not 0 < task_timeout <= MAX_TASK_TIMEOUT:
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "timeout must be positive and at most 168 hours (604800s).",
            )
        parent = name.split("/jobs/", 1)[0]
        suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        execution = ExecutionRecord(
            name=f"{name}/executions/{job.job_id}-{suffix}",
            job=job,
            operation=f"{parent}/operations/{uuid.uuid4()}",
            task_count=count,
            timeout=task_timeout,
            env={**job.env, **(env or {})},
            args=list(args) if args else None,
        )
        with self.lock:
            if self._stopping:
                raise ApiError(grpc.StatusCode.UNAVAILABLE, "The emulator is stopping.")
            self._forget_old_executions()
            self.executions[execution.name] = execution
            self.operations[execution.operation] = execution.name
            execution.start_time = self.clock()
            for index in range(count):
                execution.running += 1
                threading.Thread(
                    target=self._run_task,
                    args=(execution, index),
                    name=f"emulator-job-{execution.execution_id}-{index}",
                    daemon=True,
                ).start()
        return execution

    def _forget_old_executions(self) -> None:
        """Make room for one more: the oldest finished executions go past KEPT_EXECUTIONS."""
        finished = sorted(
            (e for e in self.executions.values() if e.done), key=lambda e: e.create_time
        )
        for old in finished[: max(0, len(self.executions) + 1 - KEPT_EXECUTIONS)]:
            del self.executions[old.name]
            self.operations.pop(old.operation, None)

    def get_execution(self, name: str) -> ExecutionRecord:
        with self.lock:
            execution = self.executions.get(name)
            if execution is None:
                raise _execution_not_found(name)
            return execution

    def list_executions(self, job: str) -> list[ExecutionRecord]:
        """A job's executions, newest first; the job ``-`` stands for every job there."""
        every_job = job.endswith("/jobs/-")
        if not every_job:
            self.get_job(job)
        prefix = job.removesuffix("-") if every_job else f"{job}/executions/"
        with self.lock:
            found = [e for e in self.executions.values() if e.name.startswith(prefix)]
        return sorted(found, key=lambda e: e.create_time, reverse=True)

    def cancel_execution(self, name: str) -> ExecutionRecord:
        """Stop a running execution: SIGTERM to each task's process, SIGKILL after the grace."""
        with self.lock:
            execution = self.get_execution(name)
            if execution.done:
                raise ApiError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"Execution {execution.execution_id} has already completed.",
                )
            execution.cancel_requested = True
            processes = list(execution.processes.values())
            self.changed.notify_all()
        for process in processes:
            self._terminate(process)
        return execution

    def execution_of_operation(self, name: str) -> ExecutionRecord:
        with self.lock:
            execution = self.operations.get(name)
            if execution is None:
                raise ApiError(grpc.StatusCode.NOT_FOUND, f"Operation {name} not found.")
            return self.executions[execution]

    def wait(self, name: str, timeout: float) -> ExecutionRecord:
        """The execution once it is done, or after ``timeout`` seconds (for tests)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            execution = self.get_execution(name)
            while not execution.done and time.monotonic() < deadline:
                self.changed.wait(deadline - time.monotonic())
            return execution

    def stop(self) -> None:
        """Stop every running execution, as a cancel does, and start no new one."""
        with self.lock:
            self._stopping = True
            running = [e.name for e in self.executions.values() if not e.done]
        for name in running:
            with contextlib.suppress(ApiError):  # it finished meanwhile
                self.cancel_execution(name)
        with self.lock:
            deadline = time.monotonic() + self.grace + 5
            while any(not e.done for e in self.executions.values()):
                if time.monotonic() > deadline:
                    break
                self.changed.wait(0.1)

    # Running one task.

    def _run_task(self, execution: ExecutionRecord, index: int) -> None:
        attempt = 0
        while True:
            outcome = self._attempt(execution, index, attempt)
            with self.lock:
                if execution.cancel_requested:
                    execution.cancelled += 1
                    break
                if outcome == 0:
                    execution.succeeded += 1
                    break
                if attempt >= execution.job.max_retries:
                    execution.failed += 1
                    break
                execution.retried += 1
                attempt += 1
        with self.lock:
            execution.running -= 1
            if execution.running == 0:
                execution.completion_time = self.clock()
            self.changed.notify_all()

    def _attempt(self, execution: ExecutionRecord, index: int, attempt: int) -> int | None:
        """Run one attempt of a task; its exit code, or None when it outlived its timeout."""
        job = execution.job
        command = job.command + (job.args if execution.args is None else execution.args)
        env = {
            **execution.env,
            "CLOUD_RUN_JOB": job.job_id,
            "CLOUD_RUN_EXECUTION": execution.execution_id,
            "CLOUD_RUN_TASK_INDEX": str(index),
            "CLOUD_RUN_TASK_ATTEMPT": str(attempt),
            "CLOUD_RUN_TASK_COUNT": str(execution.task_count),
        }
        with self.lock:
            if execution.cancel_requested:
                return None
            try:
                process = subprocess.Popen(
                    command,
                    env=env,
                    cwd=job.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its group is the "container"
                )
            except OSError as error:  # a command or directory that is not there
                logger.error(
                    "Execution %s, task %d: cannot start %s: %s",
                    execution.execution_id,
                    index,
                    command,
                    error,
                )
                return None
            execution.processes[index] = process
        logger.info(
            "Execution %s, task %d, attempt %d: started (pid %d)",
            execution.execution_id,
            index,
            attempt,
            process.pid,
        )
        reader = threading.Thread(
            target=_relay, args=(process.stdout, execution.execution_id, index), daemon=True
        )
        reader.start()
        try:
            code: int | None = process.wait(timeout=execution.timeout)
        except subprocess.TimeoutExpired:
            logger.info("Execution %s, task %d: past its timeout", execution.execution_id, index)
            self._terminate(process)
            process.wait()
            code = None
        # The container goes with its first process: so do the processes it started.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        reader.join(timeout=5)
        with self.lock:
            execution.processes.pop(index, None)
        logger.info(
            "Execution %s, task %d, attempt %d: %s",
            execution.execution_id,
            index,
            attempt,
            "timed out" if code is None else f"exited with {code}",
        )
        return code

    def _terminate(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM, then SIGKILL to the process's group after the grace, as Cloud Run does."""
        with contextlib.suppress(ProcessLookupError):  # it exited already
            process.send_signal(signal.SIGTERM)

        def kill_after_grace() -> None:
            try:
                process.wait(timeout=self.grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)

        threading.Thread(target=kill_after_grace, name="emulator-job-kill", daemon=True).start()


def _relay(stream: IO[bytes] | None, execution_id: str, index: int) -> None:
    if stream is None:
        return
    for line in stream:
        logger.info("[%s/%d] %s", execution_id, index, line.decode(errors="replace").rstrip())


def _check_job_name(name: str) -> None:
    if not JOB_NAME.match(name):
        raise ApiError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"Invalid job name {name!r}: expected projects/PROJECT/locations/REGION/jobs/JOB.",
        )


def _job_not_found(name: str) -> ApiError:
    match = JOB_NAME.match(name)
    if not match:
        return ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid job name {name!r}.")
    project, region, job = match.group(1), match.group(2), match.group(3)
    return ApiError(
        grpc.StatusCode.NOT_FOUND,
        f"Resource '{job}' of kind 'JOB' in region '{region}' in project '{project}' does "
        "not exist.",
    )


def _execution_not_found(name: str) -> ApiError:
    match = EXECUTION_NAME.match(name)
    execution = match.group(2) if match else name
    return ApiError(
        grpc.StatusCode.NOT_FOUND, f"Resource '{execution}' of kind 'EXECUTION' does not exist."
    )
