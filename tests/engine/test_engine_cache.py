"""LocalResultCache and cache keys: TTL, LRU eviction, immutability, tenant invalidation, generations."""

from __future__ import annotations

import hashlib

from eng_helpers import EngClock

from pattern_service.api.convert import dict_to_struct, result_to_proto
from pattern_service.domain import ExecutionMode, ExecutionResult, MatchSource, PatternType, RoutingDecision
from pattern_service.engine.cache import LocalGenerationStore, LocalResultCache, cache_key, canonical_json
from pattern_service.engine.text import normalize_query

_DECISION = RoutingDecision(PatternType.MEMORY, "p", 0.9, "why", 100, (), MatchSource.TRIGGER)


def _result(value: int) -> ExecutionResult:
    return ExecutionResult("p", PatternType.MEMORY, True, {"v": [value]}, 1.0, 100, False, None, {"m": 1}, _DECISION)


def test_keys_separate_every_dimension() -> None:
    base = ("t1", "Recall  X", ExecutionMode.BALANCED, {"b": 1, "a": 2}, 3, 0)
    key = cache_key(*base)
    assert key == cache_key("t1", "recall x", ExecutionMode.BALANCED, {"a": 2, "b": 1}, 3, 0)
    variants = [
        ("t2", *base[1:]),
        (base[0], "recall y", *base[2:]),
        (*base[:2], ExecutionMode.FAST, *base[3:]),
        (*base[:3], {"a": 2}, *base[4:]),
        (*base[:4], 4, base[5]),
        (*base[:5], 1),
        (*base[:5], None),
    ]
    assert len({cache_key(*v) for v in variants} | {key}) == len(variants) + 1


async def test_ttl_lru_and_immutability() -> None:
    clock = EngClock()
    cache = LocalResultCache(max_size=2, timer=clock)
    await cache.set("a", "t", _result(1), 10, reads_memory=False)
    await cache.set("zero", "t", _result(0), 0, reads_memory=False)  # TTL 0: never cached
    assert await cache.get("zero") is None
    got = await cache.get("a")
    assert got is not None and got.cache_hit and got.result == {"v": [1]}
    got.result["v"].append(99)
    assert (await cache.get("a")).result == {"v": [1]}  # type: ignore[union-attr]
    await cache.set("b", "t", _result(2), 100, reads_memory=False)
    await cache.get("a")  # a is now most recently used
    await cache.set("c", "t", _result(3), 100, reads_memory=False)  # evicts b
    assert await cache.get("b") is None and await cache.get("a") is not None
    clock.advance(10)
    assert await cache.get("a") is None and await cache.get("c") is not None
    stats = cache.stats()
    assert stats.evictions == 1 and stats.local_cache_size == 1
    assert stats.hits + stats.misses == 8 and stats.hit_rate == stats.hits / 8


async def test_hits_of_one_entry_share_its_identity_but_not_its_data() -> None:
    cache = LocalResultCache()
    await cache.set("a", "t", _result(1), 10, reads_memory=False)
    await cache.set("b", "t", _result(2), 10, reads_memory=False)
    first, second, other = await cache.get("a"), await cache.get("a"), await cache.get("b")
    assert first is not None and second is not None and other is not None
    assert first.cache_entry is not None and first.cache_entry is second.cache_entry
    assert other.cache_entry is not first.cache_entry
    assert first.result is not second.result and first == second  # copies, equal
    for hit, value in ((first, 1), (second, 1), (other, 2), (first, 1)):  # Structs memoized per entry
        msg = result_to_proto(hit)
        assert msg.result == dict_to_struct({"v": [value]}) and msg.metadata == dict_to_struct({"m": 1})
    assert _result(1).cache_entry is None


async def test_invalidate_tenant_drops_only_its_memory_reads() -> None:
    cache = LocalResultCache()
    await cache.set("t1-mem", "t1", _result(1), 60, reads_memory=True)
    await cache.set("t1-infra", "t1", _result(2), 60, reads_memory=False)
    await cache.set("t2-mem", "t2", _result(3), 60, reads_memory=True)
    assert await cache.invalidate_tenant("t1") == 1
    assert await cache.get("t1-mem") is None
    assert await cache.get("t1-infra") is not None and await cache.get("t2-mem") is not None
    assert cache.stats().invalidations == 1


async def test_generations_are_per_tenant() -> None:
    gens = LocalGenerationStore()
    assert await gens.get("a") == 0
    assert await gens.bump("a") == 1 and await gens.bump("a") == 2
    assert await gens.get("b") == 0


def test_memoized_context_free_keys_equal_the_digest_of_their_material() -> None:
    def digest(tenant: str, query: str, ctx: dict[str, str], version: int, generation: int | None) -> str:
        material = canonical_json([tenant, normalize_query(query), "balanced", ctx, version, generation])
        return hashlib.sha256(material.encode()).hexdigest()

    for tenant, query, ctx, version, generation in [
        ("t1", "calculate 1 + 1", {}, 1, None),
        ("t1", "calculate 1 + 1", {}, 2, None),  # another registry version: another key
        ("t2", "calculate 1 + 1", {}, 1, 7),
        ("t1", "calculate 1 + 1", {"agent": "a"}, 1, None),  # a context is never memoized
        ("t1", "calculate 1 + 1", {}, 1, None),  # again, from the memo
    ]:
        expected = digest(tenant, query, ctx, version, generation)
        assert cache_key(tenant, query, ExecutionMode.BALANCED, ctx, version, generation) == expected
        assert cache_key(tenant, query, ExecutionMode.BALANCED, ctx, version, generation) == expected
    fast = cache_key("t1", "q", ExecutionMode.FAST, {}, 1, None)
    assert fast != cache_key("t1", "q", ExecutionMode.BALANCED, {}, 1, None)
