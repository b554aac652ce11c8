"""PatternExecutionEngine: modes change what runs, writes, tenant-safe caching, TTLs, stats, failed parts."""

from __future__ import annotations

import itertools

import pytest
from eng_helpers import EngBuilder, EngClock, eng_definition

from pattern_service.domain import ExecutionMode, MatchSource, PatternType
from pattern_service.engine import PatternExecutionEngine
from pattern_service.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError

FAST, BALANCED, COMPREHENSIVE = ExecutionMode.FAST, ExecutionMode.BALANCED, ExecutionMode.COMPREHENSIVE


async def test_modes_change_what_runs_for_a_hybrid_pattern(eng_engine: PatternExecutionEngine) -> None:
    q = "find similar deployment problems"
    fast = await eng_engine.execute(q, execution_mode=FAST, use_cache=False)
    assert fast.metadata["parts"] == ["infrastructure"] and fast.pattern_type is PatternType.INFRASTRUCTURE
    assert fast.tokens_used == 50 and fast.result["infrastructure"]["tool"] == "match_patterns"
    balanced = await eng_engine.execute(q, execution_mode=BALANCED, use_cache=False)
    assert balanced.metadata["parts"] == ["infrastructure", "memory"] and balanced.tokens_used == 150
    assert balanced.result["memory"]["operation"] == "recall"


async def test_modes_change_what_runs_for_infrastructure_and_memory(eng_engine: PatternExecutionEngine) -> None:
    infra_b = await eng_engine.execute("check health now", execution_mode=BALANCED)
    assert infra_b.metadata["parts"] == ["infrastructure"] and infra_b.tokens_used == 30
    infra_c = await eng_engine.execute("check health now", execution_mode=COMPREHENSIVE)
    assert infra_c.metadata["parts"] == ["infrastructure", "memory"] and infra_c.tokens_used == 130
    assert infra_c.pattern_type is PatternType.HYBRID and infra_c.result["memory"]["operation"] == "recall"
    mem_b = await eng_engine.execute("recall memories about deploys", execution_mode=BALANCED)
    assert mem_b.metadata["parts"] == ["memory"] and mem_b.tokens_used == 100
    mem_c = await eng_engine.execute("recall memories about deploys", execution_mode=COMPREHENSIVE)
    assert mem_c.metadata["parts"] == ["infrastructure", "memory"] and mem_c.tokens_used == 150
    assert mem_c.result["infrastructure"]["tool"] == "match_patterns"
    with pytest.raises(FailedPreconditionError) as info:
        await eng_engine.execute("recall memories about deploys", execution_mode=FAST)
    assert info.value.reason == "MODE_EXCLUDES_PATH"
    assert info.value.metadata == {"execution_mode": "FAST", "pattern_name": "recall_memory"}


async def test_write_runs_as_write_in_every_mode_and_is_never_cached(eng_engine: PatternExecutionEngine) -> None:
    for mode in ExecutionMode:
        for _ in range(2):
            r = await eng_engine.execute(
                "store the cache warms at 6am", execution_mode=mode, context={"agent": "artemis"}
            )
            assert r.success and not r.cache_hit and r.tokens_used == 80
            assert r.metadata["parts"] == ["memory"] and r.metadata["write"] is True
            assert r.result["memory"]["memory"]["content"] == "the cache warms at 6am"
            assert r.result["memory"]["memory"]["agent_id"] == "artemis"
    assert await eng_engine._memory_store.count("default") == 6


async def test_store_keeps_extra_context_as_metadata(eng_engine: PatternExecutionEngine) -> None:
    ctx = {"agent": "artemis", "plan": {"steps": ["a", "b"]}, "tags": ["Perf"], "importance": 0.9}
    r = await eng_engine.execute("store optimization plan for the api", context=ctx)
    memory = r.result["memory"]["memory"]
    assert memory["metadata"] == {"plan": {"steps": ["a", "b"]}} and memory["tags"] == ["perf"]
    assert memory["importance"] == 0.9 and memory["content"] == "optimization plan for the api"


async def test_write_invalidates_cached_recall_of_same_tenant_only(eng_engine: PatternExecutionEngine) -> None:
    q = "recall memories about redis"
    await eng_engine.execute("store redis eviction is lru", tenant_id="t1")
    await eng_engine.execute("store redis in t2 too", tenant_id="t2")
    first = await eng_engine.execute(q, tenant_id="t1")
    assert not first.cache_hit and first.result["memory"]["count"] == 1
    assert (await eng_engine.execute(q, tenant_id="t1")).cache_hit
    t2_first = await eng_engine.execute(q, tenant_id="t2")
    assert not t2_first.cache_hit  # tenants never share cache entries
    assert (await eng_engine.execute(q, tenant_id="t2")).cache_hit
    await eng_engine.execute("store redis persistence uses aof", tenant_id="t1")
    after = await eng_engine.execute(q, tenant_id="t1")
    assert not after.cache_hit and after.result["memory"]["count"] == 2
    assert (await eng_engine.execute(q, tenant_id="t2")).cache_hit
    assert "redis in t2 too" not in {m["content"] for m in after.result["memory"]["memories"]}


async def test_per_pattern_ttl_is_honoured(eng_engine: PatternExecutionEngine, eng_clock: EngClock) -> None:
    # health_check has cache_ttl 60, quick_calculation 300
    assert (await eng_engine.execute("check health now")).cache_hit is False
    assert (await eng_engine.execute("calculate 6*7")).cache_hit is False
    eng_clock.advance(59)
    assert (await eng_engine.execute("check health now")).cache_hit is True
    eng_clock.advance(2)
    assert (await eng_engine.execute("check health now")).cache_hit is False
    assert (await eng_engine.execute("calculate 6*7")).cache_hit is True
    eng_clock.advance(300)
    assert (await eng_engine.execute("calculate 6*7")).cache_hit is False


async def test_cache_hit_costs_zero_tokens_and_use_cache_false_bypasses(eng_engine: PatternExecutionEngine) -> None:
    first = await eng_engine.execute("calculate 2 ** 10")
    hit = await eng_engine.execute("  CALCULATE   2 ** 10 ")
    assert hit.cache_hit and hit.tokens_used == 0 and hit.result == first.result
    assert hit.routing.pattern_name == "quick_calculation"
    hit.result["infrastructure"]["output"]["result"] = "tampered"  # callers get copies
    again = await eng_engine.execute("calculate 2 ** 10")
    assert again.result["infrastructure"]["output"]["result"] == 1024
    bypass = await eng_engine.execute("calculate 2 ** 10", use_cache=False)
    assert not bypass.cache_hit and bypass.tokens_used == 35
    other_ctx = await eng_engine.execute("calculate 2 ** 10", context={"k": 1})
    assert not other_ctx.cache_hit
    other_mode = await eng_engine.execute("calculate 2 ** 10", execution_mode=FAST)
    assert not other_mode.cache_hit


async def test_registry_change_drops_the_unreachable_local_results(eng_engine: PatternExecutionEngine) -> None:
    await eng_engine.execute("calculate 3 * 3")
    assert (await eng_engine.execute("calculate 3 * 3")).cache_hit
    assert eng_engine.cache.stats().local_cache_size == 1
    await eng_engine.register_batch([eng_definition("freshly_added")])
    # The key names the registry version: the old entry could never be hit again, so it is gone now.
    assert eng_engine.cache.stats().local_cache_size == 0
    assert not (await eng_engine.execute("calculate 3 * 3")).cache_hit
    await eng_engine.delete_definition("freshly_added")
    assert eng_engine.cache.stats().local_cache_size == 0


async def test_stats_are_consistent(eng_engine: PatternExecutionEngine) -> None:
    await eng_engine.execute("calculate 1+1")
    await eng_engine.execute("calculate 1+1")
    await eng_engine.execute("calculate 1+1")
    await eng_engine.execute("calculate oops(")  # tool error: a failed execution
    await eng_engine.execute("find similar outages", execution_mode=FAST)
    stats = eng_engine.get_stats()
    assert set(stats.as_dict()) == {"engine", "registry", "router", "cache"}
    e = stats.engine
    assert e.total_executions == 5 and e.cache_hits == 2
    assert e.successful_executions + e.failed_executions == e.total_executions
    assert e.failed_executions == 1 and e.success_rate == 0.8 and e.cache_hit_rate == 0.4
    assert e.total_tokens_used == 35 + 35 + 50
    assert e.baseline_tokens == 4 * (35 + 100) + 150
    assert e.tokens_saved == e.baseline_tokens - e.total_tokens_used
    assert e.token_reduction_rate == pytest.approx(e.tokens_saved / e.baseline_tokens)
    r = stats.router
    assert r.total_routes == 5 and r.routes_by_type["infrastructure"] == 5
    assert sum(r.route_distribution.values()) == pytest.approx(1.0)
    c = stats.cache
    assert (c.hits, c.local_hits, c.redis_hits, c.redis_available) == (2, 2, 0, False)
    assert 0 <= c.hit_rate <= 1 and c.local_cache_size == 2
    assert set(stats.as_dict()["registry"]) == {
        "total_patterns",
        "patterns_by_type",
        "cache_hits",
        "cache_misses",
        "cache_hit_rate",
        "cache_size",
        "registry_version",
    }


async def test_hybrid_with_failing_part_reports_it(eng_engine: PatternExecutionEngine) -> None:
    await eng_engine.execute("store blast radius notes")
    await eng_engine.register_batch(
        [
            eng_definition(
                "blast",
                pattern_type=PatternType.HYBRID,
                trigger_pattern=r"\bblast\b",
                metadata={"tool": "explode", "operation": "recall"},
            )
        ]
    )
    r = await eng_engine.execute("blast radius")
    assert not r.success and r.metadata["failed_parts"] == ["infrastructure"]
    assert "explode refused" in (r.error or "") and "infrastructure part failed" in (r.error or "")
    assert r.result["infrastructure"]["success"] is False
    assert r.result["memory"]["success"] is True and r.result["memory"]["count"] == 1
    assert not (await eng_engine.execute("blast radius")).cache_hit  # failures are not cached


async def test_invalid_context_raises_and_changes_nothing(eng_engine: PatternExecutionEngine) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        await eng_engine.execute(
            "store something", context={"limit": 0, "importance": 2, "since": "yesterday", "tags": [1]}
        )
    fields = {v.field for v in info.value.violations}
    assert fields == {"context.limit", "context.importance", "context.since", "context.tags[0]"}
    assert await eng_engine._memory_store.count("default") == 0
    with pytest.raises(InvalidArgumentError):
        await eng_engine.execute("   ")


async def test_memory_context_filters_apply(eng_engine: PatternExecutionEngine) -> None:
    await eng_engine.execute("store low priority note", context={"importance": 0.2, "agent": "a"})
    await eng_engine.execute("store crucial finding", context={"importance": 0.95, "agent": "b", "tags": ["sec"]})
    important = await eng_engine.execute("list important memories")
    assert [m["content"] for m in important.result["memory"]["memories"]] == ["crucial finding"]
    tagged = await eng_engine.execute("memories tagged with sec")
    assert [m["content"] for m in tagged.result["memory"]["memories"]] == ["crucial finding"]
    by_agent = await eng_engine.execute("recall memories", context={"agent": "a"})
    assert [m["agent_id"] for m in by_agent.result["memory"]["memories"]] == ["a"]


async def test_confidence_and_alternatives_are_scores(eng_engine: PatternExecutionEngine) -> None:
    q = "run tool calculate 2+2"
    decision = await eng_engine.route(q)
    assert decision.match_source is MatchSource.TRIGGER and decision.pattern_name == "execute_mcp_tool"
    # The shipped calibration is for MiniLM: with the hashing embedder confidence is the raw similarity.
    assert 0.0 < decision.raw_score <= 1.0 and decision.confidence == pytest.approx(decision.raw_score, abs=1e-6)
    alternatives = {(a.pattern_type, a.pattern_name): a for a in decision.alternative_routes}
    assert (PatternType.INFRASTRUCTURE, "quick_calculation") in alternatives
    assert alternatives[(PatternType.HYBRID, "execute_mcp_tool")].estimated_cost == 150
    scores = [a.score for a in decision.alternative_routes]
    assert scores == sorted(scores, reverse=True)


async def test_keyword_fallback_is_opt_in_and_depends_on_memories(eng_build: EngBuilder) -> None:
    refusing = await eng_build(semantic_threshold=0.99)
    with pytest.raises(NotFoundError) as refused:
        await refusing.route("zebra quokka")
    assert refused.value.reason == "NO_PATTERN_MATCHED"
    assert (await refusing.route("zebra quokka", keyword_fallback=True)).match_source is MatchSource.KEYWORD
    engine = await eng_build(semantic_threshold=0.99, keyword_fallback=True)
    empty = await engine.route("zebra quokka")
    assert empty.match_source is MatchSource.KEYWORD and empty.pattern_type is PatternType.INFRASTRUCTURE
    assert empty.confidence == pytest.approx(0.2)
    await engine.execute("store zebra facts")
    some = await engine.route("zebra quokka")
    assert some.pattern_type is PatternType.MEMORY
    hybrid = await engine.route("similar zebra")
    assert hybrid.pattern_type is PatternType.HYBRID and hybrid.confidence == pytest.approx(0.7)
    assert (await engine.route("zebra quokka", execution_mode=FAST)).pattern_type is PatternType.INFRASTRUCTURE


async def test_semantic_route_reports_its_hybrid_similarity(eng_engine: PatternExecutionEngine) -> None:
    decision = await eng_engine.route("what do we know about security audits today")
    assert decision.match_source is MatchSource.SEMANTIC and decision.pattern_name == "recall_memory"
    assert 0.3 <= decision.raw_score <= 1.0 and decision.confidence == pytest.approx(decision.raw_score)


async def test_route_reasoning_names_the_path_once(eng_engine: PatternExecutionEngine) -> None:
    own = await eng_engine.route("recall memories about deploys", execution_mode=BALANCED)
    assert "its own memory path" in own.reasoning
    widened = await eng_engine.route("recall memories about deploys", execution_mode=COMPREHENSIVE)
    assert "the hybrid path instead of its own memory path" in widened.reasoning
    hybrid = await eng_engine.route("find similar deployment problems", execution_mode=COMPREHENSIVE)
    assert "its own hybrid path" in hybrid.reasoning
    for decision in (own, widened, hybrid):
        words = decision.reasoning.split()
        assert not any(a == b for a, b in itertools.pairwise(words)), decision.reasoning
