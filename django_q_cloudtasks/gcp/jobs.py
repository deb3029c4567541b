"""Cloud Run job executions: started for a job cluster's task, read, and cancelled, through
the one policy of ``api.py``.

The client library (``google-cloud-run``, the ``jobs`` extra) is loaded with the first
client (``client.py``): a receiver whose clusters all run their tasks itself never loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..conf import QueueSettings
from ..exceptions import ExecutionError
from . import api
from .client import executions_client, jobs_client

# RunJob is not idempotent: a second attempt after a lost answer starts a second execution.
# One attempt, then; the claim the execution adopts keeps a second one from running the task.
START = api.Budget(attempt=15.0)
RUNNER = "roles/run.developer on the job (run.jobs.runWithOverrides)"
VIEWER = "roles/run.viewer on the job"
SERVICE = "Cloud Run Admin"
# Executions a screen lists at most, newest first.
DEFAULT_LIMIT = 50


@dataclass(frozen=True)
class ExecutionInfo:
    """An execution as Cloud Run reports it: its tasks' counts and its times."""

    name: str
    running: int
    succeeded: int
    failed: int
    cancelled: int
    retried: int
    created: datetime | None
    completed: datetime | None

    @property
    def short_name(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def finished(self) -> bool:
        return self.completed is not None


def execution_name(qs: QueueSettings, execution: str) -> str:
    """An execution's resource name, under ``qs.job`` as the settings write it: Cloud Run
    may name the project by its number, or the execution by its id alone
    (``CLOUD_RUN_EXECUTION``)."""
    return f"{qs.job}/executions/{execution.rsplit('/', 1)[-1]}"


def start(qs: QueueSettings, *, env: dict[str, str], timeout: int | None) -> str:
    """Start an execution of ``qs``'s job with one task, ``env`` added to its container's
    environment, and ``timeout`` seconds as its task timeout (None: the job's own).

    Returns the execution's resource name (``execution_name``), or "" where Cloud Run's
    answer does not name it.
    """
    overrides: dict[str, Any] = {
        "container_overrides": [{"env": [{"name": k, "value": v} for k, v in env.items()]}],
        "task_count": 1,
    }
    if timeout is not None:
        overrides["timeout"] = {"seconds": timeout}
    try:
        operation = api.call(
            _jobs(qs).run_job, START, request={"name": qs.job, "overrides": overrides}
        )
    except api.failures() as error:
        raise _error(qs, "start an execution of", error, START, RUNNER) from error
    metadata = operation.metadata
    return execution_name(qs, str(metadata.name)) if metadata is not None and metadata.name else ""


def get(qs: QueueSettings, execution: str) -> ExecutionInfo | None:
    """An execution of ``qs``'s job as Cloud Run reports it; None if there is none."""
    from google.api_core import exceptions  # see api.py's docstring

    try:
        found = api.call(_executions(qs).get_execution, api.AT_ONCE, name=execution)
    except exceptions.NotFound:
        return None
    except api.failures() as error:
        raise _error(qs, "read an execution of", error, api.AT_ONCE, VIEWER) from error
    return _info(qs, found)


def cancel(qs: QueueSettings, execution: str) -> bool:
    """Cancel a running execution: Cloud Run sends its container SIGTERM, then SIGKILL.
    False if it had finished, or is gone."""
    from google.api_core import exceptions  # see api.py's docstring

    try:
        api.call(_executions(qs).cancel_execution, api.AT_ONCE, name=execution)
    except (exceptions.NotFound, exceptions.FailedPrecondition):
        return False  # done already: nothing to cancel
    except api.failures() as error:
        raise _error(qs, "cancel an execution of", error, api.AT_ONCE, RUNNER) from error
    return True


def running(qs: QueueSettings, *, limit: int = DEFAULT_LIMIT) -> list[ExecutionInfo]:
    """The executions of ``qs``'s job that have not finished, newest first."""
    request = {"parent": qs.job, "page_size": limit}
    try:
        pager = api.call(_executions(qs).list_executions, api.AT_ONCE, request=request)
        listed = []
        for execution in pager:  # further pages are further calls
            listed.append(_info(qs, execution))
            if len(listed) >= limit:
                break
    except api.failures() as error:
        raise _error(qs, "list the executions of", error, api.AT_ONCE, VIEWER) from error
    return [execution for execution in listed if not execution.finished]


def _info(qs: QueueSettings, execution: Any) -> ExecutionInfo:
    return ExecutionInfo(
        name=execution_name(qs, execution.name),
        running=execution.running_count,
        succeeded=execution.succeeded_count,
        failed=execution.failed_count,
        cancelled=execution.cancelled_count,
        retried=execution.retried_count,
        created=execution.create_time or None,
        completed=execution.completion_time or None,
    )


def _jobs(qs: QueueSettings) -> Any:
    return jobs_client(qs.emulator_host)


def _executions(qs: QueueSettings) -> Any:
    return executions_client(qs.emulator_host)


def _error(
    qs: QueueSettings, verb: str, error: BaseException, budget: api.Budget, needs: str
) -> ExecutionError:
    hint = api.explain(
        error,
        qs,
        budget,
        needs=needs,
        missing=f"Create the Cloud Run job {qs.job} (see the guide Long tasks on Cloud Run "
        "Jobs, docs/how-to/long-tasks.md)",
        service=SERVICE,
    )
    return ExecutionError(f"Could not {verb} Cloud Run job {qs.job}: {hint}")
