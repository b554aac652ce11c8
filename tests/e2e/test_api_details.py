"""The API's details a new user trips over (issue 15): each behaviour end to end through the shipped client."""

from __future__ import annotations

import asyncio
import pathlib

import pytest
from server_helpers import drop_server_database, make_settings, start_server

from pattern_service.config import Settings
from pattern_service.engine.tools import ToolCall
from tmws.pattern.client import FailedPrecondition, InvalidArgument, NotFound, PatternClient
from tmws.pattern.v1 import (
    PATTERN_TYPE_HYBRID,
    PATTERN_TYPE_INFRASTRUCTURE,
    PATTERN_TYPE_MEMORY,
    PatternDefinition,
    SuccessPattern,
)

INFRA, MEMORY = PATTERN_TYPE_INFRASTRUCTURE, PATTERN_TYPE_MEMORY


async def test_register_batch_reports_every_violation_of_an_item_without_a_type(client: PatternClient) -> None:
    untyped = PatternDefinition(name="", trigger_pattern=r"(a)\1", cost_tokens=-1, priority=101)
    typed = PatternDefinition(
        name="", pattern_type=INFRA, trigger_pattern=r"(a)\1", cost_tokens=-1, priority=101, metadata={"tool": "x"}
    )
    with pytest.raises(InvalidArgument) as info:
        await client.register_batch([untyped, typed])
    fields = [v.field for v in info.value.field_violations]
    for i in (0, 1):
        for name in ("name", "trigger_pattern", "cost_tokens", "priority"):
            assert f"pattern_definitions[{i}].{name}" in fields
    assert fields.count("pattern_definitions[0].pattern_type") == 1  # reported once, not twice
    assert "pattern_definitions[1].metadata.tool" in fields


def _calc(name: str, trigger: str, **fields: object) -> PatternDefinition:
    d = PatternDefinition(
        name=name, pattern_type=INFRA, trigger_pattern=trigger, cost_tokens=10, priority=100, **fields
    )  # type: ignore[arg-type]
    d.metadata.update({"tool": "list_patterns"})
    return d


async def test_unset_cache_ttl_means_the_server_default_and_zero_means_never(client: PatternClient) -> None:
    registered = await client.register_batch(
        [_calc("zebra_default", r"\bzebra\s+crossing\b"), _calc("zebra_never", r"\bokapi\s+crossing\b", cache_ttl=0)]
    )
    ttl = {d.name: d.cache_ttl for d in registered.pattern_definitions}
    assert ttl == {"zebra_default": 300, "zebra_never": 0}  # TMWS_CACHE_TTL defaults to 300
    listed = await client.list_pattern_definitions(page_size=1000)
    assert {d.name: d.cache_ttl for d in listed.pattern_definitions if d.name.startswith("zebra")} == {
        "zebra_default": 300,
        "zebra_never": 0,
    }

    first = await client.execute("zebra crossing now")
    second = await client.execute("zebra crossing now")
    assert first.pattern_name == "zebra_default" and not first.cache_hit and second.cache_hit

    never = [await client.execute("okapi crossing now") for _ in range(2)]
    assert [r.cache_hit for r in never] == [False, False]


async def test_writes_are_never_cached_whatever_the_ttl(client: PatternClient) -> None:
    write = PatternDefinition(
        name="jot_note",
        pattern_type=MEMORY,
        trigger_pattern=r"\bscribble\b",
        cost_tokens=10,
        priority=100,
        cache_ttl=600,
    )
    write.metadata.update({"operation": "store"})
    default_write = PatternDefinition(
        name="jot_note_default", pattern_type=MEMORY, trigger_pattern=r"\bdoodle\b", cost_tokens=10, priority=100
    )
    default_write.metadata.update({"operation": "store"})
    registered = await client.register_batch([write, default_write])
    assert [d.cache_ttl for d in registered.pattern_definitions] == [0, 0]
    results = [await client.execute("scribble the deploy plan") for _ in range(2)]
    assert [r.cache_hit for r in results] == [False, False]
    ids = {r.result["memory"]["memory"]["memory_id"] for r in results}
    assert len(ids) == 2  # both writes happened


def _pattern(name: str, **fields: object) -> SuccessPattern:
    p = SuccessPattern(pattern_type="caching", name=name, description=f"{name}: cache hot reads", **fields)  # type: ignore[arg-type]
    p.execution_trace.update({"steps": ["add a redis client"]})
    return p


async def test_success_pattern_context_is_returned(client: PatternClient) -> None:
    p = _pattern("with context")
    p.context.update({"intent": "speed up reads", "environment": {"db": "postgresql", "replicas": 2}})
    created = await client.create_success_pattern(p)
    assert created.context == p.context
    assert (await client.get_success_pattern(created.pattern_id)).context == p.context
    listed = await client.list_success_patterns(name_prefix="with context")
    assert [x.context for x in listed.success_patterns] == [p.context]
    change = SuccessPattern(pattern_id=created.pattern_id)
    change.context.update({"intent": "cut latency"})
    updated = await client.update_success_pattern(change, ["context"])
    assert updated.context == change.context and updated.context_hash != created.context_hash


async def test_success_pattern_versions_lineage_and_guarded_delete(client: PatternClient) -> None:
    root = await client.create_success_pattern(_pattern("cache-aside", tags=["redis"]))
    child = await client.create_success_pattern(_pattern("cache-aside ttl", parent_pattern_id=root.pattern_id))
    grandchild = await client.create_success_pattern(_pattern("cache-aside jitter", parent_pattern_id=child.pattern_id))
    assert (root.version, child.version, grandchild.version) == (1, 2, 3)
    await client.create_success_pattern(_pattern("write-through", tags=["redis", "writes"]))

    edit = SuccessPattern(pattern_id=root.pattern_id, description="cache hot reads with a 30 s ttl", tags=["x"])
    assert (await client.update_success_pattern(edit, ["description"])).version == 2
    assert (await client.update_success_pattern(edit, ["description"])).version == 2  # unchanged: same version
    assert (await client.update_success_pattern(edit, ["tags"])).version == 2  # tags are not identity
    edit.success_criteria.update({"metric": "hit_rate", "threshold": 0.8})
    assert (await client.update_success_pattern(edit, ["success_criteria"])).version == 3

    # Walk the lineage down from the root and back up.
    kids = await client.list_success_patterns(parent_pattern_id=root.pattern_id)
    assert [p.name for p in kids.success_patterns] == ["cache-aside ttl"] and kids.total_size == 1
    grandkids = await client.list_success_patterns(parent_pattern_id=kids.success_patterns[0].pattern_id)
    assert [p.parent_pattern_id for p in grandkids.success_patterns] == [child.pattern_id]
    by_tag = await client.list_success_patterns(tags=["writes", "nope"])
    assert [p.name for p in by_tag.success_patterns] == ["write-through"]
    by_prefix = await client.list_success_patterns(name_prefix="cache-aside ")
    assert sorted(p.name for p in by_prefix.success_patterns) == ["cache-aside jitter", "cache-aside ttl"]
    with pytest.raises(InvalidArgument) as bad:
        await client.list_success_patterns(parent_pattern_id="not-a-uuid")
    assert [v.field for v in bad.value.field_violations] == ["parent_pattern_id"]

    with pytest.raises(FailedPrecondition) as refused:
        await client.delete_success_pattern(root.pattern_id)
    assert refused.value.reason == "HAS_CHILD_PATTERNS"
    assert (await client.get_success_pattern(child.pattern_id)).parent_pattern_id == root.pattern_id
    assert await client.delete_success_pattern(root.pattern_id, force=True) == [child.pattern_id]
    assert (await client.get_success_pattern(child.pattern_id)).parent_pattern_id == ""
    with pytest.raises(NotFound):
        await client.get_success_pattern(root.pattern_id)
    assert await client.delete_success_pattern(grandchild.pattern_id) == []


async def test_recall_drops_hits_below_the_relevance_floor(client: PatternClient) -> None:
    for text in (
        "the deploy checklist for the payments service",
        "redis outage postmortem: the primary ran out of memory",
    ):
        await client.execute(f"store {text}", context={"agent": "artemis"})
    recalled = await client.execute("recall backup", context={"agent": "artemis"})
    memory = recalled.result["memory"]
    assert recalled.metadata["subject"] == "backup"
    assert memory["count"] == 0 and memory["below_min_score"] == 2 and memory["min_score"] == pytest.approx(0.2)
    relevant = await client.execute("recall memories about Redis outages", context={"agent": "artemis"})
    contents = [m["content"] for m in relevant.result["memory"]["memories"]]
    assert contents == ["redis outage postmortem: the primary ran out of memory"]
    assert relevant.result["memory"]["below_min_score"] == 1
    assert all(m["score"] >= 0.2 for m in relevant.result["memory"]["memories"])

    everything = await client.execute("recall backup", context={"agent": "artemis", "min_score": 0})
    assert everything.result["memory"]["count"] == 2 and everything.result["memory"]["below_min_score"] == 0
    strict = await client.execute(
        "recall memories about Redis outages", context={"agent": "artemis", "min_score": 0.99}
    )
    assert strict.result["memory"]["count"] == 0 and strict.result["memory"]["below_min_score"] == 2

    # The memory half of a hybrid pattern has the same floor.
    hybrid = await client.execute("find similar backup plans", context={"agent": "artemis"})
    assert hybrid.pattern_type == PATTERN_TYPE_HYBRID and hybrid.result["memory"]["operation"] == "recall"
    assert hybrid.result["memory"]["count"] == 0 and hybrid.result["memory"]["below_min_score"] == 2

    with pytest.raises(InvalidArgument) as bad:
        await client.execute("recall backup", context={"min_score": 1.5})
    assert [v.field for v in bad.value.field_violations] == ["context.min_score"]


async def test_the_server_default_floor_is_a_setting(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMWS_RECALL_MIN_SCORE", "0.95")
    assert Settings().recall_min_score == 0.95
    settings = make_settings(tmp_path / "data", recall_min_score=0.95)
    server = await start_server(settings)
    try:
        async with PatternClient.connect(f"127.0.0.1:{server.port}", default_timeout=30.0) as c:
            await c.execute("store redis outage postmortem: the primary ran out of memory")
            result = await c.execute("recall memories about Redis outages")
            memory = result.result["memory"]
            assert memory["min_score"] == pytest.approx(0.95) and memory["count"] == 0
            assert memory["below_min_score"] == 1
    finally:
        await server.stop(0)
        await drop_server_database(settings)


async def test_execute_many_times_the_execution_not_the_wait_for_a_slot(tmp_path: pathlib.Path) -> None:
    settings = make_settings(tmp_path / "data", stream_window=64, stream_concurrency=2)
    server = await start_server(settings)
    engine = server.app.engine
    running, most = 0, 0

    async def nap(call: ToolCall) -> dict[str, object]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(0.05)
        finally:
            running -= 1
        return {"slept_ms": 50}

    engine.tools.register("nap", nap)
    try:
        async with PatternClient.connect(f"127.0.0.1:{server.port}", default_timeout=60.0) as c:
            napper = PatternDefinition(
                name="napper", pattern_type=INFRA, trigger_pattern=r"\bnap\b", cost_tokens=1, priority=100
            )
            napper.metadata.update({"tool": "nap"})
            await c.register_batch([napper])
            outcomes = [o async for o in c.execute_many((str(i), f"nap {i}") for i in range(12))]
            stats = await c.get_stats()
    finally:
        await server.stop(0)
        await drop_server_database(settings)
    assert all(o.ok for o in outcomes) and len(outcomes) == 12
    assert most == 2  # at most stream_concurrency items of the stream execute at once
    times = [o.result.execution_time_ms for o in outcomes if o.result is not None]
    queued = sorted(o.response.queue_time_ms for o in outcomes)
    assert all(t >= 50 for t in times)
    assert queued[-1] >= 4 * 50  # the last items waited for five rounds of two: reported as queueing ...
    assert stats.engine.total_executions == 12  # ... and GetStats averages the executions alone
    assert stats.engine.avg_execution_time_ms == pytest.approx(sum(times) / 12)
