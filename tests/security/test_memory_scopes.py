"""MemoryService scopes on a real server: ``memories:read`` and ``memories:write``, implied by ``read``, ``write``."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from pattern_service.server import PatternServer
from tmws.pattern.client import NotFound, PatternClient, PermissionDenied, new_memory
from tmws.pattern.v1 import MemoryFilter

Connect = Callable[..., PatternClient]


async def _denied(call: object, scope: str) -> None:
    with pytest.raises(PermissionDenied) as denied:
        await call  # type: ignore[misc]
    assert denied.value.reason == "MISSING_SCOPE"
    assert denied.value.error_info is not None and denied.value.error_info.metadata["required_scope"] == scope


async def test_memory_scopes(connect: Connect) -> None:
    async with connect("a-mem-write") as writer:
        created = await writer.create_memory(new_memory("the staging database password rotates monthly"))
        await writer.batch_create_memories([new_memory("second note")])
        await _denied(writer.list_memories(), "memories:read")
        await _denied(writer.get_memory(created.memory_id), "memories:read")
        await _denied(writer.search_memories("database password"), "memories:read")
        await _denied(writer.execute("calculate 1 + 1"), "execute")  # memories:write reaches nothing else
    async with connect("a-mem-read") as reader:
        assert (await reader.get_memory(created.memory_id)).content == created.content
        assert (await reader.list_memories()).total_size == 2
        assert (await reader.search_memories("database password rotation")).results
        await _denied(reader.create_memory(new_memory("x")), "memories:write")
        await _denied(reader.update_memory(created, "content"), "memories:write")
        await _denied(reader.delete_memory(created.memory_id), "memories:write")
        await _denied(reader.purge_memories(MemoryFilter(), force=True), "memories:write")
        await _denied(reader.get_stats(), "read")  # memories:read is not read
    async with connect("a-read") as legacy_reader:  # keys made before the memory API keep their access
        assert (await legacy_reader.list_memories()).total_size == 2
        await _denied(legacy_reader.delete_memory(created.memory_id), "memories:write")
    async with connect("a-write") as legacy_writer:
        await legacy_writer.delete_memory(created.memory_id)
    async with connect("a-admin") as admin:
        assert (await admin.purge_memories(MemoryFilter(), force=True)).purge_count == 1


async def test_keys_reach_their_own_tenants_memories_only(connect: Connect) -> None:
    async with connect("a-all") as a, connect("b-all") as b:
        mine = await a.create_memory(new_memory("tenant a's roadmap"))
        with pytest.raises(NotFound):
            await b.get_memory(mine.memory_id)
        assert (await b.list_memories()).total_size == 0
        assert (await b.purge_memories(MemoryFilter(), force=True)).purge_count == 0
        assert (await a.get_memory(mine.memory_id)) == mine


async def test_reflection_lists_the_memory_service(secure_server: PatternServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secure_server.port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = [s.name async for r in responses for s in r.list_services_response.service]
    assert "tmws.pattern.v1.MemoryService" in names
