"""The gRPC face of the emulator: Cloud Tasks v2, and v2beta3 for queue statistics.

Requests and answers are the real API's protobuf messages, so the official client
library talks to the emulator unchanged. This module only translates between those
messages and the store's records; the rules live in ``state.py``.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import grpc
from google.cloud import tasks_v2, tasks_v2beta3
from google.protobuf import empty_pb2

from .state import (
    APP_ENGINE_USER_AGENT,
    DEFAULT_DEADLINE,
    ApiError,
    AppEngineRouting,
    Attempt,
    QueueRecord,
    RateLimits,
    RetryConfig,
    Store,
    TaskRecord,
)

logger = logging.getLogger("django_q_cloudtasks.emulator")

V2_SERVICE = "google.cloud.tasks.v2.CloudTasks"
V2BETA3_SERVICE = "google.cloud.tasks.v2beta3.CloudTasks"
DEFAULT_PAGE_SIZE = 1000

# HTTP answers as the google.rpc codes that Task.last_attempt.response_status carries.
HTTP_TO_RPC = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ABORTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


# The queue settings the emulator honours: mask path -> (record part, attribute, reader).
QUEUE_FIELDS: dict[str, tuple[str, str, Callable[[Any], float]]] = {
    "retry_config.max_attempts": ("retry", "max_attempts", lambda q: q.retry_config.max_attempts),
    "retry_config.max_retry_duration": (
        "retry",
        "max_retry_duration",
        lambda q: _seconds(q.retry_config.max_retry_duration),
    ),
    "retry_config.min_backoff": (
        "retry",
        "min_backoff",
        lambda q: _seconds(q.retry_config.min_backoff),
    ),
    "retry_config.max_backoff": (
        "retry",
        "max_backoff",
        lambda q: _seconds(q.retry_config.max_backoff),
    ),
    "retry_config.max_doublings": (
        "retry",
        "max_doublings",
        lambda q: q.retry_config.max_doublings,
    ),
    "rate_limits.max_dispatches_per_second": (
        "rate",
        "max_dispatches_per_second",
        lambda q: q.rate_limits.max_dispatches_per_second,
    ),
    "rate_limits.max_concurrent_dispatches": (
        "rate",
        "max_concurrent_dispatches",
        lambda q: q.rate_limits.max_concurrent_dispatches,
    ),
}


def handlers(store: Store) -> Sequence[grpc.GenericRpcHandler]:
    """The generic gRPC handlers serving ``store`` as the v2 and v2beta3 APIs."""
    v2 = tasks_v2
    queue_reply = _queue_v2
    methods = {
        "CreateQueue": (v2.CreateQueueRequest, lambda r: queue_reply(_create_queue(store, r))),
        "UpdateQueue": (v2.UpdateQueueRequest, lambda r: queue_reply(_update_queue(store, r))),
        "GetQueue": (v2.GetQueueRequest, lambda r: queue_reply(store.get_queue(r.name))),
        "ListQueues": (v2.ListQueuesRequest, lambda r: _list_queues(store, r, queue_reply, v2)),
        "DeleteQueue": (v2.DeleteQueueRequest, lambda r: _deleted(store.delete_queue, r.name)),
        "PurgeQueue": (v2.PurgeQueueRequest, lambda r: queue_reply(store.purge_queue(r.name))),
        "PauseQueue": (v2.PauseQueueRequest, lambda r: queue_reply(_pause(store, r.name))),
        "ResumeQueue": (v2.ResumeQueueRequest, lambda r: queue_reply(_resume(store, r.name))),
        "CreateTask": (
            v2.CreateTaskRequest,
            lambda r: _task(_create_task(store, r), r.response_view),
        ),
        "GetTask": (v2.GetTaskRequest, lambda r: _task(store.get_task(r.name), r.response_view)),
        "ListTasks": (v2.ListTasksRequest, lambda r: _list_tasks(store, r)),
        "DeleteTask": (v2.DeleteTaskRequest, lambda r: _deleted(store.delete_task, r.name)),
        "RunTask": (v2.RunTaskRequest, lambda r: _task(store.run_task(r.name), r.response_view)),
    }
    beta = tasks_v2beta3
    beta_methods = {
        "GetQueue": (
            beta.GetQueueRequest,
            lambda r: _queue_beta(store, store.get_queue(r.name), r),
        ),
        "ListQueues": (
            beta.ListQueuesRequest,
            lambda r: _list_queues(store, r, lambda q: _queue_beta(store, q, r), beta),
        ),
    }
    return (
        grpc.method_handlers_generic_handler(V2_SERVICE, unary_methods(methods)),
        grpc.method_handlers_generic_handler(V2BETA3_SERVICE, unary_methods(beta_methods)),
    )


def unary_methods(methods: dict[str, tuple[Any, Callable[[Any], Any]]]) -> dict[str, Any]:
    """gRPC handlers for ``{method: (request type, call)}``: each call answers a request, or
    raises ApiError to refuse it as the real service does."""
    return {name: _unary(name, request, call) for name, (request, call) in methods.items()}


def _unary(name: str, request_type: Any, call: Callable[[Any], Any]) -> grpc.RpcMethodHandler:
    def respond(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return call(request)
        except ApiError as error:
            context.abort(error.code, error.message)
        except Exception as error:
            logger.exception("%s failed", name)
            context.abort(grpc.StatusCode.INTERNAL, f"{name}: {error}")

    deserialize = getattr(request_type, "deserialize", None) or request_type.FromString
    return grpc.unary_unary_rpc_method_handler(
        respond, request_deserializer=deserialize, response_serializer=_serialize
    )


def _serialize(message: Any) -> bytes:
    """A proto-plus message, or a plain protobuf one (Empty, a long-running Operation)."""
    if hasattr(message, "SerializeToString"):
        return bytes(message.SerializeToString())
    return bytes(type(message).serialize(message))


def _deleted(delete: Callable[[str], None], name: str) -> empty_pb2.Empty:
    delete(name)
    return empty_pb2.Empty()


# Queues.


def _create_queue(store: Store, request: tasks_v2.CreateQueueRequest) -> QueueRecord:
    record = QueueRecord(name=request.queue.name)
    _apply_queue_fields(record, request.queue, [])
    return store.create_queue(request.parent, record)


def _update_queue(store: Store, request: tasks_v2.UpdateQueueRequest) -> QueueRecord:
    with store.lock:
        try:
            record = store.get_queue(request.queue.name)
        except ApiError:
            record = QueueRecord(name=request.queue.name)
        _apply_queue_fields(record, request.queue, list(request.update_mask.paths))
        return store.save_queue(record)


def _apply_queue_fields(record: QueueRecord, queue: Any, paths: list[str]) -> None:
    """Copies the retry and rate settings that ``paths`` name (all that are set when empty).

    A zero means "unspecified", which Cloud Tasks replaces with its default.
    """
    if not paths:
        paths = [field for field in ("retry_config", "rate_limits") if field in queue]
    defaults = {"retry": RetryConfig(), "rate": RateLimits()}
    for path, (part, attribute, read) in QUEUE_FIELDS.items():
        if any(path == named or path.startswith(named + ".") for named in paths):
            value = read(queue) or getattr(defaults[part], attribute)
            setattr(getattr(record, part), attribute, value)


def _pause(store: Store, name: str) -> QueueRecord:
    return store.set_state(name, "PAUSED")


def _resume(store: Store, name: str) -> QueueRecord:
    return store.set_state(name, "RUNNING")


def _list_queues(store: Store, request: Any, reply: Callable[[QueueRecord], Any], api: Any) -> Any:
    queues, token = page(store.list_queues(request.parent), request)
    return api.ListQueuesResponse(queues=[reply(q) for q in queues], next_page_token=token)


def _queue_fields(record: QueueRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "state": record.state,
        "rate_limits": {
            "max_dispatches_per_second": record.rate.max_dispatches_per_second,
            "max_burst_size": record.rate.max_burst_size,
            "max_concurrent_dispatches": record.rate.max_concurrent_dispatches,
        },
        "retry_config": {
            "max_attempts": record.retry.max_attempts,
            "max_retry_duration": datetime.timedelta(seconds=record.retry.max_retry_duration),
            "min_backoff": datetime.timedelta(seconds=record.retry.min_backoff),
            "max_backoff": datetime.timedelta(seconds=record.retry.max_backoff),
            "max_doublings": record.retry.max_doublings,
        },
        "purge_time": timestamp(record.purge_time),
    }


def _queue_v2(record: QueueRecord) -> tasks_v2.Queue:
    return tasks_v2.Queue(**_queue_fields(record))


def _queue_beta(store: Store, record: QueueRecord, request: Any) -> tasks_v2beta3.Queue:
    """A v2beta3 queue; statistics only when the read mask asks for them, as the API does."""
    queue = tasks_v2beta3.Queue(**_queue_fields(record))
    if "stats" in request.read_mask.paths:
        stats = store.stats(record.name)
        stats["oldest_estimated_arrival_time"] = timestamp(stats["oldest_estimated_arrival_time"])
        queue.stats = tasks_v2beta3.QueueStats(**stats)
    return queue


# Tasks.


def _create_task(store: Store, request: tasks_v2.CreateTaskRequest) -> TaskRecord:
    task: Any = request.task  # proto-plus gives datetimes and timedeltas
    common = {
        "name": task.name,
        "schedule_time": task.schedule_time.timestamp() if task.schedule_time else 0.0,
        "dispatch_deadline": task.dispatch_deadline.total_seconds() or DEFAULT_DEADLINE,
    }
    if "app_engine_http_request" in task:
        app_engine = task.app_engine_http_request
        routing = app_engine.app_engine_routing
        record = TaskRecord(
            url="",
            http_method=_method(app_engine.http_method),
            headers=_app_engine_headers(dict(app_engine.headers), app_engine.body),
            body=app_engine.body,
            app_engine=AppEngineRouting(routing.service, routing.version, routing.instance),
            relative_uri=app_engine.relative_uri or "/",
            **common,
        )
        return store.create_task(request.parent, record, named=bool(task.name))
    http = task.http_request
    if "oauth_token" in http:
        raise ApiError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "This emulator attaches OIDC tokens only (HttpRequest.oidc_token), not OAuth tokens.",
        )
    oidc = http.oidc_token if "oidc_token" in http else None
    record = TaskRecord(
        url=http.url,
        http_method=_method(http.http_method),
        headers=dict(http.headers),
        body=http.body,
        oidc_email=oidc.service_account_email if oidc else None,
        oidc_audience=(oidc.audience or None) if oidc else None,
        **common,
    )
    return store.create_task(request.parent, record, named=bool(task.name))


def _app_engine_headers(headers: dict[str, str], body: bytes) -> dict[str, str]:
    """An App Engine task's headers as the service keeps them (recorded): its User-Agent
    (after the caller's own, if any), the body's length, which it computes, and a content
    type if none was given; the ``X-AppEngine-*`` headers are the service's alone."""
    given_agent = next((v for k, v in headers.items() if k.lower() == "user-agent"), "")
    kept = {
        "User-Agent": f"{given_agent} {APP_ENGINE_USER_AGENT}".lstrip(),
        "Content-Length": str(len(body)),
    }
    kept |= {
        name: value
        for name, value in headers.items()
        if name.lower() not in ("user-agent", "content-length")
        and not name.lower().startswith("x-appengine-")
    }
    if not any(name.lower() == "content-type" for name in kept):
        kept["Content-Type"] = "application/octet-stream"
    return kept


def _method(method: int) -> str:
    return str(tasks_v2.HttpMethod(method or tasks_v2.HttpMethod.POST).name)


def _list_tasks(store: Store, request: tasks_v2.ListTasksRequest) -> tasks_v2.ListTasksResponse:
    tasks, token = page(store.list_tasks(request.parent), request)
    return tasks_v2.ListTasksResponse(
        tasks=[_task(t, request.response_view) for t in tasks], next_page_token=token
    )


def _task(record: TaskRecord, view: int) -> tasks_v2.Task:
    """A task as the API shows it; the BASIC view (the default) leaves out the body."""
    full = view == tasks_v2.Task.View.FULL
    request: dict[str, Any] = {
        "http_method": record.http_method,
        "headers": record.headers,
        "body": record.body if full else b"",
    }
    if record.app_engine is not None:
        project = record.name.split("/")[1]
        request["relative_uri"] = record.relative_uri
        request["app_engine_routing"] = {
            **asdict(record.app_engine),
            "host": record.app_engine.host(project),
        }
        target = {"app_engine_http_request": request}
    else:
        request["url"] = record.url
        if record.oidc_email:
            request["oidc_token"] = {
                "service_account_email": record.oidc_email,
                "audience": record.oidc_audience or "",
            }
        target = {"http_request": request}
    return tasks_v2.Task(
        name=record.name,
        **target,
        schedule_time=timestamp(record.schedule_time),
        create_time=timestamp(record.create_time),
        dispatch_deadline=datetime.timedelta(seconds=record.dispatch_deadline),
        dispatch_count=record.dispatch_count,
        response_count=record.response_count,
        first_attempt=_attempt(record.first_attempt, first=True),
        last_attempt=_attempt(record.last_attempt, first=False),
        view=tasks_v2.Task.View.FULL if full else tasks_v2.Task.View.BASIC,
    )


def _attempt(attempt: Attempt | None, *, first: bool) -> dict[str, Any] | None:
    """An attempt as the API shows it: for HTTP tasks, the first one has its dispatch time only."""
    if attempt is None:
        return None
    if first:
        return {"dispatch_time": timestamp(attempt.dispatch_time)}
    if attempt.http_status is None:
        status = {"code": grpc.StatusCode.UNAVAILABLE.value[0], "message": attempt.error}
    elif 200 <= attempt.http_status < 300:
        status = {"code": 0}
    else:
        code = HTTP_TO_RPC.get(
            attempt.http_status,
            grpc.StatusCode.INTERNAL
            if attempt.http_status >= 500
            else grpc.StatusCode.FAILED_PRECONDITION,
        )
        status = {"code": code.value[0], "message": f"HTTP status code {attempt.http_status}"}
    return {
        "schedule_time": timestamp(attempt.schedule_time),
        "dispatch_time": timestamp(attempt.dispatch_time),
        "response_time": timestamp(attempt.response_time),
        "response_status": status,
    }


# Helpers.


def page(items: list[Any], request: Any) -> tuple[list[Any], str]:
    """One page of ``items``; page tokens are offsets."""
    try:
        start = int(request.page_token or 0)
    except ValueError:
        raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "Invalid page token.") from None
    size = request.page_size or DEFAULT_PAGE_SIZE
    end = start + size
    return items[start:end], str(end) if end < len(items) else ""


def timestamp(epoch: float | None) -> datetime.datetime | None:
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC)


def _seconds(duration: datetime.timedelta | None) -> float:
    return duration.total_seconds() if duration else 0.0
