"""Cloud Scheduler's job calls over real gRPC on loopback, with jobs kept in a dict.

It stands in for the live Google API, which cannot run here; the command under test
talks to it through the real client library.
"""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc
from google.cloud import scheduler_v1
from google.cloud.scheduler_v1.services.cloud_scheduler.transports import (
    CloudSchedulerGrpcTransport,
)
from google.protobuf import field_mask_pb2

SERVICE = "google.cloud.scheduler.v1.CloudScheduler"


class FakeCloudScheduler:
    def __init__(self) -> None:
        self.jobs: dict[str, scheduler_v1.Job] = {}
        self.calls: list[tuple[str, Any]] = []
        self.refuse_with: grpc.StatusCode | None = None
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self._server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    SERVICE,
                    {
                        "GetJob": self._handler(self._get, scheduler_v1.GetJobRequest),
                        "CreateJob": self._handler(self._create, scheduler_v1.CreateJobRequest),
                        "UpdateJob": self._handler(self._update, scheduler_v1.UpdateJobRequest),
                    },
                )
            ]
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    def start(self) -> FakeCloudScheduler:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(None)

    def client(self) -> scheduler_v1.CloudSchedulerClient:
        channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        return scheduler_v1.CloudSchedulerClient(
            transport=CloudSchedulerGrpcTransport(channel=channel)
        )

    def methods(self) -> list[str]:
        return [method for method, _ in self.calls]

    def _handler(self, respond: Any, request_type: Any) -> grpc.RpcMethodHandler:
        def answer(request: Any, context: grpc.ServicerContext) -> Any:
            self.calls.append((respond.__name__.strip("_"), request))
            if self.refuse_with is not None:
                context.abort(self.refuse_with, f"refused: {self.refuse_with.name}")
            return respond(request, context)

        return grpc.unary_unary_rpc_method_handler(
            answer,
            request_deserializer=request_type.deserialize,
            response_serializer=scheduler_v1.Job.serialize,
        )

    def _get(self, request: Any, context: grpc.ServicerContext) -> scheduler_v1.Job:
        if request.name not in self.jobs:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Job not found: {request.name}")
        return self.jobs[request.name]

    def _create(self, request: Any, context: grpc.ServicerContext) -> scheduler_v1.Job:
        if request.job.name in self.jobs:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"Job exists: {request.job.name}")
        self.jobs[request.job.name] = request.job
        return request.job

    def _update(self, request: Any, context: grpc.ServicerContext) -> scheduler_v1.Job:
        stored = self.jobs.get(request.job.name)
        if stored is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Job not found: {request.job.name}")
        merged = scheduler_v1.Job.pb(stored)
        mask = field_mask_pb2.FieldMask(paths=list(request.update_mask.paths))
        mask.MergeMessage(scheduler_v1.Job.pb(request.job), merged, replace_message_field=True)
        self.jobs[request.job.name] = scheduler_v1.Job.wrap(merged)
        return self.jobs[request.job.name]
