"""Redis as the second cache layer: two replicas sharing Redis and one SQLite store, outages, wiring.

Every test uses the real Redis under a unique namespace (only its keys are
deleted afterwards) or a private redis-server it stops and restarts. Two
"replicas" are two engines in one process, each with its own backend (own
local layer, own client and listener), sharing Redis, the definition store
and the memory store. Registry polling is off (``refresh_interval=0``), so
a registry change reaching the other replica went through pub/sub.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio.client
from eng_helpers import EngClock, eng_definition
from redis.asyncio import Redis
from redis_fixtures import (
    REDIS_URL,
    PrivateRedis,
    redis_delete_namespace,
    redis_unreachable,
    redis_wait_for,
)

from pattern_service.domain import (
    ExecutionMode,
    ExecutionResult,
    MatchSource,
    PatternType,
    RouteAlternative,
    RoutingDecision,
)
from pattern_service.engine import PatternExecutionEngine
from pattern_service.errors import NotFoundError
from pattern_service.redis.cache import RedisResultCache
from pattern_service.redis.codec import decode_result, encode_result
from pattern_service.redis.sync import RedisCacheBackend
from pattern_service.store.definitions import SqlPatternDefinitionStore

Replica = tuple[PatternExecutionEngine, RedisCacheBackend]
RECALL = "recall memories about redis"


@pytest.fixture
async def redis_shared_url() -> str:
    """URL of the shared Redis (the test is skipped when it does not answer)."""
    reason = await redis_unreachable(REDIS_URL)
    if reason is not None:
        pytest.skip(reason)
    return REDIS_URL


@pytest.fixture
async def redis_namespace(redis_shared_url: str) -> AsyncIterator[str]:
    """A namespace of this test only; its keys are deleted afterwards (never FLUSHDB)."""
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    yield namespace
    await redis_delete_namespace(redis_shared_url, namespace)


@pytest.fixture
async def redis_backends(
    redis_shared_url: str, redis_namespace: str
) -> AsyncIterator[Callable[..., RedisCacheBackend]]:
    """Makes backends (default: the shared Redis, the test's namespace, generous timeouts); closes them."""
    made: list[RedisCacheBackend] = []

    def make(url: str | None = None, **kwargs: object) -> RedisCacheBackend:
        kwargs.setdefault("timeout", 5.0)
        kwargs.setdefault("probe_interval", 0.05)
        kwargs.setdefault("health_interval", 0.2)
        backend = RedisCacheBackend.from_url(url or redis_shared_url, namespace=redis_namespace, **kwargs)  # type: ignore[arg-type]
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.close()


@pytest.fixture
def redis_replica(
    eng_build: Callable[..., Awaitable[PatternExecutionEngine]],
    eng_definitions: SqlPatternDefinitionStore,
    redis_backends: Callable[..., RedisCacheBackend],
) -> Callable[..., Awaitable[Replica]]:
    """Builds a started replica: an engine on the shared stores with its own Redis backend."""

    async def replica(url: str | None = None, **kwargs: object) -> Replica:
        backend = redis_backends(url, **kwargs)
        engine = await eng_build(
            definition_store=backend.definition_store(eng_definitions),
            cache=backend.cache,
            generations=backend.generations,
        )
        await backend.start(engine.registries.refresh_if_changed)
        return engine, backend

    return replica


async def _routed(engine: PatternExecutionEngine, query: str) -> str | None:
    try:
        return (await engine.route(query)).pattern_name
    except NotFoundError:
        return None


def _sample(result: object, **overrides: object) -> ExecutionResult:
    routing = RoutingDecision(
        PatternType.HYBRID,
        "semantic_search",
        0.8125,
        "trigger matched; hybrid because COMPREHENSIVE",
        150,
        (RouteAlternative(PatternType.MEMORY, "recall_memory", 0.5, 100),),
        MatchSource.TRIGGER,
    )
    values: dict[str, object] = {
        "pattern_name": "semantic_search",
        "pattern_type": PatternType.HYBRID,
        "success": True,
        "result": result,
        "execution_time_ms": 12.345678901234,
        "tokens_used": 150,
        "cache_hit": False,
        "error": None,
        "metadata": {"tenant": "t1", "parts": ["infrastructure", "memory"], "confidence": 0.1 + 0.2},
        "routing": routing,
    }
    values.update(overrides)
    return ExecutionResult(**values)  # type: ignore[arg-type]


def test_codec_round_trips_exactly_and_compactly() -> None:
    small = _sample({"memory": {"count": 1, "memories": [{"content": "ünïcode ✓", "score": 0.1 + 0.2}]}})
    data = encode_result(small, tenant_id="t1", reads_memory=True)
    decoded = decode_result(data)
    assert (decoded.tenant_id, decoded.reads_memory) == ("t1", True)
    assert decoded.result == small and decoded.result is not small
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.result.success = False  # type: ignore[misc]
    assert decode_result(data).result.result is not decoded.result.result  # a fresh copy per decode
    failed = _sample({}, success=False, error="memory part failed: boom", pattern_type=PatternType.MEMORY)
    assert decode_result(encode_result(failed, tenant_id="t", reads_memory=False)).result == failed

    big = _sample({"memory": {"memories": [{"content": f"note {i} about the payments deploy"} for i in range(50)]}})
    packed = encode_result(big, tenant_id="t1", reads_memory=True)
    assert packed[:1] == b"z" and decode_result(packed).result == big
    plain_json = len(repr(dataclasses.asdict(big)).encode())
    assert len(packed) < plain_json / 4
    for bad in (b"", b"x123", b"j[1,2]", b"z" + b"not zlib", b"j" + b"\xff\xfe"):
        with pytest.raises(ValueError):
            decode_result(bad)
    with pytest.raises(ValueError):
        encode_result(_sample({"x": float("nan")}), tenant_id="t", reads_memory=False)


async def test_write_on_one_replica_invalidates_cached_recall_on_another(
    redis_replica: Callable[..., Awaitable[Replica]], redis_shared_url: str, redis_namespace: str
) -> None:
    a, _ = await redis_replica()
    b, b_backend = await redis_replica()
    await a.execute("store redis eviction is lru", tenant_id="t1")
    await a.execute("store redis in t2 too", tenant_id="t2")
    first = await b.execute(RECALL, tenant_id="t1")
    assert not first.cache_hit and first.result["memory"]["count"] == 1
    assert (await b.execute(RECALL, tenant_id="t1")).cache_hit  # b's local layer
    from_redis = await a.execute(RECALL, tenant_id="t1")  # a never ran it: served from Redis
    assert from_redis.cache_hit and from_redis.tokens_used == 0 and from_redis.result == first.result
    assert a.get_stats().cache.redis_hits == 1 and a.get_stats().cache.local_hits == 0
    assert not (await b.execute(RECALL, tenant_id="t2")).cache_hit
    assert (await b.execute(RECALL, tenant_id="t2")).cache_hit

    await a.execute("store redis persistence uses aof", tenant_id="t1")  # a write on replica a
    after = await b.execute(RECALL, tenant_id="t1")  # at once: b reads the new generation from Redis
    assert not after.cache_hit and after.result["memory"]["count"] == 2

    async def b_notified() -> bool:
        return b_backend.cache.remote_invalidations >= 1

    await redis_wait_for(b_notified)  # pub/sub also dropped b's local entries of t1
    again = await b.execute(RECALL, tenant_id="t1")
    assert again.cache_hit and again.result == after.result  # from Redis (the local copy was dropped)
    assert (await b.execute(RECALL, tenant_id="t2")).cache_hit  # t2 untouched
    stats = b.get_stats().cache
    assert stats.redis_available is True and stats.redis_errors == 0
    assert stats.hits == stats.local_hits + stats.redis_hits
    assert stats.hit_rate == stats.hits / (stats.hits + stats.misses)

    client = Redis.from_url(redis_shared_url)
    try:
        keys = {k.decode() async for k in client.scan_iter(match=f"tmws:{redis_namespace}:*")}
        assert keys and all(k.startswith(f"tmws:{redis_namespace}:") for k in keys)
        assert {f"tmws:{redis_namespace}:gen:t1", f"tmws:{redis_namespace}:gen:t2"} <= keys
        result_keys = [k for k in keys if k.startswith(f"tmws:{redis_namespace}:result:")]
        assert result_keys
        for key in result_keys:
            raw = await client.get(key)
            assert raw is not None and raw[:1] in (b"j", b"z") and b"\x80\x04" not in raw[:2]  # not pickle
            assert isinstance(decode_result(raw).result, ExecutionResult)
    finally:
        await client.aclose()


async def test_redis_that_lost_its_data_never_revives_old_entries(
    redis_replica: Callable[..., Awaitable[Replica]], redis_shared_url: str, redis_namespace: str
) -> None:
    a, a_backend = await redis_replica()
    await a.execute("store redis eviction is lru", tenant_id="t1")
    assert not (await a.execute(RECALL, tenant_id="t1")).cache_hit
    assert (await a.execute(RECALL, tenant_id="t1")).cache_hit
    generation = await a.generations.get("t1")
    await redis_delete_namespace(redis_shared_url, redis_namespace)  # as if Redis restarted empty, unnoticed
    assert a_backend.link.available and await a.generations.get("t1") != generation
    assert not (await a.execute(RECALL, tenant_id="t1")).cache_hit  # the local entry is unreachable


async def test_registry_change_on_one_replica_reaches_routing_on_another(
    redis_replica: Callable[..., Awaitable[Replica]],
) -> None:
    a, _ = await redis_replica()
    b, b_backend = await redis_replica()
    await redis_wait_for(lambda: _true(b_backend.subscribed))
    query = "zebraquery please"
    assert await _routed(b, query) != "zebraquery"
    await a.register_batch([eng_definition("zebraquery")])

    async def b_routes_it() -> bool:
        return await _routed(b, query) == "zebraquery"

    seconds = await redis_wait_for(b_routes_it)
    print(f"register on A routed on B after {seconds * 1000:.1f} ms")
    await a.delete_definition("zebraquery")

    async def b_forgot_it() -> bool:
        return await _routed(b, query) != "zebraquery"

    seconds = await redis_wait_for(b_forgot_it)
    print(f"delete on A seen by routing on B after {seconds * 1000:.1f} ms")
    assert b.registry.version == a.registry.version


async def _true(value: bool) -> bool:
    return value


async def test_ttls_zero_never_cached_local_capped_redis_pattern_ttl(
    redis_backends: Callable[..., RedisCacheBackend],
    redis_replica: Callable[..., Awaitable[Replica]],
    redis_shared_url: str,
    redis_namespace: str,
) -> None:
    clock = EngClock()
    backend = redis_backends(cache_timer=clock, local_ttl=60.0)
    await backend.start()
    cache = backend.cache
    value = _sample({"v": [1]})
    await cache.set("k300", "t", value, 300, reads_memory=False)
    await cache.set("k0", "t", value, 0, reads_memory=False)
    client = Redis.from_url(redis_shared_url)
    try:
        pttl = await client.pttl(f"tmws:{redis_namespace}:result:k300")
        assert 250_000 < pttl <= 300_000  # Redis keeps the pattern's own TTL
        assert not await client.exists(f"tmws:{redis_namespace}:result:k0")
    finally:
        await client.aclose()
    assert await cache.get("k0") is None
    hit = await cache.get("k300")
    assert hit is not None and hit.cache_hit and cache.stats().local_hits == 1
    clock.advance(61)  # past the local cap (60 s), within the pattern's 300 s
    hit = await cache.get("k300")
    assert hit is not None and hit == dataclasses.replace(value, cache_hit=True)
    assert (cache.stats().local_hits, cache.stats().redis_hits) == (1, 1)

    engine, _ = await redis_replica()
    await engine.register_batch([eng_definition("nocache", cache_ttl=0)])
    for _ in range(2):
        assert not (await engine.execute("nocache 6 * 7")).cache_hit
    assert engine.get_stats().cache.local_cache_size == 0
    assert not [k async for k in _result_keys(redis_shared_url, redis_namespace) if k != "k300"]


async def _result_keys(url: str, namespace: str) -> AsyncIterator[str]:
    client = Redis.from_url(url)
    prefix = f"tmws:{namespace}:result:"
    try:
        async for key in client.scan_iter(match=f"{prefix}*"):
            yield key.decode()[len(prefix) :]
    finally:
        await client.aclose()


async def test_clear_unlinks_only_this_namespaces_results(
    redis_backends: Callable[..., RedisCacheBackend], redis_shared_url: str, redis_namespace: str
) -> None:
    backend = redis_backends()
    await backend.start()
    for i in range(1200):  # more than one SCAN page
        await backend.cache.set(f"k{i}", "t", _sample({"i": i}), 300, reads_memory=False)
    await backend.generations.bump("t")
    foreign = [f"tmws:{redis_namespace}x:result:k1", f"other-{redis_namespace}:result:k1"]
    client = Redis.from_url(redis_shared_url)
    try:
        for key in foreign:
            await client.set(key, b"keep", ex=600)
        assert await backend.cache.clear() == 2 * 1200  # 1200 local + 1200 in Redis
        assert [k async for k in _result_keys(redis_shared_url, redis_namespace)] == []
        assert await client.exists(*foreign) == 2  # other namespaces untouched
        assert await client.exists(f"tmws:{redis_namespace}:gen:t") == 1
        assert await backend.cache.get("k1") is None
    finally:
        await client.delete(*foreign)
        await client.aclose()


async def test_redis_down_then_restarted(redis_replica: Callable[..., Awaitable[Replica]]) -> None:
    if PrivateRedis.binary() is None:
        pytest.skip("redis-server is not installed")
    server = PrivateRedis()
    await server.start()
    try:
        await _outage_scenario(server, redis_replica)
    finally:
        await server.stop()


async def _outage_scenario(server: PrivateRedis, redis_replica: Callable[..., Awaitable[Replica]]) -> None:
    engine, backend = await redis_replica(server.url, timeout=5.0)
    gen_key = backend.link.generation_key("t1")
    infra = "calculate 6 * 7"
    assert not (await engine.execute(infra)).cache_hit
    await engine.execute("store outage notes one", tenant_id="t1")
    assert not (await engine.execute(RECALL.replace("redis", "outage"), tenant_id="t1")).cache_hit
    raw = Redis.from_url(server.url)
    try:
        gen_before = int(await raw.get(gen_key))
    finally:
        await raw.aclose()
    generation_before = await backend.generations.get("t1")

    await server.stop()

    async def marked_down() -> bool:
        return not backend.link.available

    await redis_wait_for(marked_down)
    assert (await engine.execute(infra)).cache_hit  # the local layer still serves
    assert not (await engine.execute("calculate 2 + 2")).cache_hit
    assert (await engine.execute("calculate 2 + 2")).cache_hit
    recall = RECALL.replace("redis", "outage")
    assert not (await engine.execute(recall, tenant_id="t1")).cache_hit  # no pre-outage memory entry is served
    assert (await engine.execute(recall, tenant_id="t1")).cache_hit
    await engine.execute("store outage notes two", tenant_id="t1")  # a write while Redis is down
    during = await engine.execute(recall, tenant_id="t1")
    assert not during.cache_hit and during.result["memory"]["count"] == 2
    stats = engine.get_stats().cache
    assert stats.redis_available is False and stats.redis_errors >= 1
    health = await backend.health()
    assert health["healthy"] is False and health["status"] == "degraded" and "degraded" in health["error"]
    assert backend.generations.pending == {"t1"}

    await server.start()  # same port, empty data (no persistence)

    async def back() -> bool:
        return backend.link.available and backend.subscribed

    seconds = await redis_wait_for(back)
    print(f"reconnected and resubscribed {seconds * 1000:.1f} ms after redis-server answered")
    assert engine.get_stats().cache.redis_available is True
    assert (await backend.health())["healthy"] is True and not backend.generations.pending
    raw = Redis.from_url(server.url)
    try:
        assert int(await raw.get(gen_key)) > gen_before  # replayed on a fresh, time-based counter
    finally:
        await raw.aclose()
    assert (await backend.generations.get("t1")) >> 64 != generation_before >> 64  # a new epoch
    after = await engine.execute(recall, tenant_id="t1")
    assert not after.cache_hit and after.result["memory"]["count"] == 2
    assert not (await engine.execute("calculate 9 * 9")).cache_hit

    other, other_backend = await redis_replica(server.url, timeout=5.0)  # a replica started after the restart
    shared = await other.execute("calculate 9 * 9")
    assert shared.cache_hit and other.get_stats().cache.redis_hits == 1  # Redis serves again
    await redis_wait_for(lambda: _true(other_backend.subscribed))
    await other.register_batch([eng_definition("afteroutage")])

    async def routed_on_first() -> bool:
        return await _routed(engine, "afteroutage now") == "afteroutage"

    await redis_wait_for(routed_on_first)  # the first replica's listener resubscribed


async def test_application_wires_redis_layer_and_health(
    tmp_path: pathlib.Path, redis_shared_url: str, redis_namespace: str
) -> None:
    from server_helpers import drop_server_database, make_settings, start_server

    settings = make_settings(
        tmp_path / "data",
        redis_url=redis_shared_url,
        redis_namespace=redis_namespace,
        redis_timeout=5.0,  # a loaded machine must not look like Redis down
        embedder="hashing",
    )
    server = await start_server(settings)
    try:
        app = server.app
        assert app.redis is not None and isinstance(app.engine.cache, RedisResultCache)
        report = await app.health()
        assert report["redis"]["healthy"] is True and report["redis"]["namespace"] == redis_namespace
        first = await app.engine.execute("calculate 6 * 7", execution_mode=ExecutionMode.FAST)
        assert not first.cache_hit
        assert [k async for k in _result_keys(redis_shared_url, redis_namespace)]
        assert app.engine.get_stats().cache.redis_available is True
    finally:
        await server.stop(0)
        await drop_server_database(settings)


async def test_tenant_cache_stats_split_every_hit_by_layer_after_a_restart(
    redis_replica: Callable[..., Awaitable[Replica]],
) -> None:
    """A replica restarted with Redis (fresh local layer): its first hit is Redis's, the next local."""
    before, _ = await redis_replica()
    await before.execute("store redis eviction is lru", tenant_id="t1")
    assert not (await before.execute(RECALL, tenant_id="t1")).cache_hit
    restarted, _ = await redis_replica()  # same Redis namespace and stores, empty local layer
    from_redis = await restarted.execute(RECALL, tenant_id="t1")
    from_local = await restarted.execute(RECALL, tenant_id="t1")
    assert (from_redis.cache_hit, from_redis.cache_layer) == (True, "redis")
    assert (from_local.cache_hit, from_local.cache_layer) == (True, "local")
    for view in (restarted.get_stats(tenant_id="t1").cache, restarted.get_stats().cache):
        assert (view.hits, view.local_hits, view.redis_hits) == (2, 1, 1)
        assert view.hits == view.local_hits + view.redis_hits
    other = restarted.get_stats(tenant_id="t2").cache
    assert (other.hits, other.local_hits, other.redis_hits) == (0, 0, 0)


async def test_close_returns_even_when_the_pubsub_close_hangs(
    redis_backends: Callable[..., RedisCacheBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py's ``PubSub.aclose()`` can wait forever (redis/redis-py#3941); shutdown must not."""
    backend = redis_backends(timeout=0.5)

    async def refresh(tenant_id: str | None = None) -> bool:
        return False

    await backend.start(refresh)
    for _ in range(100):  # subscribed on the real Redis
        if backend.subscribed:
            break
        await asyncio.sleep(0.05)
    assert backend.subscribed
    closes: list[object] = []

    async def hanging_aclose(self: object) -> None:
        closes.append(self)
        await asyncio.Event().wait()

    monkeypatch.setattr(redis.asyncio.client.PubSub, "aclose", hanging_aclose)
    async with asyncio.timeout(10):
        await backend.close()
    assert closes  # the listener did try to close its subscription
