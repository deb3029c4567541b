"""A scripted Cloud Tasks gRPC endpoint on loopback.

It stands in for the live Google API, which cannot run here, where a test needs the
API to fail on cue: UNAVAILABLE twice and then accept, ALREADY_EXISTS, NOT_FOUND. The
broker talks to it through the real client library over real gRPC.
"""

from __future__ import annotations

import collections
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.cloud import tasks_v2, tasks_v2beta3
from google.protobuf import empty_pb2

SERVICE = "google.cloud.tasks.v2.CloudTasks"
BETA_SERVICE = "google.cloud.tasks.v2beta3.CloudTasks"


@dataclass
class ScriptedCloudTasks:
    """Records every call; ``failures[method]`` lists status codes to answer first."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    failures: dict[str, collections.deque[grpc.StatusCode]] = field(
        default_factory=lambda: collections.defaultdict(collections.deque)
    )
    tasks_count: int = 0
    _server: grpc.Server | None = None
    port: int = 0

    def fail(self, method: str, *codes: grpc.StatusCode) -> None:
        self.failures[method].extend(codes)

    def created(self) -> list[tasks_v2.CreateTaskRequest]:
        return [request for method, request in self.calls if method == "CreateTask"]

    def methods(self) -> list[str]:
        return [method for method, _ in self.calls]

    def start(self) -> ScriptedCloudTasks:
        def handler(method: str, request_type: Any, reply: Any) -> grpc.RpcMethodHandler:
            def respond(request: Any, context: grpc.ServicerContext) -> Any:
                self.calls.append((method, request))
                if self.failures[method]:
                    code = self.failures[method].popleft()
                    context.abort(code, f"scripted {code.name}")
                return reply(request)

            return grpc.unary_unary_rpc_method_handler(
                respond,
                request_deserializer=request_type.deserialize,
                response_serializer=lambda message: type(message).serialize(message),
            )

        def task(request: Any) -> tasks_v2.Task:
            return tasks_v2.Task(name=request.task.name)

        def ran(request: Any) -> tasks_v2.Task:
            return tasks_v2.Task(name=request.name)

        def queue(request: Any) -> tasks_v2.Queue:
            return tasks_v2.Queue(name=request.name)

        def beta_queue(request: Any) -> tasks_v2beta3.Queue:
            return tasks_v2beta3.Queue(
                name=request.name, stats=tasks_v2beta3.QueueStats(tasks_count=self.tasks_count)
            )

        class Empty:
            @staticmethod
            def serialize(_: Any) -> bytes:
                return empty_pb2.Empty().SerializeToString()

        def empty(request: Any) -> Any:
            return Empty()

        v2 = {
            "CreateTask": handler("CreateTask", tasks_v2.CreateTaskRequest, task),
            "GetQueue": handler("GetQueue", tasks_v2.GetQueueRequest, queue),
            "PurgeQueue": handler("PurgeQueue", tasks_v2.PurgeQueueRequest, queue),
            "DeleteQueue": handler("DeleteQueue", tasks_v2.DeleteQueueRequest, empty),
            "DeleteTask": handler("DeleteTask", tasks_v2.DeleteTaskRequest, empty),
            "RunTask": handler("RunTask", tasks_v2.RunTaskRequest, ran),
        }
        beta = {"GetQueue": handler("BetaGetQueue", tasks_v2beta3.GetQueueRequest, beta_queue)}
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self._server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(SERVICE, v2),
                grpc.method_handlers_generic_handler(BETA_SERVICE, beta),
            )
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        return self

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server:
            self._server.stop(grace=None)
