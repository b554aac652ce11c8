"""``tmws.pattern.v1.PatternLearningService``: parse → call the learning store → map the result.

Deadlines are gRPC's: an expired deadline cancels the handler task, and with it
the store call it awaits (see :mod:`pattern_service.api.execution`).
"""

from __future__ import annotations

import time
from typing import Any

import grpc

from pattern_service.api import convert, success_patterns
from pattern_service.api.identity import tenant_of
from pattern_service.api.status import unary_errors
from pattern_service.api.validation import (
    Violations,
    check_uuid,
    match_query,
)
from pattern_service.metrics import Metrics
from pattern_service.store.base import LearningStore
from tmws.pattern.v1 import pattern_learning_service_pb2 as pl
from tmws.pattern.v1 import pattern_learning_service_pb2_grpc as pl_grpc

ServicerContext = grpc.aio.ServicerContext[Any, Any]


def _pattern_id(value: str) -> str:
    v = Violations()
    pattern_id = check_uuid(v, "pattern_id", value)
    v.raise_if_any()
    return pattern_id


class PatternLearningServicer(pl_grpc.PatternLearningServiceServicer):
    """Thin servicer over the learning store.

    Args:
        store: The success-pattern store.
        metrics: Where match latency is recorded.
    """

    def __init__(self, store: LearningStore, metrics: Metrics):
        self._store = store
        self.metrics = metrics

    @unary_errors
    async def MatchPatterns(
        self, request: pl.MatchPatternsRequest, context: ServicerContext
    ) -> pl.MatchPatternsResponse:
        """Find the success patterns closest in meaning to an intent (see the proto)."""
        tenant = tenant_of(context)
        query = match_query(request)
        started = time.perf_counter()
        result = await self._store.match(tenant, query)
        self.metrics.match_latency.observe(time.perf_counter() - started)
        return pl.MatchPatternsResponse(
            matched_patterns=[convert.match_to_proto(m) for m in result.matches],
            total_matches=len(result.matches),
            query_metadata=pl.QueryMetadata(query_time_ms=result.query_time_ms, embedding_model=result.embedding_model),
        )

    @unary_errors
    async def CreateSuccessPattern(
        self, request: pl.CreateSuccessPatternRequest, context: ServicerContext
    ) -> pl.CreateSuccessPatternResponse:
        """Create a success pattern (see the proto)."""
        tenant = tenant_of(context)
        created = await self._store.create(tenant, success_patterns.create_input(request))
        return pl.CreateSuccessPatternResponse(success_pattern=convert.success_pattern_to_proto(created))

    @unary_errors
    async def GetSuccessPattern(
        self, request: pl.GetSuccessPatternRequest, context: ServicerContext
    ) -> pl.GetSuccessPatternResponse:
        """Return one success pattern (see the proto)."""
        tenant = tenant_of(context)
        found = await self._store.get(tenant, _pattern_id(request.pattern_id))
        return pl.GetSuccessPatternResponse(success_pattern=convert.success_pattern_to_proto(found))

    @unary_errors
    async def ListSuccessPatterns(
        self, request: pl.ListSuccessPatternsRequest, context: ServicerContext
    ) -> pl.ListSuccessPatternsResponse:
        """List success patterns, newest first, paged (see the proto)."""
        tenant = tenant_of(context)
        q = success_patterns.list_query(request, tenant)
        page = await self._store.list(
            tenant,
            page_size=q.page_size,
            after=q.after,
            pattern_type=q.pattern_type,
            statuses=q.statuses,
            parent_pattern_id=q.parent_pattern_id,
            tags=q.tags,
            name_prefix=q.name_prefix,
        )
        return pl.ListSuccessPatternsResponse(
            success_patterns=[convert.success_pattern_to_proto(p) for p in page.items],
            next_page_token=q.next_page_token(page),
            total_size=page.total_size,
        )

    @unary_errors
    async def UpdateSuccessPattern(
        self, request: pl.UpdateSuccessPatternRequest, context: ServicerContext
    ) -> pl.UpdateSuccessPatternResponse:
        """Update the fields named in the mask (see the proto)."""
        tenant = tenant_of(context)
        pattern_id, changes = success_patterns.update_changes(request)
        updated = await self._store.update(tenant, pattern_id, changes)
        return pl.UpdateSuccessPatternResponse(success_pattern=convert.success_pattern_to_proto(updated))

    @unary_errors
    async def DeleteSuccessPattern(
        self, request: pl.DeleteSuccessPatternRequest, context: ServicerContext
    ) -> pl.DeleteSuccessPatternResponse:
        """Delete one success pattern; with ``force`` detach its children (see the proto)."""
        tenant = tenant_of(context)
        detached = await self._store.delete(tenant, _pattern_id(request.pattern_id), force=request.force)
        return pl.DeleteSuccessPatternResponse(detached_pattern_ids=list(detached))

    @unary_errors
    async def RecordPatternOutcome(
        self, request: pl.RecordPatternOutcomeRequest, context: ServicerContext
    ) -> pl.RecordPatternOutcomeResponse:
        """Record one use and its outcome (see the proto)."""
        tenant = tenant_of(context)
        pattern_id = _pattern_id(request.pattern_id)
        updated = await self._store.record_outcome(tenant, pattern_id, request.success)
        return pl.RecordPatternOutcomeResponse(success_pattern=convert.success_pattern_to_proto(updated))
