"""PatternExecutionService end to end: the shipped client against a real server on real storage."""

from __future__ import annotations

import asyncio
import os

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pattern_service.server import PatternServer
from tmws.pattern.client import FailedPrecondition, InvalidArgument, NotFound, PatternClient
from tmws.pattern.v1 import (
    PATTERN_TYPE_HYBRID,
    PATTERN_TYPE_INFRASTRUCTURE,
    PATTERN_TYPE_MEMORY,
    ExecuteRequest,
    PatternDefinition,
)

INFRA, MEMORY, HYBRID = PATTERN_TYPE_INFRASTRUCTURE, PATTERN_TYPE_MEMORY, PATTERN_TYPE_HYBRID


def _definition(name: str, trigger: str, **fields: object) -> PatternDefinition:
    d = PatternDefinition(
        name=name,
        pattern_type=fields.pop("pattern_type", MEMORY),  # type: ignore[arg-type]
        trigger_pattern=trigger,
        cost_tokens=fields.pop("cost_tokens", 100),  # type: ignore[arg-type]
        priority=fields.pop("priority", 10),  # type: ignore[arg-type]
        cache_ttl=fields.pop("cache_ttl", 300),  # type: ignore[arg-type]
    )
    d.metadata.update(fields.pop("metadata", {"operation": "recall"}))  # type: ignore[arg-type]
    assert not fields
    return d


async def test_each_path_runs_real_work(client: PatternClient) -> None:
    calc = await client.execute("calculate (2 + 3) * 4")
    assert calc.pattern_name == "quick_calculation" and calc.pattern_type == INFRA and calc.success
    assert calc.result["infrastructure"]["output"]["result"] == 20
    assert calc.tokens_used == 35

    stored = await client.execute(
        "store the deploy checklist for the payments service", context={"agent": "artemis", "tags": ["deploy"]}
    )
    assert stored.pattern_name == "store_memory" and stored.success and stored.tokens_used == 80
    memory_id = stored.result["memory"]["memory"]["memory_id"]

    recalled = await client.execute("recall memories about deploying payments", context={"agent": "artemis"})
    assert recalled.pattern_type == MEMORY and recalled.success
    assert [m["memory_id"] for m in recalled.result["memory"]["memories"]] == [memory_id]

    tagged = await client.execute("show memories tagged with deploy")
    assert tagged.pattern_name == "search_by_tag"
    assert [m["memory_id"] for m in tagged.result["memory"]["memories"]] == [memory_id]

    hybrid = await client.execute("find similar deployment checklists")
    assert hybrid.pattern_name == "semantic_search" and hybrid.pattern_type == HYBRID and hybrid.success
    assert set(hybrid.result.keys()) == {"infrastructure", "memory"}
    assert list(hybrid.metadata["parts"]) == ["infrastructure", "memory"]


async def test_modes_change_what_runs(client: PatternClient) -> None:
    fast = await client.execute("analyze the system architecture", execution_mode="fast")
    assert fast.pattern_type == INFRA and set(fast.result.keys()) == {"infrastructure"}
    balanced = await client.execute("analyze the system architecture", execution_mode="balanced")
    assert balanced.pattern_type == HYBRID and set(balanced.result.keys()) == {"infrastructure", "memory"}
    assert fast.tokens_used < balanced.tokens_used

    infra = await client.execute("check service health", execution_mode="balanced", use_cache=False)
    comprehensive = await client.execute("check service health", execution_mode="comprehensive", use_cache=False)
    assert infra.pattern_type == INFRA and comprehensive.pattern_type == HYBRID
    assert comprehensive.tokens_used > infra.tokens_used

    with pytest.raises(FailedPrecondition) as info:
        await client.execute("recall memories about payments", execution_mode="fast")
    assert info.value.reason == "MODE_EXCLUDES_PATH"

    # A write named explicitly runs in every mode.
    for mode in ("fast", "balanced", "comprehensive"):
        result = await client.execute(f"store a note written in {mode} mode", execution_mode=mode)
        assert result.pattern_name == "store_memory" and result.success


async def test_cache_hits_writes_and_invalidation(client: PatternClient, other_tenant: PatternClient) -> None:
    await client.execute("store the incident review for the cache outage")
    first = await client.execute("recall memories about the cache outage")
    second = await client.execute("recall memories about the cache outage")
    assert not first.cache_hit and second.cache_hit and second.tokens_used == 0
    assert second.result == first.result
    # Another tenant never sees this tenant's cached result.
    theirs = await other_tenant.execute("recall memories about the cache outage")
    assert not theirs.cache_hit and list(theirs.result["memory"]["memories"]) == []

    # A write is never cached and makes the cached recall unreachable.
    w1 = await client.execute("store the follow-up for the cache outage")
    w2 = await client.execute("store the follow-up for the cache outage")
    assert not w1.cache_hit and not w2.cache_hit
    assert w1.result["memory"]["memory"]["memory_id"] != w2.result["memory"]["memory"]["memory_id"]
    after = await client.execute("recall memories about the cache outage")
    assert not after.cache_hit and len(after.result["memory"]["memories"]) == 3

    bypass = await client.execute("recall memories about the cache outage", use_cache=False)
    assert not bypass.cache_hit and bypass.tokens_used == 100


async def test_route_explains_without_executing(client: PatternClient) -> None:
    decision = await client.route("find similar optimization cases")
    assert decision.pattern_name == "semantic_search" and decision.pattern_type == HYBRID
    assert decision.match_source == "trigger" and 0.75 <= decision.confidence <= 1.0
    assert decision.estimated_cost == 150 and decision.reasoning
    assert decision.alternative_routes
    scores = [a.score for a in decision.alternative_routes]
    assert scores == sorted(scores, reverse=True)
    semantic = await client.route("what did we learn about caching")
    assert semantic.match_source == "semantic" and semantic.pattern_name == "recall_memory"
    stats = await client.get_stats()
    assert stats.engine.total_executions == 0 and stats.router.total_routes == 2


async def test_register_batch_is_atomic_and_reports_every_problem(client: PatternClient) -> None:
    before = await client.list_pattern_definitions(page_size=1000)
    bad = [
        _definition("ok_one", r"\bok\s+one\b"),
        _definition("Bad Name", r"fine"),
        _definition("backref", r"(a)\1"),
        _definition("unknown_tool", r"x+", pattern_type=INFRA, metadata={"tool": "no_such_tool"}),
        PatternDefinition(name="no_type", trigger_pattern="y", cost_tokens=1),
        _definition("ok_one", r"dup"),
        _definition("neither", ""),
    ]
    with pytest.raises(InvalidArgument) as info:
        await client.register_batch(bad)
    fields = {v.field for v in info.value.field_violations}
    assert {
        "pattern_definitions[1].name",
        "pattern_definitions[2].trigger_pattern",
        "pattern_definitions[3].metadata.tool",
        "pattern_definitions[4].pattern_type",
        "pattern_definitions[6].trigger_pattern",
    } <= fields
    assert any(f.startswith("pattern_definitions[5]") for f in fields)  # duplicate name
    after = await client.list_pattern_definitions(page_size=1000)
    assert [d.name for d in after.pattern_definitions] == [d.name for d in before.pattern_definitions]

    version = (await client.get_stats()).registry.registry_version
    checked = await client.register_batch([_definition("dry_run", r"\bdry\s+run\b")], validate_only=True)
    assert checked.registry_version == version and checked.created_count == 1
    assert (await client.get_stats()).registry.registry_version == version
    with pytest.raises(NotFound):
        await client.delete_pattern_definition("dry_run")


async def test_register_list_page_delete(client: PatternClient) -> None:
    response = await client.register_batch([_definition("database_optimization", r"optimize\s+database")])
    assert response.created_count == 1 and response.replaced_count == 0
    assert (await client.execute("optimize database queries")).pattern_name == "database_optimization"

    replaced = await client.register_batch([_definition("database_optimization", r"optimi[sz]e\s+database")])
    assert replaced.replaced_count == 1 and replaced.registry_version > response.registry_version
    # The registry version is part of the cache key: the new definition answers at once.
    assert (await client.execute("optimise database queries")).pattern_name == "database_optimization"

    names: list[str] = []
    page = await client.list_pattern_definitions(page_size=4)
    total = page.total_size
    while True:
        names += [d.name for d in page.pattern_definitions]
        if not page.next_page_token:
            break
        page = await client.list_pattern_definitions(page_size=4, page_token=page.next_page_token)
    assert len(names) == total == 15 and len(set(names)) == 15
    memory_only = await client.list_pattern_definitions(pattern_type="memory", page_size=100)
    assert {d.pattern_type for d in memory_only.pattern_definitions} == {MEMORY}

    await client.delete_pattern_definition("database_optimization")
    with pytest.raises(NotFound):
        await client.delete_pattern_definition("database_optimization")
    assert (await client.execute("optimize database queries")).pattern_name != "database_optimization"


async def test_bad_requests_are_rejected_with_field_details(client: PatternClient) -> None:
    with pytest.raises(InvalidArgument) as info:
        await client.execute("   ")
    assert [v.field for v in info.value.field_violations] == ["query"]
    with pytest.raises(InvalidArgument) as info:
        await client.execute("x" * 10_001)
    assert info.value.field_violations[0].field == "query"
    with pytest.raises(InvalidArgument) as info:
        await client.execute("recall memories", context={"limit": 1000, "min_importance": 3})
    assert {v.field for v in info.value.field_violations} == {"context.limit", "context.min_importance"}
    with pytest.raises(InvalidArgument) as info:
        await client._unary(  # an enum number no client helper would send
            client._execution.Execute, ExecuteRequest(query="check service health", execution_mode=42), None, None
        )
    assert info.value.field_violations[0].field == "execution_mode"
    with pytest.raises(InvalidArgument):
        await client.list_pattern_definitions(page_size=-1)
    with pytest.raises(InvalidArgument):
        await client.list_pattern_definitions(page_token="nope")
    stats = await client.get_stats()
    assert stats.engine.total_executions == 0  # rejected calls change nothing


async def test_stats_are_consistent_fractions(client: PatternClient) -> None:
    for _ in range(3):
        await client.execute("calculate 1 + 1")
    await client.execute("calculate 1 / 0")
    stats = await client.get_stats()
    e = stats.engine
    assert e.total_executions == 4 and e.cache_hits == 2
    assert e.successful_executions + e.failed_executions == e.total_executions
    assert e.cache_hit_rate == pytest.approx(0.5)
    assert 0 <= e.success_rate <= 1 and e.total_tokens_used == 35 * 2
    assert e.tokens_saved == e.baseline_tokens - e.total_tokens_used > 0
    assert 0 < e.token_reduction_rate <= 1
    assert stats.registry.total_patterns == 14 and sum(stats.registry.patterns_by_type.values()) == 14
    assert sum(stats.router.route_distribution.values()) == pytest.approx(1.0)
    assert stats.cache.hits == 2 and 0 <= stats.cache.hit_rate <= 1
    assert stats.cache.redis_available == bool(os.environ.get("TMWS_TEST_REDIS_URL"))


async def test_execute_many_streams_thousands_with_in_band_errors(client: PatternClient) -> None:
    def requests():  # type: ignore[no-untyped-def]
        for i in range(2000):
            query = "" if i % 500 == 7 else f"calculate {i} + 1"
            yield (str(i), query)

    results: dict[str, object] = {}
    errors: dict[str, object] = {}
    async for outcome in client.execute_many(requests()):
        if outcome.ok:
            results[outcome.request_id] = outcome.result
        else:
            errors[outcome.request_id] = outcome.error
    assert len(results) + len(errors) == 2000
    assert set(errors) == {"7", "507", "1007", "1507"}
    assert all(isinstance(e, InvalidArgument) for e in errors.values())
    assert results["41"].result["infrastructure"]["output"]["result"] == 42  # type: ignore[attr-defined]


async def test_execute_many_rejects_duplicate_in_flight_ids(client: PatternClient) -> None:
    outcomes = [o async for o in client.execute_many([("same", "store first note"), ("same", "store second note")])]
    assert [o.request_id for o in outcomes] == ["same", "same"]
    assert any(o.ok for o in outcomes)
    # The second is refused only if it arrived while the first was still running; either way, never both lost.
    for o in outcomes:
        if not o.ok:
            assert isinstance(o.error, InvalidArgument)
            assert [v.field for v in o.error.field_violations] == ["request_id"]


async def test_restart_keeps_patterns_memories_and_success_patterns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from server_helpers import make_settings, start_server

    from tmws.pattern.v1 import pattern_learning_service_pb2 as pl

    settings = make_settings(tmp_path / "data")
    server = await start_server(settings)
    async with PatternClient.connect(f"127.0.0.1:{server.port}") as c:
        await c.register_batch([_definition("database_optimization", r"optimize\s+database")])
        await c.delete_pattern_definition("temporal_analysis")
        await c.execute("store the rollback plan for the billing migration", context={"agent": "artemis"})
        created = await c.create_success_pattern(pl.SuccessPattern(pattern_type="ops", name="Blue-green deploy"))
    await server.stop(0)

    server = await start_server(settings)
    try:
        async with PatternClient.connect(f"127.0.0.1:{server.port}") as c:
            names = {d.name for d in (await c.list_pattern_definitions(page_size=100)).pattern_definitions}
            assert "database_optimization" in names and "temporal_analysis" not in names  # not re-seeded
            recalled = await c.execute("recall memories about the billing rollback", use_cache=False)
            assert recalled.result["memory"]["memories"][0]["content"].startswith("the rollback plan")
            assert (await c.get_success_pattern(created.pattern_id)).name == "Blue-green deploy"
            matched = await c.match_patterns("deploy with zero downtime", min_confidence=0.0)
            assert matched.matched_patterns[0].pattern_id == created.pattern_id
    finally:
        await server.stop(0)


async def test_health_flips_to_not_serving_on_shutdown(server: PatternServer, target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        ok = await stub.Check(health_pb2.HealthCheckRequest(service=""))
        assert ok.status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.ensure_future(server.stop(0.5))
        async with asyncio.timeout(30):
            while True:  # health flips before the server stops accepting calls
                reply = await server.health.Check(health_pb2.HealthCheckRequest(service=""), None)  # type: ignore[arg-type]
                if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                    break
                await asyncio.sleep(0.01)
        await stopping


async def test_nul_characters_are_invalid_arguments_on_every_backend(client: PatternClient) -> None:
    from tmws.pattern.v1 import pattern_learning_service_pb2 as pl

    with pytest.raises(InvalidArgument) as info:
        await client.execute("store the plan a\x00b")
    assert [v.field for v in info.value.field_violations] == ["query"]
    with pytest.raises(InvalidArgument) as info:
        await client.execute("store the plan", context={"note": "x\x00y"})
    assert [v.field for v in info.value.field_violations] == ["context"]
    with pytest.raises(InvalidArgument) as info:
        await client.create_success_pattern(pl.SuccessPattern(pattern_type="ops", name="n\x00ul", tags=["a\x00"]))
    assert {v.field for v in info.value.field_violations} == {"success_pattern.name", "success_pattern.tags[0]"}
    with pytest.raises(InvalidArgument) as info:
        await client.register_batch([_definition("nul_one", "a\x00b")])
    assert [v.field for v in info.value.field_violations] == ["pattern_definitions[0].trigger_pattern"]
    assert (await client.list_success_patterns()).total_size == 0
