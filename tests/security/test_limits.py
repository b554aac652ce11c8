"""Concurrency limit and ExecuteMany stream length against a real server."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sec_helpers import SLOW_TRIGGER_QUERY, install_slow_tool, settle
from server_helpers import make_settings, start_server

from pattern_service.server import PatternServer
from tmws.pattern.client import PatternClient, ResourceExhausted

LIMIT = 2
STREAM_MAX = 3


@pytest.fixture
async def limited(tmp_path: pathlib.Path) -> AsyncIterator[PatternServer]:
    srv = await start_server(
        make_settings(tmp_path / "data", max_concurrent_rpcs=LIMIT, stream_max_items=STREAM_MAX, stream_window=2)
    )
    yield srv
    await srv.stop(0)


async def test_calls_past_the_limit_are_refused_at_once_with_retry_info(limited: PatternServer) -> None:
    async with PatternClient.connect(f"127.0.0.1:{limited.port}", default_timeout=60.0) as client:
        tool = await install_slow_tool(limited, client)
        blocked = [asyncio.create_task(client.execute(SLOW_TRIGGER_QUERY)) for _ in range(LIMIT)]
        await tool.wait_started(LIMIT)
        assert limited.security.limiter.active == LIMIT
        with pytest.raises(ResourceExhausted) as refused:
            await client.get_stats()
        assert refused.value.reason == "TOO_MANY_CONCURRENT_RPCS"
        assert refused.value.retry_info is not None and refused.value.retry_info.retry_delay > 0
        assert tool.started == LIMIT  # the refused call ran nothing
        async with grpc.aio.insecure_channel(f"127.0.0.1:{limited.port}") as channel:  # probes are never refused
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        tool.release.set()
        results = await asyncio.gather(*blocked)
        assert all(r.success for r in results)
        await settle(lambda: limited.security.limiter.active == 0)
        assert (await client.get_stats()).engine.total_executions == LIMIT  # slots were given back


async def test_a_stream_longer_than_the_limit_is_answered_then_ends_resource_exhausted(limited: PatternServer) -> None:
    async with PatternClient.connect(f"127.0.0.1:{limited.port}", default_timeout=60.0) as client:
        exact = [o async for o in client.execute_many((str(i), f"calculate {i} + 1") for i in range(STREAM_MAX))]
        assert sorted(o.request_id for o in exact) == ["0", "1", "2"] and all(o.ok for o in exact)

        answered: list[str] = []
        with pytest.raises(ResourceExhausted) as ended:
            async for outcome in client.execute_many((str(i), f"calculate {i} * 2") for i in range(STREAM_MAX + 5)):
                assert outcome.ok
                answered.append(outcome.request_id)
        assert ended.value.reason == "STREAM_TOO_LONG"
        assert sorted(answered) == ["0", "1", "2"]
        assert (await client.get_stats()).engine.total_executions == 2 * STREAM_MAX
