"""``tmws.pattern.v1.PatternExecutionService``: parse → call the engine → map the result.

Deadlines: when a call's deadline passes, gRPC cancels its handler task, which
cancels the engine's work (tools, recall, writes) where it waits; the caller
gets ``DEADLINE_EXCEEDED`` from gRPC itself (``tests/security/test_deadlines.py``).
No timer of our own is armed per call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from pattern_service import domain
from pattern_service.api import convert, convert_routing, convert_stats, paging
from pattern_service.api.identity import Scope, has_scope, require_scope, tenant_of
from pattern_service.api.limits import StreamLength
from pattern_service.api.status import status_code_of, stream_errors, to_rpc_status, unary_errors
from pattern_service.api.streaming import bounded_map
from pattern_service.api.validation import (
    MAX_BATCH,
    MAX_REQUEST_ID,
    Violations,
    check_context,
    check_mode,
    check_name,
    check_no_nul,
    check_page,
    check_pattern_type,
    check_query,
)
from pattern_service.config import Settings
from pattern_service.engine.evaluation import Evaluation, Fit, LabelledUtterance
from pattern_service.engine.stats import StatsSnapshot
from pattern_service.errors import FieldViolation, InvalidArgumentError
from pattern_service.health import ComponentStatus
from pattern_service.metrics import Metrics
from tmws.pattern.v1 import pattern_execution_service_pb2 as pe
from tmws.pattern.v1 import pattern_execution_service_pb2_grpc as pe_grpc

ServicerContext = grpc.aio.ServicerContext[Any, Any]
#: Most labelled utterances in one ``EvaluateRouting`` / ``FitRouting`` call.
MAX_UTTERANCES = 10_000


class Engine(Protocol):
    """What the servicer needs of :class:`pattern_service.engine.engine.PatternExecutionEngine`."""

    async def execute(
        self,
        query: str,
        *,
        execution_mode: domain.ExecutionMode,
        context: dict[str, Any],
        use_cache: bool,
        tenant_id: str,
        allow_write: bool,
        keyword_fallback: bool | None,
    ) -> domain.ExecutionResult: ...

    async def route(
        self,
        query: str,
        *,
        execution_mode: domain.ExecutionMode,
        context: dict[str, Any],
        tenant_id: str,
        keyword_fallback: bool | None,
    ) -> domain.RoutingDecision: ...

    def validate_definitions(self, definitions: list[domain.PatternDefinition]) -> list[FieldViolation]: ...

    async def evaluate_routing(
        self, utterances: Sequence[LabelledUtterance], *, execution_mode: domain.ExecutionMode
    ) -> Evaluation: ...

    async def fit_routing(self, utterances: Sequence[LabelledUtterance], *, validate_only: bool) -> Fit: ...

    async def register_batch(
        self, definitions: list[domain.PatternDefinition], *, validate_only: bool
    ) -> tuple[list[domain.PatternDefinition], int, int, int]: ...

    async def delete_definition(self, name: str) -> int: ...

    def get_definition(self, name: str) -> domain.PatternDefinition: ...

    def list_definitions(self, pattern_type: domain.PatternType | None = None) -> list[domain.PatternDefinition]: ...

    def get_stats(self, tenant_id: str | None = None) -> StatsSnapshot: ...


@dataclass(frozen=True, slots=True)
class _Call:
    query: str
    mode: domain.ExecutionMode
    context: dict[str, Any]
    use_cache: bool
    keyword_fallback: bool | None


class PatternExecutionServicer(pe_grpc.PatternExecutionServiceServicer):
    """Thin servicer over the execution engine.

    Args:
        engine: The execution engine.
        settings: Limits (query length, context size, stream window).
        metrics: Where executions are recorded.
        components: The latest component health (reported by ``GetStats``).
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        metrics: Metrics,
        components: Callable[[], Sequence[ComponentStatus]] = tuple,
    ):
        self._engine = engine
        self._settings = settings
        self.metrics = metrics
        self._components = components

    def _parse(self, v: Violations, request: Any, use_cache: bool) -> _Call:
        return _Call(
            query=check_query(v, "query", request.query, self._settings.max_query_length),
            mode=check_mode(v, "execution_mode", request.execution_mode),
            context=check_context(v, "context", request.context, self._settings.max_context_bytes),
            use_cache=use_cache,
            keyword_fallback=request.keyword_fallback if request.HasField("keyword_fallback") else None,
        )

    async def _execute(self, call: _Call, tenant: str) -> domain.ExecutionResult:
        result = await self._engine.execute(
            call.query,
            execution_mode=call.mode,
            context=call.context,
            use_cache=call.use_cache,
            tenant_id=tenant,
            allow_write=has_scope(Scope.WRITE),  # a write is known only once routed (see api/auth.py)
            keyword_fallback=call.keyword_fallback,
        )
        self.metrics.observe_execution(result)
        return result

    @unary_errors
    async def Execute(self, request: pe.ExecuteRequest, context: ServicerContext) -> pe.ExecuteResponse:
        """Execute one query (see the proto)."""
        tenant = tenant_of(context)
        v = Violations()
        use_cache = request.use_cache if request.HasField("use_cache") else True
        call = self._parse(v, request, use_cache)
        v.raise_if_any()
        result = await self._execute(call, tenant)
        response = pe.ExecuteResponse()
        convert.result_to_proto(result, response.result)
        return response

    @stream_errors
    async def ExecuteMany(
        self, request_iterator: AsyncIterator[pe.ExecuteManyRequest], context: ServicerContext
    ) -> AsyncIterator[pe.ExecuteManyResponse]:
        """Execute a stream of queries with a bounded window (see the proto)."""
        tenant = tenant_of(context)
        in_flight: set[str] = set()
        # The window bounds what the stream holds (read ahead, running, unwritten); the slots bound
        # what runs at once. Items beyond the slots wait here, and that wait is reported as
        # queue_time_ms instead of inflating execution_time_ms (and GetStats' average) with the
        # time an item spent interleaved with dozens of others on one event loop.
        slots = asyncio.Semaphore(self._settings.stream_concurrency)

        async def handle(request: pe.ExecuteManyRequest) -> pe.ExecuteManyResponse:
            received = time.perf_counter()
            queued_ms = 0.0
            rid = request.request_id
            duplicate = rid in in_flight
            try:
                v = Violations()
                if not rid or len(rid) > MAX_REQUEST_ID or "\x00" in rid:
                    v.add("request_id", f"must be 1-{MAX_REQUEST_ID} characters without NUL")
                elif duplicate:
                    v.add("request_id", "duplicates a request still in flight on this stream")
                else:
                    in_flight.add(rid)
                use_cache = request.use_cache if request.HasField("use_cache") else True
                call = self._parse(v, request, use_cache)
                v.raise_if_any()
                async with slots:
                    queued_ms = (time.perf_counter() - received) * 1000
                    result = await self._execute(call, tenant)
                response = pe.ExecuteManyResponse(request_id=rid, queue_time_ms=queued_ms)
                convert.result_to_proto(result, response.result)
                return response
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.observe_error("ExecuteMany", status_code_of(exc).name)
                return pe.ExecuteManyResponse(request_id=rid, status=to_rpc_status(exc), queue_time_ms=queued_ms)
            finally:
                if not duplicate:
                    in_flight.discard(rid)

        length = StreamLength(self._settings.stream_max_items)
        requests = length.limit_requests(aiter(request_iterator))
        async for response in bounded_map(requests, handle, self._settings.stream_window):
            yield response
        if length.exceeded:
            raise length.error()

    @unary_errors
    async def Route(self, request: pe.RouteRequest, context: ServicerContext) -> pe.RouteResponse:
        """Return the routing decision without executing (see the proto)."""
        tenant = tenant_of(context)
        v = Violations()
        call = self._parse(v, request, True)
        v.raise_if_any()
        decision = await self._engine.route(
            call.query,
            execution_mode=call.mode,
            context=call.context,
            tenant_id=tenant,
            keyword_fallback=call.keyword_fallback,
        )
        return pe.RouteResponse(decision=convert.routing_to_proto(decision))

    def _utterances(self, v: Violations, messages: Sequence[pe.LabelledUtterance]) -> list[LabelledUtterance]:
        count = len(messages)
        if not 1 <= count <= MAX_UTTERANCES:
            v.add("utterances", f"must have 1-{MAX_UTTERANCES} entries (got {count})")
            return []
        for i, m in enumerate(messages):
            check_query(v, f"utterances[{i}].query", m.query, self._settings.max_query_length)
            if m.expected_pattern_name:
                check_name(v, f"utterances[{i}].expected_pattern_name", m.expected_pattern_name)
        return convert_routing.utterances_from_proto(messages)

    @unary_errors
    async def EvaluateRouting(
        self, request: pe.EvaluateRoutingRequest, context: ServicerContext
    ) -> pe.EvaluateRoutingResponse:
        """Route labelled utterances without executing them and report the quality (see the proto)."""
        v = Violations()
        utterances = self._utterances(v, request.utterances)
        mode = check_mode(v, "execution_mode", request.execution_mode)
        v.raise_if_any()
        evaluation = await self._engine.evaluate_routing(utterances, execution_mode=mode)
        response = pe.EvaluateRoutingResponse()
        convert_routing.evaluation_to_proto(evaluation, response.evaluation)
        return response

    @unary_errors
    async def FitRouting(self, request: pe.FitRoutingRequest, context: ServicerContext) -> pe.FitRoutingResponse:
        """Fit per-pattern thresholds and the calibration and apply them atomically (see the proto)."""
        v = Violations()
        utterances = self._utterances(v, request.utterances)
        v.raise_if_any()
        fitted = await self._engine.fit_routing(utterances, validate_only=request.validate_only)
        return convert_routing.fit_to_proto(fitted)

    @unary_errors
    async def RegisterBatch(
        self, request: pe.RegisterBatchRequest, context: ServicerContext
    ) -> pe.RegisterBatchResponse:
        """Register or replace definitions atomically (see the proto)."""
        v = Violations()
        count = len(request.pattern_definitions)
        if not 1 <= count <= MAX_BATCH:
            v.add("pattern_definitions", f"must have 1-{MAX_BATCH} entries (got {count})")
            v.raise_if_any()
        definitions: list[domain.PatternDefinition] = []
        bad_type: set[str] = set()
        for i, msg in enumerate(request.pattern_definitions):
            type_field = f"pattern_definitions[{i}].pattern_type"
            kind = check_pattern_type(v, type_field, msg.pattern_type, allow_unset=False)
            if kind is None:
                bad_type.add(type_field)
            for name, value in (
                ("name", msg.name),
                ("trigger_pattern", msg.trigger_pattern),
                ("description", msg.description),
                ("examples", list(msg.examples)),
                ("metadata", convert.struct_to_dict(msg.metadata)),
            ):
                check_no_nul(v, f"pattern_definitions[{i}].{name}", value)
            # Every item goes to the engine's checks, also one without a valid type, so every
            # problem of every item is reported at once (the type itself was reported above).
            definitions.append(convert.definition_from_proto(msg, kind, default_cache_ttl=self._settings.cache_ttl))
        for violation in self._engine.validate_definitions(definitions):
            if violation.field not in bad_type:
                v.add(violation.field, violation.description)
        v.raise_if_any()
        stored, created, replaced, version = await self._engine.register_batch(
            definitions, validate_only=request.validate_only
        )
        return pe.RegisterBatchResponse(
            pattern_definitions=[convert.definition_to_proto(d) for d in stored],
            created_count=created,
            replaced_count=replaced,
            registry_version=version,
        )

    @unary_errors
    async def ListPatternDefinitions(
        self, request: pe.ListPatternDefinitionsRequest, context: ServicerContext
    ) -> pe.ListPatternDefinitionsResponse:
        """List definitions, priority order, paged (see the proto)."""
        v = Violations()
        size = check_page(v, request.page_size)
        kind = check_pattern_type(v, "pattern_type", request.pattern_type, allow_unset=True)
        v.raise_if_any()
        key = f"definitions:{kind}"
        offset = paging.decode_token(request.page_token, key)
        everything = self._engine.list_definitions(kind)
        page = everything[offset : offset + size]
        more = offset + size < len(everything)
        return pe.ListPatternDefinitionsResponse(
            pattern_definitions=[convert.definition_to_proto(d) for d in page],
            next_page_token=paging.encode_token(offset + size, key) if more else "",
            total_size=len(everything),
        )

    @unary_errors
    async def DeletePatternDefinition(
        self, request: pe.DeletePatternDefinitionRequest, context: ServicerContext
    ) -> pe.DeletePatternDefinitionResponse:
        """Delete one definition by name (see the proto)."""
        v = Violations()
        name = check_name(v, "name", request.name)
        v.raise_if_any()
        version = await self._engine.delete_definition(name)
        return pe.DeletePatternDefinitionResponse(registry_version=version)

    @unary_errors
    async def GetPatternDefinition(
        self, request: pe.GetPatternDefinitionRequest, context: ServicerContext
    ) -> pe.GetPatternDefinitionResponse:
        """Return one definition by name (see the proto)."""
        v = Violations()
        name = check_name(v, "name", request.name)
        v.raise_if_any()
        return pe.GetPatternDefinitionResponse(
            pattern_definition=convert.definition_to_proto(self._engine.get_definition(name))
        )

    @unary_errors
    async def GetStats(self, request: pe.GetStatsRequest, context: ServicerContext) -> pe.GetStatsResponse:
        """Return the caller tenant's (or, for an admin, the process's) statistics and the shared registry's."""
        tenant: str | None = tenant_of(context)
        if request.scope == pe.STATS_SCOPE_PROCESS:
            require_scope(Scope.ADMIN)  # other tenants' activity shows in the totals
            tenant = None
        elif request.scope not in (pe.STATS_SCOPE_UNSPECIFIED, pe.STATS_SCOPE_TENANT):
            raise InvalidArgumentError.single("scope", "must be STATS_SCOPE_TENANT or STATS_SCOPE_PROCESS")
        response = convert_stats.stats_to_proto(self._engine.get_stats(tenant_id=tenant))
        response.components.extend(convert.component_to_proto(c) for c in self._components())
        return response
