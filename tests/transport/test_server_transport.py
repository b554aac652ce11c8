"""Reflection v1 + v1alpha, compression both ways, and ErrorInfo on errors raised before a servicer runs."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import descriptor_pb2
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha import reflection_pb2
from grpc_status import rpc_status
from net_helpers import CountingProxy
from server_helpers import drop_server_database, make_settings, start_server

from pattern_service.server import PatternServer
from tmws.pattern.v1 import ExecuteManyRequest, ExecuteRequest, GetStatsRequest, ListPatternDefinitionsRequest
from tmws.pattern.v1 import pattern_execution_service_pb2_grpc as pe_grpc


def _error_info(exc: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None, f"no google.rpc.Status details on {exc.code()}"
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError("no ErrorInfo")


async def _reflect(channel: grpc.aio.Channel, version: str, *requests: reflection_pb2.ServerReflectionRequest) -> list:
    """Ask ``grpc.reflection.<version>`` (the v1 and v1alpha messages share their wire format)."""
    method = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    return [r async for r in method(iter(requests), timeout=10)]


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_reflection_v1_and_v1alpha(target: str, version: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        listed, described = await _reflect(
            channel,
            version,
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="grpc.reflection.v1.ServerReflection"),
        )
    names = {s.name for s in listed.list_services_response.service}
    assert {
        "tmws.pattern.v1.PatternExecutionService",
        "tmws.pattern.v1.PatternLearningService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    file = descriptor_pb2.FileDescriptorProto.FromString(described.file_descriptor_response.file_descriptor_proto[0])
    assert file.package == "grpc.reflection.v1"
    assert file.service[0].method[0].input_type == ".grpc.reflection.v1.ServerReflectionRequest"


async def test_grpcurl_lists_through_reflection(target: str) -> None:
    import asyncio
    import shutil
    import sys

    grpcurl = shutil.which("grpcurl") or str(pathlib.Path(sys.executable).parent / "grpcurl")
    proc = await asyncio.create_subprocess_exec(
        grpcurl, "-plaintext", target, "list", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "grpc.reflection.v1.ServerReflection" in out.decode().split()


async def test_unknown_method_carries_error_info(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await channel.unary_unary("/tmws.pattern.v1.PatternExecutionService/NoSuchMethod")(b"", timeout=10)
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
    detail = _error_info(info.value)
    assert (detail.reason, detail.domain) == ("METHOD_NOT_FOUND", "pattern.tmws.dev")
    assert detail.metadata["method"] == "/tmws.pattern.v1.PatternExecutionService/NoSuchMethod"


async def _server(tmp_path: pathlib.Path, **overrides: object) -> AsyncIterator[PatternServer]:
    settings = make_settings(tmp_path / "data", **overrides)
    server = await start_server(settings)
    try:
        yield server
    finally:
        await server.stop(0)
        await drop_server_database(settings)


async def test_oversized_request_carries_error_info(tmp_path: pathlib.Path) -> None:
    async for server in _server(tmp_path, max_message_bytes=4096):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pe_grpc.PatternExecutionServiceStub(channel)
            big = ExecuteRequest(query="x" * 5000)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Execute(big, timeout=10)
            assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            detail = _error_info(info.value)
            assert detail.reason == "MESSAGE_TOO_LARGE"
            assert detail.metadata["limit_bytes"] == "4096"
            # The same in a stream: the stream ends with that status.
            stream = stub.ExecuteMany(iter([ExecuteManyRequest(request_id="a", query="x" * 5000)]), timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in stream:
                    pass
            assert _error_info(info.value).reason == "MESSAGE_TOO_LARGE"
            # Under the limit all is well.
            response = await stub.Execute(ExecuteRequest(query="calculate 2 + 3"), timeout=30)
            assert response.result.success


@pytest.mark.parametrize("compression", [grpc.Compression.Gzip, grpc.Compression.Deflate])
async def test_compressed_requests_are_accepted(target: str, compression: grpc.Compression) -> None:
    async with grpc.aio.insecure_channel(target, compression=compression) as channel:
        stub = pe_grpc.PatternExecutionServiceStub(channel)
        response = await stub.Execute(ExecuteRequest(query="calculate 6 * 7"), timeout=30)
        assert response.result.success
        items = [
            r
            async for r in stub.ExecuteMany(
                iter([ExecuteManyRequest(request_id=str(i), query=f"calculate {i} + 1") for i in range(5)]),
                timeout=30,
            )
        ]
        assert sorted(r.request_id for r in items) == [str(i) for i in range(5)]


async def _list_bytes(port: int, options: list[tuple[str, int]] | None = None) -> tuple[int, int]:
    """Bytes server -> client for one ListPatternDefinitions page, and the number of definitions."""
    proxy = CountingProxy(port)
    await proxy.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{proxy.port}", options=options) as channel:
            stub = pe_grpc.PatternExecutionServiceStub(channel)
            await stub.GetStats(GetStatsRequest(), timeout=30)  # connection set up, settings exchanged
            before = proxy.to_client
            response = await stub.ListPatternDefinitions(ListPatternDefinitionsRequest(page_size=100), timeout=30)
            return proxy.to_client - before, len(response.pattern_definitions)
    finally:
        await proxy.close()


async def test_large_responses_are_compressed_for_clients_that_accept_it(tmp_path: pathlib.Path) -> None:
    async for gzip_server in _server(tmp_path / "compressed"):
        compressed, count = await _list_bytes(gzip_server.port)
        # A client whose grpc-accept-encoding lists identity only gets the same answer uncompressed.
        identity_only, count_identity = await _list_bytes(
            gzip_server.port, options=[("grpc.compression_enabled_algorithms_bitset", 1)]
        )
        deflate_only, _ = await _list_bytes(
            gzip_server.port, options=[("grpc.compression_enabled_algorithms_bitset", 3)]
        )
        assert count == count_identity > 0
    async for plain_server in _server(tmp_path / "plain", response_compression="none"):
        plain, _ = await _list_bytes(plain_server.port)
    print(f"\nListPatternDefinitions ({count} definitions): gzip {compressed} B, identity {plain} B")
    assert compressed < plain * 0.6
    assert deflate_only < plain * 0.6
    assert identity_only > plain * 0.9
