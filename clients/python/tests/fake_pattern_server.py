"""A real ``grpc.aio`` server with canned servicers, for testing the client only (fixtures in conftest)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, struct_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from tmws.pattern.client import PatternClient
from tmws.pattern.v1 import (
    PATTERN_TYPE_INFRASTRUCTURE,
    PATTERN_TYPE_MEMORY,
    CreateSuccessPatternResponse,
    DeletePatternDefinitionResponse,
    DeleteSuccessPatternResponse,
    EngineStats,
    ExecuteManyRequest,
    ExecuteManyResponse,
    ExecuteResponse,
    ExecutionMode,
    ExecutionResult,
    GetStatsResponse,
    GetSuccessPatternResponse,
    ListPatternDefinitionsResponse,
    ListSuccessPatternsResponse,
    MatchPatternsResponse,
    PatternDefinition,
    PatternMatch,
    QueryMetadata,
    RecordPatternOutcomeResponse,
    RegisterBatchResponse,
    RouteAlternative,
    RouteResponse,
    RoutingDecision,
    SuccessPattern,
    UpdateSuccessPatternResponse,
)
from tmws.pattern.v1 import pattern_execution_service_pb2_grpc as exec_grpc
from tmws.pattern.v1 import pattern_learning_service_pb2_grpc as learn_grpc

DOMAIN = "pattern.tmws.dev"


def pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def rich_status(code: grpc.StatusCode, message: str, *extra: Message, reason: str = "TEST_REASON") -> status_pb2.Status:
    """A status with ErrorInfo (as the server sends on every error) plus ``extra`` details."""
    details = [pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata={"k": "v"}))]
    details.extend(pack(d) for d in extra)
    return status_pb2.Status(code=code.value[0], message=message, details=details)


def canned_result(name: str = "health_check") -> ExecutionResult:
    result = struct_pb2.Struct()
    result.update({"status": "ok"})
    return ExecutionResult(
        pattern_name=name,
        pattern_type=PATTERN_TYPE_INFRASTRUCTURE,
        success=True,
        result=result,
        execution_time_ms=1.5,
        tokens_used=50,
        routing=RoutingDecision(pattern_name=name, confidence=1.0, match_source="trigger"),
    )


SUCCESS_PATTERN = SuccessPattern(pattern_id="0b9e7f55-4c39-4d4f-9d1e-5d8f0c0a1b2c", name="cache_api", version=1)

CANNED: dict[str, Message] = {
    "Execute": ExecuteResponse(result=canned_result()),
    "Route": RouteResponse(
        decision=RoutingDecision(
            pattern_type=PATTERN_TYPE_MEMORY,
            pattern_name="recall",
            confidence=0.9,
            reasoning="trigger matched",
            estimated_cost=200,
            alternative_routes=[RouteAlternative(pattern_name="search", score=0.5)],
            match_source="trigger",
        )
    ),
    "RegisterBatch": RegisterBatchResponse(created_count=1, registry_version=7),
    "ListPatternDefinitions": ListPatternDefinitionsResponse(
        pattern_definitions=[PatternDefinition(name="a")], total_size=1
    ),
    "DeletePatternDefinition": DeletePatternDefinitionResponse(registry_version=8),
    "GetStats": GetStatsResponse(engine=EngineStats(total_executions=3, success_rate=1.0)),
    "MatchPatterns": MatchPatternsResponse(
        matched_patterns=[PatternMatch(name="cache_api", confidence_score=0.8, recommendations=["add cache"])],
        total_matches=1,
        query_metadata=QueryMetadata(query_time_ms=2.0, embedding_model="test-model"),
    ),
    "CreateSuccessPattern": CreateSuccessPatternResponse(success_pattern=SUCCESS_PATTERN),
    "GetSuccessPattern": GetSuccessPatternResponse(success_pattern=SUCCESS_PATTERN),
    "ListSuccessPatterns": ListSuccessPatternsResponse(success_patterns=[SUCCESS_PATTERN], total_size=1),
    "UpdateSuccessPattern": UpdateSuccessPatternResponse(success_pattern=SUCCESS_PATTERN),
    "DeleteSuccessPattern": DeleteSuccessPatternResponse(detached_pattern_ids=["id-2"]),
    "RecordPatternOutcome": RecordPatternOutcomeResponse(success_pattern=SUCCESS_PATTERN),
}


@dataclass
class Recorder:
    """What the servicers received, and how they should misbehave."""

    requests: dict[str, list[Any]] = field(default_factory=dict)
    metadata: dict[str, list[tuple[str, str | bytes]]] = field(default_factory=dict)
    time_remaining: dict[str, float | None] = field(default_factory=dict)
    errors: dict[str, status_pb2.Status] = field(default_factory=dict)
    plain_errors: dict[str, tuple[grpc.StatusCode, str]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    responses: dict[str, Message] = field(default_factory=lambda: dict(CANNED))
    pages: dict[str, list[Message]] = field(default_factory=dict)
    # ExecuteMany: when set, the servicer waits for it after reading the first request.
    stream_gate: asyncio.Event | None = None
    stream_reads: int = 0
    stream_delay: float = 0.0

    def last(self, method: str) -> Any:
        return self.requests[method][-1]

    async def handle(self, method: str, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
        self.requests.setdefault(method, []).append(request)
        self.metadata[method] = [(m.key, m.value) for m in context.invocation_metadata() or ()]
        self.time_remaining[method] = context.time_remaining()
        if method in self.delays:
            await asyncio.sleep(self.delays[method])
        if method in self.errors:
            await context.abort_with_status(rpc_status.to_status(self.errors[method]))
        if method in self.plain_errors:
            code, message = self.plain_errors[method]
            await context.abort(code, message)
        if self.pages.get(method):
            return self.pages[method].pop(0)
        return self.responses[method]


class FakeExecutionService(exec_grpc.PatternExecutionServiceServicer):
    """Canned ``PatternExecutionService``; ``ExecuteMany`` answers per query (see ``execute_many_item``)."""

    def __init__(self, recorder: Recorder) -> None:
        self.r = recorder

    async def Execute(self, request: Any, context: Any) -> Any:
        return await self.r.handle("Execute", request, context)

    async def Route(self, request: Any, context: Any) -> Any:
        return await self.r.handle("Route", request, context)

    async def RegisterBatch(self, request: Any, context: Any) -> Any:
        return await self.r.handle("RegisterBatch", request, context)

    async def ListPatternDefinitions(self, request: Any, context: Any) -> Any:
        return await self.r.handle("ListPatternDefinitions", request, context)

    async def DeletePatternDefinition(self, request: Any, context: Any) -> Any:
        return await self.r.handle("DeletePatternDefinition", request, context)

    async def GetStats(self, request: Any, context: Any) -> Any:
        return await self.r.handle("GetStats", request, context)

    async def ExecuteMany(self, request_iterator: Any, context: Any) -> AsyncIterator[ExecuteManyResponse]:
        r = self.r
        r.metadata["ExecuteMany"] = [(m.key, m.value) for m in context.invocation_metadata() or ()]
        r.time_remaining["ExecuteMany"] = context.time_remaining()
        if "ExecuteMany" in r.errors:
            await context.abort_with_status(rpc_status.to_status(r.errors["ExecuteMany"]))
        received = r.requests.setdefault("ExecuteMany", [])
        async for request in request_iterator:
            received.append(request)
            r.stream_reads += 1
            if r.stream_gate is not None and r.stream_reads == 1:
                await r.stream_gate.wait()
            if r.stream_delay:
                await asyncio.sleep(r.stream_delay)
            if request.query == "abort-stream":
                status = rich_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "stream quota exhausted")
                await context.abort_with_status(rpc_status.to_status(status))
            yield execute_many_item(request)


def execute_many_item(request: ExecuteManyRequest) -> ExecuteManyResponse:
    """``bad...`` queries get an in-band INVALID_ARGUMENT; others a result named after the query."""
    if request.query.startswith("bad"):
        status = rich_status(
            grpc.StatusCode.INVALID_ARGUMENT,
            "query is invalid",
            error_details_pb2.BadRequest(
                field_violations=[error_details_pb2.BadRequest.FieldViolation(field="query", description="bad query")]
            ),
        )
        return ExecuteManyResponse(request_id=request.request_id, status=status)
    result = canned_result(request.query[:50])
    result.metadata.update({"mode": ExecutionMode.Name(request.execution_mode)})
    if request.HasField("context"):
        result.metadata.update({"context": dict(request.context)})
    return ExecuteManyResponse(request_id=request.request_id, result=result)


class FakeLearningService(learn_grpc.PatternLearningServiceServicer):
    """Canned ``PatternLearningService``."""

    def __init__(self, recorder: Recorder) -> None:
        self.r = recorder

    async def MatchPatterns(self, request: Any, context: Any) -> Any:
        return await self.r.handle("MatchPatterns", request, context)

    async def CreateSuccessPattern(self, request: Any, context: Any) -> Any:
        return await self.r.handle("CreateSuccessPattern", request, context)

    async def GetSuccessPattern(self, request: Any, context: Any) -> Any:
        return await self.r.handle("GetSuccessPattern", request, context)

    async def ListSuccessPatterns(self, request: Any, context: Any) -> Any:
        return await self.r.handle("ListSuccessPatterns", request, context)

    async def UpdateSuccessPattern(self, request: Any, context: Any) -> Any:
        return await self.r.handle("UpdateSuccessPattern", request, context)

    async def DeleteSuccessPattern(self, request: Any, context: Any) -> Any:
        return await self.r.handle("DeleteSuccessPattern", request, context)

    async def RecordPatternOutcome(self, request: Any, context: Any) -> Any:
        return await self.r.handle("RecordPatternOutcome", request, context)


@dataclass
class TestServer:
    """A running fake server."""

    __test__ = False

    target: str
    recorder: Recorder


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    recorder = Recorder()
    srv = grpc.aio.server()
    exec_grpc.add_PatternExecutionServiceServicer_to_server(FakeExecutionService(recorder), srv)
    learn_grpc.add_PatternLearningServiceServicer_to_server(FakeLearningService(recorder), srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    try:
        yield TestServer(f"127.0.0.1:{port}", recorder)
    finally:
        await srv.stop(None)


@pytest.fixture
async def client(server: TestServer) -> AsyncIterator[PatternClient]:
    async with PatternClient.connect(server.target) as c:
        yield c
