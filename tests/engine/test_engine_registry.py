"""PatternRegistry: fixed default regexes, RE2 safety, validation, atomic batches, persistence, matching."""

from __future__ import annotations

import pytest
from eng_helpers import EngBuilder, eng_definition

from pattern_service.domain import ExecutionMode, MatchSource, PatternDefinition, PatternType
from pattern_service.engine import PatternExecutionEngine
from pattern_service.engine.registry import PatternRegistry
from pattern_service.engine.validation import compile_trigger, load_default_definitions
from pattern_service.errors import InvalidArgumentError, NotFoundError
from pattern_service.store.definitions import SqlPatternDefinitionStore
from pattern_service.store.embeddings import HashingEmbedder


def _names(outcome_triggers: object) -> list[str]:
    return [h.definition.name for h in outcome_triggers]  # type: ignore[attr-defined]


def test_default_set_matches_the_seed_table() -> None:
    defaults = {d.name: d for d in load_default_definitions()}
    assert len(defaults) == 14
    seed = {  # the seed's default set: name -> (type, cost, priority, ttl)
        "execute_mcp_tool": ("infrastructure", 50, 10, 300),
        "system_command": ("infrastructure", 40, 9, 600),
        "health_check": ("infrastructure", 30, 8, 60),
        "quick_calculation": ("infrastructure", 35, 7, 300),
        "recall_memory": ("memory", 100, 9, 300),
        "store_memory": ("memory", 80, 8, 0),
        "search_by_tag": ("memory", 90, 7, 300),
        "filter_by_importance": ("memory", 85, 6, 300),
        "semantic_search": ("hybrid", 150, 10, 300),
        "analyze_codebase": ("hybrid", 200, 9, 600),
        "compare_patterns": ("hybrid", 180, 8, 300),
        "aggregate_insights": ("hybrid", 170, 7, 300),
        "temporal_analysis": ("hybrid", 160, 6, 300),
        "contextual_recommendation": ("hybrid", 190, 5, 300),
    }
    for name, (ptype, cost, priority, ttl) in seed.items():
        d = defaults[name]
        assert (d.pattern_type.value, d.cost_tokens, d.priority, d.cache_ttl) == (ptype, cost, priority, ttl)
        assert d.description and 10 <= len(d.examples) <= 50
        assert d.tool or d.operation


async def test_fixed_regexes_word_boundaries_and_precedence(eng_engine: PatternExecutionEngine) -> None:
    registry = eng_engine.registry
    assert "store_memory" not in _names((await registry.match("please restore the backup")).triggers)
    assert "store_memory" in _names((await registry.match("store the backup plan")).triggers)
    assert "semantic_search" not in _names((await registry.match("research similar papers")).triggers)
    assert "semantic_search" in _names((await registry.match("search similar papers")).triggers)
    # original: `analyze|investigate|examine\s+.*(...)` matched anything containing "analyze"
    assert "analyze_codebase" not in _names((await registry.match("analyze my feelings")).triggers)
    assert "analyze_codebase" in _names((await registry.match("analyze the payment system")).triggers)
    assert "analyze_codebase" in _names((await registry.match("Investigate  our Architecture")).triggers)


async def test_priority_order_then_name(eng_build: EngBuilder) -> None:
    engine = await eng_build(load_defaults=False)
    await engine.register_batch(
        [
            eng_definition("beta", trigger_pattern=r"\bshared\b", priority=5),
            eng_definition("alpha", trigger_pattern=r"\bshared\b", priority=5),
            eng_definition("top", trigger_pattern=r"\bshared\s+word\b", priority=50),
            eng_definition("low", trigger_pattern=r"\bword\b", priority=1),
        ]
    )
    outcome = await engine.registry.match("a shared word")
    assert _names(outcome.triggers) == ["top", "alpha", "beta", "low"]
    assert [d.name for d in engine.list_definitions()] == ["top", "alpha", "beta", "low"]


async def test_exact_name_wins_over_triggers(eng_engine: PatternExecutionEngine) -> None:
    outcome = await eng_engine.registry.match("  Health_Check ")
    assert outcome.exact is not None and outcome.exact.name == "health_check"
    decision = await eng_engine.route("recall_memory")
    assert decision.pattern_name == "recall_memory" and decision.confidence == 1.0


@pytest.mark.parametrize("bad", [r"(a)\1", r"foo(?=bar)", r"(?<!x)y", "("])
def test_re2_rejects_unsupported_constructs(bad: str) -> None:
    with pytest.raises(ValueError, match="RE2"):
        compile_trigger(bad)


def test_re2_limits_length_and_program_size() -> None:
    with pytest.raises(ValueError, match="1000 characters"):
        compile_trigger("a" * 1001)
    with pytest.raises(ValueError, match="instructions"):
        compile_trigger(r"(\w+\s+){1,1000}(\d+){1,1000}")


async def test_hostile_regex_compiles_and_matches_in_linear_time(eng_build: EngBuilder) -> None:
    engine = await eng_build(load_defaults=False)
    await engine.register_batch([eng_definition("hostile", trigger_pattern=r"(a+)+$")])
    outcome = await engine.registry.match("a" * 50_000 + "!")  # catastrophic for backtracking engines
    assert outcome.triggers == ()
    assert _names((await engine.registry.match("a" * 50_000)).triggers) == ["hostile"]


async def test_validation_reports_every_violation_and_changes_nothing(eng_engine: PatternExecutionEngine) -> None:
    before = eng_engine.list_definitions()
    version = eng_engine.registry.version
    batch = [
        eng_definition("Bad-Name"),
        eng_definition("dup"),
        eng_definition("dup"),
        eng_definition("regex", trigger_pattern=r"(a)\1"),
        eng_definition("nothing", trigger_pattern=None, examples=()),
        eng_definition("costly", cost_tokens=100_001, priority=101, cache_ttl=-1),
        eng_definition("tooless", metadata={"tool": "no_such_tool"}),
        eng_definition("memless", pattern_type=PatternType.MEMORY, metadata={"operation": "teleport"}),
        eng_definition("hyb", pattern_type=PatternType.HYBRID, metadata={}),
        eng_definition("ex", examples=("", "x" * 501), description="d" * 1001),
        eng_definition("fine"),
    ]
    with pytest.raises(InvalidArgumentError) as info:
        await eng_engine.register_batch(batch)
    fields = {v.field for v in info.value.violations}
    assert fields == {
        "pattern_definitions[0].name",
        "pattern_definitions[2].name",
        "pattern_definitions[3].trigger_pattern",
        "pattern_definitions[4].trigger_pattern",
        "pattern_definitions[5].cost_tokens",
        "pattern_definitions[5].priority",
        "pattern_definitions[5].cache_ttl",
        "pattern_definitions[6].metadata.tool",
        "pattern_definitions[7].metadata.operation",
        "pattern_definitions[8].metadata.tool",
        "pattern_definitions[8].metadata.operation",
        "pattern_definitions[9].examples[0]",
        "pattern_definitions[9].examples[1]",
        "pattern_definitions[9].description",
    }
    assert eng_engine.validate_definitions(batch) == info.value.violations
    assert eng_engine.list_definitions() == before and eng_engine.registry.version == version
    assert await eng_engine.registry._store.version() == version  # nothing persisted


async def test_batch_is_atomic_with_one_invalidation(eng_engine: PatternExecutionEngine) -> None:
    registry = eng_engine.registry
    await registry.match("calculate 1+1")
    assert registry.stats().cache_size == 1
    invalidations = registry.invalidation_count
    replaced = eng_definition("health_check", metadata={"tool": "health_check"}, priority=99)
    stored, created, n_replaced, version = await eng_engine.register_batch(
        [eng_definition("one"), eng_definition("two"), replaced]
    )
    assert (created, n_replaced) == (2, 1) and [d.name for d in stored] == ["one", "two", "health_check"]
    assert all(d.create_time and d.update_time for d in stored)
    assert registry.invalidation_count == invalidations + 1
    assert registry.stats().cache_size == 0 and registry.stats().registry_version == version
    assert eng_engine.list_definitions()[0].name == "health_check"


async def test_validate_only_reports_counts_and_changes_nothing(eng_engine: PatternExecutionEngine) -> None:
    version = eng_engine.registry.version
    _, created, replaced, got = await eng_engine.register_batch(
        [eng_definition("fresh"), eng_definition("health_check", metadata={"tool": "health_check"})],
        validate_only=True,
    )
    assert (created, replaced, got) == (1, 1, version)
    assert eng_engine.registry.get("fresh") is None


async def test_write_pattern_is_forced_never_cached(eng_engine: PatternExecutionEngine) -> None:
    write = eng_definition("jot", pattern_type=PatternType.MEMORY, metadata={"operation": "store"}, cache_ttl=600)
    stored, *_ = await eng_engine.register_batch([write])
    assert stored[0].cache_ttl == 0


async def test_seeded_once_persisted_and_deleted_default_stays_deleted(
    eng_build: EngBuilder, eng_definitions: SqlPatternDefinitionStore
) -> None:
    first = await eng_build()
    assert len(first.list_definitions()) == 14 and await eng_definitions.is_seeded()
    await first.register_batch([eng_definition("custom")])
    version = await first.delete_definition("temporal_analysis")
    with pytest.raises(NotFoundError):
        await first.delete_definition("temporal_analysis")
    restarted = await eng_build()  # a restart on the same database
    names = {d.name for d in restarted.list_definitions()}
    assert "temporal_analysis" not in names and "custom" in names and len(names) == 14
    assert restarted.registry.version == version


async def test_replica_refresh_when_store_version_moves(
    eng_build: EngBuilder, eng_definitions: SqlPatternDefinitionStore, eng_embedder: HashingEmbedder
) -> None:
    replica_a = await eng_build()
    replica_b = await eng_build()
    await replica_a.register_batch([eng_definition("shared_new")])
    assert replica_b.registry.get("shared_new") is None
    assert await replica_b.registry.refresh_if_changed() is True
    assert replica_b.registry.get("shared_new") is not None
    assert await replica_b.registry.refresh_if_changed() is False
    lone = PatternRegistry(eng_definitions, eng_embedder, replica_a.tools, load_defaults=False)
    await lone.load()
    assert lone.version == replica_a.registry.version


async def test_semantic_match_by_examples(eng_build: EngBuilder) -> None:
    engine = await eng_build(load_defaults=False)
    await engine.register_batch(
        [
            eng_definition("weather", trigger_pattern=None, examples=("what is the weather forecast", "rain today")),
            eng_definition("billing", trigger_pattern=None, examples=("show my invoice", "billing address change")),
        ]
    )
    outcome = await engine.registry.match("weather forecast for tomorrow")
    assert outcome.triggers == () and outcome.candidates[0].definition.name == "weather"
    assert outcome.candidates[0].score > outcome.candidates[1].score
    assert outcome.candidates[0].lexical > 0 and outcome.candidates[1].lexical == 0  # BM25: "weather", "forecast"
    neighbours = await engine.registry.semantic_neighbours("my invoice please", limit=1)
    assert [h.definition.name for h in neighbours] == ["billing"]


async def test_match_cache_hits_and_stats(eng_engine: PatternExecutionEngine) -> None:
    registry = eng_engine.registry
    await registry.match("check health now")
    await registry.match("CHECK   health now")
    stats = registry.stats()
    assert (stats.cache_hits, stats.cache_misses, stats.cache_size) == (1, 1, 1)
    assert stats.cache_hit_rate == 0.5
    assert stats.patterns_by_type == {"infrastructure": 4, "memory": 4, "hybrid": 6}


def test_patterns_yaml_triggers_all_compile() -> None:
    for d in load_default_definitions():
        assert isinstance(d, PatternDefinition) and d.trigger_pattern
        compile_trigger(d.trigger_pattern)


async def test_trigger_plans_are_reused_until_the_registry_changes(eng_engine: PatternExecutionEngine) -> None:
    router, mode = eng_engine.router, ExecutionMode.BALANCED
    first = await router.plan("calculate 1 + 1", mode, {}, "t")
    assert first.decision.match_source is MatchSource.TRIGGER
    assert await router.plan("calculate 1 + 1", mode, {}, "t") is first  # kept
    other_mode = await router.plan("calculate 1 + 1", ExecutionMode.COMPREHENSIVE, {}, "t")
    assert other_mode is not first and other_mode.path != first.path
    # keyword choices (opt-in) depend on the tenant's memories: never kept
    keyword = await router.plan("zzz qqq", mode, {}, "t", keyword_fallback=True)
    assert keyword.decision.match_source is MatchSource.KEYWORD
    assert await router.plan("zzz qqq", mode, {}, "t", keyword_fallback=True) is not keyword
    await eng_engine.register_batch([eng_definition("calculon", priority=100, trigger_pattern=r"\bcalculate\b")])
    after = await router.plan("calculate 1 + 1", mode, {}, "t")
    assert after is not first and after.decision.pattern_name == "calculon"
    assert router.stats().total_routes == 6  # every call counts, kept or not
