"""``tmws.pattern.v1.MemoryService``: parse → memory store / engine → invalidate caches → map.

Every committed write calls ``PatternExecutionEngine.memories_changed`` before
it returns, so no cached ``Execute`` result of the tenant (here or, through
Redis, on another replica) shows a memory as it was before the write.
"""

from __future__ import annotations

from typing import Any

import grpc

from pattern_service.api import memory_requests
from pattern_service.api.convert_memories import memory_to_proto, scored_to_proto
from pattern_service.api.identity import tenant_of
from pattern_service.api.status import unary_errors
from pattern_service.engine.engine import PatternExecutionEngine
from pattern_service.metrics import Metrics
from pattern_service.store.memory_admin import SqlMemoryAdmin
from tmws.pattern.v1 import memory_service_pb2 as pm
from tmws.pattern.v1 import memory_service_pb2_grpc as pm_grpc

ServicerContext = grpc.aio.ServicerContext[Any, Any]


class MemoryServicer(pm_grpc.MemoryServiceServicer):
    """Thin servicer over the memory admin store and the engine's recall.

    Args:
        admin: Resource-style memory operations.
        engine: Searches (``recall``'s ranking) and invalidates cached results after writes.
        metrics: Where errors are counted.
    """

    def __init__(self, admin: SqlMemoryAdmin, engine: PatternExecutionEngine, metrics: Metrics):
        self._admin = admin
        self._engine = engine
        self.metrics = metrics

    @unary_errors
    async def CreateMemory(self, request: pm.CreateMemoryRequest, context: ServicerContext) -> pm.CreateMemoryResponse:
        """Create one memory (see the proto)."""
        tenant = tenant_of(context)
        (created,) = await self._admin.create_many([memory_requests.create_memory(tenant, request)])
        await self._engine.memories_changed(tenant)
        return pm.CreateMemoryResponse(memory=memory_to_proto(created))

    @unary_errors
    async def BatchCreateMemories(
        self, request: pm.BatchCreateMemoriesRequest, context: ServicerContext
    ) -> pm.BatchCreateMemoriesResponse:
        """Create up to 1,000 memories atomically (see the proto)."""
        tenant = tenant_of(context)
        created = await self._admin.create_many(memory_requests.batch_create_memories(tenant, request))
        await self._engine.memories_changed(tenant)
        return pm.BatchCreateMemoriesResponse(memories=[memory_to_proto(m) for m in created])

    @unary_errors
    async def GetMemory(self, request: pm.GetMemoryRequest, context: ServicerContext) -> pm.GetMemoryResponse:
        """Return one memory (see the proto)."""
        tenant = tenant_of(context)
        found = await self._admin.get(tenant, memory_requests.memory_id(request.memory_id))
        return pm.GetMemoryResponse(memory=memory_to_proto(found))

    @unary_errors
    async def ListMemories(self, request: pm.ListMemoriesRequest, context: ServicerContext) -> pm.ListMemoriesResponse:
        """List memories passing a filter, paged (see the proto)."""
        tenant = tenant_of(context)
        q = memory_requests.list_memories(request, tenant)
        page = await self._admin.list(tenant, q.flt, order=q.order, page_size=q.page_size, after=q.after)
        return pm.ListMemoriesResponse(
            memories=[memory_to_proto(m) for m in page.items],
            next_page_token=q.next_page_token(page),
            total_size=page.total_size,
        )

    @unary_errors
    async def UpdateMemory(self, request: pm.UpdateMemoryRequest, context: ServicerContext) -> pm.UpdateMemoryResponse:
        """Update the fields named in the mask (see the proto)."""
        tenant = tenant_of(context)
        memory_id, changes = memory_requests.update_memory(request)
        updated = await self._admin.update(tenant, memory_id, changes)
        await self._engine.memories_changed(tenant)
        return pm.UpdateMemoryResponse(memory=memory_to_proto(updated))

    @unary_errors
    async def DeleteMemory(self, request: pm.DeleteMemoryRequest, context: ServicerContext) -> pm.DeleteMemoryResponse:
        """Delete one memory (see the proto)."""
        tenant = tenant_of(context)
        await self._admin.delete(tenant, memory_requests.memory_id(request.memory_id))
        await self._engine.memories_changed(tenant)
        return pm.DeleteMemoryResponse()

    @unary_errors
    async def PurgeMemories(
        self, request: pm.PurgeMemoriesRequest, context: ServicerContext
    ) -> pm.PurgeMemoriesResponse:
        """Delete (``force``) or count the memories passing a filter (see the proto)."""
        tenant = tenant_of(context)
        flt = memory_requests.purge_memories(request)
        count, sample = await self._admin.purge(tenant, flt, force=request.force)
        if request.force and count:
            await self._engine.memories_changed(tenant)
        return pm.PurgeMemoriesResponse(purge_count=count, purge_sample=list(sample))

    @unary_errors
    async def SearchMemories(
        self, request: pm.SearchMemoriesRequest, context: ServicerContext
    ) -> pm.SearchMemoriesResponse:
        """Semantic search with ``recall``'s ranking (see the proto)."""
        tenant = tenant_of(context)
        q = memory_requests.search_memories(request)
        found, below, floor = await self._engine.search_memories(tenant, q.query, q.flt, q.limit, q.min_score)
        return pm.SearchMemoriesResponse(
            results=[scored_to_proto(m) for m in found], min_score=floor, below_min_score=below
        )
