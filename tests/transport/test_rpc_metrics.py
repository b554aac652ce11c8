"""Per-RPC metrics (go-grpc-prometheus names), scraped over HTTP from a real server."""

from __future__ import annotations

import asyncio
import os
import pathlib
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_helpers import _delete_redis_namespace, drop_server_database, make_settings, start_server

from pattern_service.server import PatternServer
from tmws.pattern.v1 import DeletePatternDefinitionRequest, ExecuteManyRequest, ExecuteRequest, ExecuteResponse
from tmws.pattern.v1 import pattern_execution_service_pb2_grpc as pe_grpc

SERVICE = "tmws.pattern.v1.PatternExecutionService"
REDIS_URL = os.environ.get("TMWS_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``(sample name, labels) -> value`` of a /metrics scrape."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def metrics_port(server: PatternServer) -> AsyncIterator[int]:
    port = server.metrics.serve("127.0.0.1:0")
    yield port
    server.metrics.close()


async def _wait_for(port: int, name: str, **labels: str) -> dict:
    deadline = time.monotonic() + 10
    while True:
        samples = await asyncio.to_thread(scrape, port)
        if sample(samples, name, **labels) > 0 or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.1)


async def test_handled_by_code_including_deadline_exceeded_and_cancelled(target: str, metrics_port: int) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pe_grpc.PatternExecutionServiceStub(channel)
        assert (await stub.Execute(ExecuteRequest(query="calculate 1 + 1"), timeout=30)).result.success
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.DeletePatternDefinition(DeletePatternDefinitionRequest(name="no_such_pattern"), timeout=30)
        assert missing.value.code() is grpc.StatusCode.NOT_FOUND

        # A stream left open past its deadline: the server's handler is cancelled by the deadline.
        queue: asyncio.Queue[ExecuteManyRequest | None] = asyncio.Queue()

        async def requests() -> AsyncIterator[ExecuteManyRequest]:
            while (item := await queue.get()) is not None:
                yield item

        late = stub.ExecuteMany(requests(), timeout=1.0)
        await queue.put(ExecuteManyRequest(request_id="a", query="calculate 2 + 2"))
        assert (await late.read()).request_id == "a"
        with pytest.raises(grpc.aio.AioRpcError) as expired:
            await late.read()
        assert expired.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED

        # A stream the client cancels.
        cancelled = stub.ExecuteMany(requests(), timeout=30)
        await queue.put(ExecuteManyRequest(request_id="b", query="calculate 3 + 3"))
        assert (await cancelled.read()).request_id == "b"
        cancelled.cancel()

    common = {"grpc_service": SERVICE, "grpc_type": "bidi_stream", "grpc_method": "ExecuteMany"}
    await _wait_for(metrics_port, "grpc_server_handled_total", grpc_code="DEADLINE_EXCEEDED", **common)
    samples = await _wait_for(metrics_port, "grpc_server_handled_total", grpc_code="CANCELLED", **common)
    for (name, labels), value in sorted(samples.items(), key=lambda kv: (kv[0][0], sorted(kv[0][1]))):
        if name in ("grpc_server_handled_total", "grpc_server_started_total"):
            print(name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels)) + "}", value)
    unary = {"grpc_service": SERVICE, "grpc_type": "unary"}
    assert sample(samples, "grpc_server_started_total", grpc_method="Execute", **unary) == 1
    assert sample(samples, "grpc_server_handled_total", grpc_method="Execute", grpc_code="OK", **unary) == 1
    assert (
        sample(
            samples, "grpc_server_handled_total", grpc_method="DeletePatternDefinition", grpc_code="NOT_FOUND", **unary
        )
        == 1
    )
    assert sample(samples, "grpc_server_handled_total", grpc_code="DEADLINE_EXCEEDED", **common) == 1
    assert sample(samples, "grpc_server_handled_total", grpc_code="CANCELLED", **common) == 1
    assert sample(samples, "grpc_server_started_total", **common) == 2
    assert sample(samples, "grpc_server_msg_received_total", **common) == 2
    assert sample(samples, "grpc_server_msg_sent_total", **common) == 2
    assert sample(samples, "grpc_server_handling_seconds_count", grpc_method="Execute", **unary) == 1
    assert sample(samples, "grpc_server_handling_seconds_count", **common) == 2
    # The deadline-exceeded stream lasted its full second.
    assert sample(samples, "grpc_server_handling_seconds_bucket", le="0.5", **common) <= 1


async def test_cache_and_embedder_metrics_split_by_layer(tmp_path: pathlib.Path) -> None:
    """Local hits/misses/evictions, Redis hits/misses (the machine's Redis), embedder batches."""
    namespace = f"test-metrics-{uuid.uuid4().hex[:12]}"
    settings = make_settings(
        tmp_path / "data", redis_url=REDIS_URL, redis_namespace=namespace, redis_timeout=5.0, cache_max_size=1
    )
    server = await start_server(settings)
    port = server.metrics.serve("127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pe_grpc.PatternExecutionServiceStub(channel)

            async def execute(query: str) -> ExecuteResponse:
                return await stub.Execute(ExecuteRequest(query=query), timeout=30)

            assert not (await execute("calculate 2 + 2")).result.cache_hit  # local miss, Redis miss
            assert (await execute("calculate 2 + 2")).result.cache_hit  # local hit
            assert not (await execute("calculate 3 + 3")).result.cache_hit  # evicts "2 + 2" (max size 1)
            assert (await execute("calculate 2 + 2")).result.cache_hit  # local miss, Redis hit
            await execute("please give me something that resembles an optimisation case")  # semantic: embeds
        samples = await asyncio.to_thread(scrape, port)
    finally:
        server.metrics.close()
        await server.stop(0)
        await drop_server_database(settings)
        await _delete_redis_namespace(REDIS_URL, namespace)
    assert sample(samples, "tmws_cache_hits_total", layer="local") == 1
    assert sample(samples, "tmws_cache_hits_total", layer="redis") == 1
    assert sample(samples, "tmws_cache_misses_total", layer="redis") >= 2
    assert sample(samples, "tmws_cache_misses_total", layer="local") == sample(
        samples, "tmws_cache_misses_total", layer="redis"
    ) + sample(samples, "tmws_cache_hits_total", layer="redis")
    assert sample(samples, "tmws_cache_evictions_total", layer="local") >= 2
    assert sample(samples, "tmws_embedder_batch_size_count") >= 1
    assert sample(samples, "tmws_embedder_batch_size_sum") >= 1
    assert sample(samples, "tmws_embedder_queue_wait_seconds_count") == sample(
        samples, "tmws_embedder_batch_size_count"
    )
