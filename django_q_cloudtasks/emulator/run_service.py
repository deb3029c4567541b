"""The gRPC face of the emulator's Cloud Run Jobs: the Cloud Run Admin API v2 calls this
package makes (jobs: get, list, run; executions: get, list, cancel), and GetOperation for
the long-running operations RunJob and CancelExecution answer with.

As in ``service.py``, requests and answers are the real API's messages, so the official
client (``google-cloud-run``) talks to the emulator unchanged; the rules live in
``jobs.py``.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import grpc
from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import any_pb2

from .jobs import ExecutionRecord, JobRecord, Jobs
from .service import page, timestamp, unary_methods

JOBS_SERVICE = "google.cloud.run.v2.Jobs"
EXECUTIONS_SERVICE = "google.cloud.run.v2.Executions"
OPERATIONS_SERVICE = "google.longrunning.Operations"
EXECUTION_TYPE = "type.googleapis.com/google.cloud.run.v2.Execution"


def handlers(jobs: Jobs) -> Sequence[grpc.GenericRpcHandler]:
    """The generic gRPC handlers serving ``jobs`` as Cloud Run's v2 API."""
    job_methods = {
        "GetJob": (run_v2.GetJobRequest, lambda r: _job(jobs.get_job(r.name))),
        "ListJobs": (run_v2.ListJobsRequest, lambda r: _list_jobs(jobs, r)),
        "RunJob": (run_v2.RunJobRequest, lambda r: _operation(_run_job(jobs, r))),
    }
    execution_methods = {
        "GetExecution": (
            run_v2.GetExecutionRequest,
            lambda r: _execution(jobs.get_execution(r.name)),
        ),
        "ListExecutions": (run_v2.ListExecutionsRequest, lambda r: _list_executions(jobs, r)),
        "CancelExecution": (
            run_v2.CancelExecutionRequest,
            lambda r: _operation(jobs.cancel_execution(r.name)),
        ),
    }
    operation_methods = {
        "GetOperation": (
            operations_pb2.GetOperationRequest,
            lambda r: _operation(jobs.execution_of_operation(r.name)),
        ),
    }
    return (
        grpc.method_handlers_generic_handler(JOBS_SERVICE, unary_methods(job_methods)),
        grpc.method_handlers_generic_handler(EXECUTIONS_SERVICE, unary_methods(execution_methods)),
        grpc.method_handlers_generic_handler(OPERATIONS_SERVICE, unary_methods(operation_methods)),
    )


def _run_job(jobs: Jobs, request: run_v2.RunJobRequest) -> ExecutionRecord:
    overrides: Any = request.overrides
    env: dict[str, str] = {}
    args: list[str] | None = None
    for container in overrides.container_overrides:
        env.update({variable.name: variable.value for variable in container.env})
        if container.args or container.clear_args:
            args = list(container.args)
    timeout = overrides.timeout.total_seconds() if overrides.timeout else None
    return jobs.run_job(
        request.name,
        env=env,
        args=args,
        task_count=overrides.task_count or None,
        timeout=timeout,
    )


def _list_jobs(jobs: Jobs, request: run_v2.ListJobsRequest) -> run_v2.ListJobsResponse:
    found, token = page(jobs.list_jobs(request.parent), request)
    return run_v2.ListJobsResponse(jobs=[_job(job) for job in found], next_page_token=token)


def _list_executions(
    jobs: Jobs, request: run_v2.ListExecutionsRequest
) -> run_v2.ListExecutionsResponse:
    found, token = page(jobs.list_executions(request.parent), request)
    return run_v2.ListExecutionsResponse(
        executions=[_execution(execution) for execution in found], next_page_token=token
    )


def _job(job: JobRecord) -> run_v2.Job:
    return run_v2.Job(
        name=job.name,
        create_time=timestamp(job.create_time),
        template=run_v2.ExecutionTemplate(task_count=1, template=_task_template(job, None)),
    )


def _task_template(job: JobRecord, execution: ExecutionRecord | None) -> run_v2.TaskTemplate:
    args = execution.args if execution and execution.args is not None else job.args
    timeout = execution.timeout if execution else job.timeout
    return run_v2.TaskTemplate(
        containers=[run_v2.Container(command=job.command, args=args)],
        max_retries=job.max_retries,
        timeout=datetime.timedelta(seconds=timeout),
    )


def _execution(execution: ExecutionRecord) -> run_v2.Execution:
    state = run_v2.Condition.State
    if not execution.done:
        completed = state.CONDITION_RECONCILING
    elif execution.failed or execution.cancelled:
        completed = state.CONDITION_FAILED
    else:
        completed = state.CONDITION_SUCCEEDED
    return run_v2.Execution(
        name=execution.name,
        uid=execution.uid,
        job=execution.job.job_id,
        create_time=timestamp(execution.create_time),
        start_time=timestamp(execution.start_time),
        completion_time=timestamp(execution.completion_time),
        task_count=execution.task_count,
        parallelism=execution.task_count,
        template=_task_template(execution.job, execution),
        conditions=[run_v2.Condition(type_="Completed", state=completed)],
        running_count=execution.running,
        succeeded_count=execution.succeeded,
        failed_count=execution.failed,
        cancelled_count=execution.cancelled,
        retried_count=execution.retried,
        reconciling=not execution.done,
    )


def _operation(execution: ExecutionRecord) -> operations_pb2.Operation:
    """The long-running operation of an execution: its metadata the execution, done with it."""
    packed = any_pb2.Any(
        type_url=EXECUTION_TYPE, value=run_v2.Execution.serialize(_execution(execution))
    )
    operation = operations_pb2.Operation(
        name=execution.operation, metadata=packed, done=execution.done
    )
    if execution.done:
        operation.response.CopyFrom(packed)
    return operation
