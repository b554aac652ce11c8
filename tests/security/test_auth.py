"""API keys against a real server: UNAUTHENTICATED, PERMISSION_DENIED per scope, open health/reflection."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sec_helpers import bearer, key_of, slow_definition

from pattern_service.server import PatternServer
from tmws.pattern.client import PatternClient, PermissionDenied, Unauthenticated
from tmws.pattern.v1 import GetStatsRequest
from tmws.pattern.v1 import pattern_execution_service_pb2_grpc as pe_grpc

Connect = Callable[..., PatternClient]
SOME_ID = str(uuid.uuid4())


async def test_no_or_bad_credentials_are_unauthenticated(connect: Connect) -> None:
    async with connect(None) as anonymous:
        with pytest.raises(Unauthenticated) as missing:
            await anonymous.execute("calculate 1 + 1")
        assert missing.value.reason == "MISSING_CREDENTIALS"
    async with connect(None, metadata=[("authorization", "Bearer not-a-key")]) as wrong:
        with pytest.raises(Unauthenticated) as invalid:
            await wrong.get_stats()
        assert invalid.value.reason == "INVALID_API_KEY"
    async with connect(None, metadata=[("authorization", "Basic dXNlcjpwdw==")]) as basic:
        with pytest.raises(Unauthenticated) as malformed:
            await basic.list_success_patterns()
        assert malformed.value.reason == "MALFORMED_AUTHORIZATION"


async def test_x_api_key_header_is_accepted(connect: Connect, secure_server: PatternServer) -> None:
    async with connect(None, metadata=[("x-api-key", key_of("a-exec"))]) as client:
        assert (await client.execute("calculate 6 * 7")).success


@pytest.mark.parametrize(
    ("key", "call", "scope"),
    [
        ("a-read", lambda c: c.execute("calculate 1 + 1"), "execute"),
        ("a-read", lambda c: c.route("calculate 1 + 1"), "execute"),
        ("a-write", lambda c: c.get_stats(), "read"),
        ("a-write", lambda c: c.list_pattern_definitions(), "read"),
        ("a-write", lambda c: c.match_patterns("speed up the database"), "read"),
        ("a-write", lambda c: c.get_success_pattern(SOME_ID), "read"),
        ("a-write", lambda c: c.list_success_patterns(), "read"),
        ("a-exec", lambda c: c.delete_success_pattern(SOME_ID), "write"),
        ("a-exec", lambda c: c.record_pattern_outcome(SOME_ID, success=True), "write"),
        ("a-all", lambda c: c.register_batch([slow_definition()]), "admin"),
        ("a-all", lambda c: c.delete_pattern_definition("quick_calculation"), "admin"),
    ],
)
async def test_each_rpc_needs_its_scope(connect: Connect, key: str, call: Callable[..., object], scope: str) -> None:
    async with connect(key) as client:
        with pytest.raises(PermissionDenied) as denied:
            await call(client)  # type: ignore[misc]
    assert denied.value.reason == "MISSING_SCOPE"
    info = denied.value.error_info
    assert info is not None and info.metadata["required_scope"] == scope


async def test_scopes_that_are_held_pass(connect: Connect) -> None:
    async with connect("a-exec") as client:
        assert (await client.execute("calculate 2 + 2")).success
        assert (await client.route("check service health")).pattern_name
        assert (await client.get_stats()).engine.total_executions == 1
    async with connect("a-admin") as admin:  # admin implies every scope
        valid = slow_definition()
        valid.metadata.update({"tool": "calculate"})
        assert (await admin.register_batch([valid], validate_only=True)).created_count == 1
        assert (await admin.execute("calculate 3 + 3")).success


async def test_a_write_through_execute_needs_the_write_scope(connect: Connect, secure_server: PatternServer) -> None:
    store = "store the deploy checklist for the payments service"
    async with connect("a-exec") as reader:
        with pytest.raises(PermissionDenied) as denied:
            await reader.execute(store, context={"agent": "artemis"})
        assert denied.value.reason == "MISSING_SCOPE"
        outcomes = [o async for o in reader.execute_many([("1", store), ("2", "calculate 1 + 2")])]
        by_id = {o.request_id: o for o in outcomes}
        assert not by_id["1"].ok and by_id["1"].error is not None
        assert by_id["1"].error.code == grpc.StatusCode.PERMISSION_DENIED
        assert by_id["2"].ok
    assert await secure_server.app.memory_store.count("tenant-a") == 0  # the refused write changed nothing
    async with connect("a-all") as writer:
        assert (await writer.execute(store, context={"agent": "artemis"})).success
    assert await secure_server.app.memory_store.count("tenant-a") == 1


async def test_tenant_header_must_match_the_key(connect: Connect) -> None:
    async with connect("a-exec", metadata=[("x-tenant-id", "tenant-b")]) as spoof:
        with pytest.raises(PermissionDenied) as denied:
            await spoof.execute("calculate 1 + 1")
        assert denied.value.reason == "TENANT_MISMATCH"
    async with connect("a-exec", metadata=[("x-tenant-id", "tenant-a")]) as same:
        result = await same.execute("calculate 1 + 1")
        assert result.metadata["tenant"] == "tenant-a"


async def test_health_and_reflection_stay_open(secure_server: PatternServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secure_server.port}") as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = [s.name async for r in responses for s in r.list_services_response.service]
        assert "tmws.pattern.v1.PatternExecutionService" in names
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await pe_grpc.PatternExecutionServiceStub(channel).GetStats(GetStatsRequest())
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        stats = await pe_grpc.PatternExecutionServiceStub(channel).GetStats(
            GetStatsRequest(), metadata=bearer("a-read")
        )
        assert stats.registry.total_patterns > 0
