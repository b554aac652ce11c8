"""Redis stopped and started again under load: no Execute call fails, health reports it, the cache comes back.

The server runs as a subprocess with ``TMWS_REDIS_URL`` pointing at a private
``redis-server`` of this test (no persistence). Workers send a steady mix of
``Execute`` calls (cache hits, memory reads, memory writes, new cacheable
results) while Redis is stopped (SIGTERM: it exits without saving, so it comes
back empty) and later started again on the same port. Every call of the whole
run must succeed; ``GetStats`` must list Redis as unhealthy while it is down and
healthy after it is back; after the recovery, result-cache keys appear in the
(restarted, empty) Redis again. The process keeps serving throughout: the
overall gRPC health stays SERVING.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from engine.redis_fixtures import PrivateRedis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from process_helpers import ServerProcess, poll, server_env
from redis.asyncio import Redis

from tmws.pattern.client import PatternClient, PatternServiceError
from tmws.pattern.v1 import ComponentHealth

NAMESPACE = "faults"
WORKERS = 3
CALLS_PER_PHASE = 30  # successful calls required before the stop, during the outage and after the recovery
TOPICS = ("deploying payments", "database failover", "cache warmup", "incident review")

pytestmark = pytest.mark.skipif(PrivateRedis.binary() is None, reason="redis-server is not installed")


@dataclass
class Load:
    """What the workers saw."""

    ok: int = 0
    failures: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)


def _call(worker: int, i: int) -> tuple[str, dict[str, object] | None, bool]:
    """The ``i``-th call of ``worker``: (query, context, use_cache), cycling through the mix."""
    kind = i % 4
    if kind == 0:
        return "calculate 2 + 2", None, True  # a cache hit after the first call
    if kind == 1:
        return f"recall memories about {TOPICS[i % len(TOPICS)]}", {"agent": "faults"}, True  # memory read
    if kind == 2:
        topic = TOPICS[(i // 4) % len(TOPICS)]
        return f"store fault note {worker}-{i} about {topic}", {"agent": "faults", "tags": ["faults"]}, True
    return f"calculate {worker} * {i} + 1", None, True  # a new cacheable result every time


async def _worker(client: PatternClient, load: Load, worker: int) -> None:
    """``Execute`` calls until told to stop; every failure is recorded."""
    for i in itertools.count():
        if load.stop.is_set():
            return
        query, context, use_cache = _call(worker, i)
        try:
            result = await client.execute(query, context=context, use_cache=use_cache)
        except PatternServiceError as exc:
            load.failures.append(f"{query!r}: {exc.code.name} {exc.message}")
        else:
            if result.success:
                load.ok += 1
            else:
                load.failures.append(f"{query!r}: success false: {result.error}")
        await asyncio.sleep(0.02)


async def _more_calls(load: Load, n: int, what: str) -> None:
    """Wait until ``n`` more calls succeeded."""
    target = load.ok + n

    async def reached() -> bool | None:
        return True if load.ok >= target else None

    await poll(reached, f"{n} successful calls {what}")


async def _redis_component(client: PatternClient, healthy: bool) -> ComponentHealth:
    """Poll ``GetStats`` until its ``redis`` component reports ``healthy``; returns it."""

    async def check() -> ComponentHealth | None:
        stats = await client.get_stats()
        for component in stats.components:
            if component.name == "redis" and component.healthy is healthy:
                return component
        return None

    return await poll(check, f"GetStats to list redis as healthy={healthy}")


async def _overall_health(target: str) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=30
        )
    return int(response.status)


async def _result_keys(url: str) -> int:
    """How many result-cache keys of the server's namespace Redis holds."""
    client = Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        return len([k async for k in client.scan_iter(match=f"tmws:{NAMESPACE}:result:*", count=500)])
    finally:
        await client.aclose()


async def test_execute_never_fails_while_redis_goes_down_and_comes_back(tmp_path: Path) -> None:
    redis = PrivateRedis()
    await redis.start()
    env = server_env(tmp_path / "data", TMWS_REDIS_URL=redis.url, TMWS_REDIS_NAMESPACE=NAMESPACE)
    server = ServerProcess(env)
    load = Load()
    workers: list[asyncio.Task[None]] = []
    try:
        await server.start()
        async with PatternClient.connect(server.target, default_timeout=60.0) as client:
            await client.wait_until_ready(60)
            await _redis_component(client, healthy=True)
            workers = [asyncio.create_task(_worker(client, load, w)) for w in range(WORKERS)]
            await _more_calls(load, CALLS_PER_PHASE, "before the outage")
            assert await _result_keys(redis.url) > 0  # the cache uses Redis before the outage

            await redis.stop()
            down = await _redis_component(client, healthy=False)
            assert "degraded" in down.detail, down
            await _more_calls(load, CALLS_PER_PHASE, "while Redis is down")
            assert await _overall_health(server.target) == health_pb2.HealthCheckResponse.SERVING

            await redis.start()  # same port, empty
            await _redis_component(client, healthy=True)

            async def keys_again() -> int | None:
                return found if (found := await _result_keys(redis.url)) > 0 else None

            await poll(keys_again, "result-cache keys in the restarted Redis")
            await _more_calls(load, CALLS_PER_PHASE, "after the recovery")
            load.stop.set()
            async with asyncio.timeout(120):
                await asyncio.gather(*workers)
            stats = await client.get_stats()
    finally:
        load.stop.set()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await server.close()
        await redis.stop()

    assert load.failures == [], load.failures[:10]
    assert load.ok >= 3 * CALLS_PER_PHASE
    assert stats.engine.failed_executions == 0, stats.engine
    assert stats.cache.hits > 0, stats.cache
