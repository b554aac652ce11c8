"""MemoryService end to end: the shipped client against a real server on real storage (both backends).

Covers every RPC, bad input (field violations, NOT_FOUND, batch atomicity),
paging, expiry, tenant isolation, and that a deleted or updated memory never
shows in any read path afterwards (cached ``Execute`` recall, hybrid results,
``SearchMemories``, list, get).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tmws.pattern.client import InvalidArgument, NotFound, PatternClient, memory_filter, new_memory
from tmws.pattern.v1 import Memory, MemoryFilter

RUNBOOK = "the failover runbook of the orders database lives in the ops wiki"
RECALL = "recall memories about the orders database failover runbook"


def _violations(err: InvalidArgument) -> set[str]:
    return {v.field for v in err.field_violations}


async def test_create_get_update_delete(client: PatternClient) -> None:
    created = await client.create_memory(
        new_memory(RUNBOOK, agent_id="ops", tags=["Runbook", "orders"], importance=0.9, metadata={"page": 12})
    )
    assert uuid.UUID(created.memory_id)
    assert created.tags == ["runbook", "orders"] and created.memory_type == "general"
    assert created.importance == pytest.approx(0.9) and dict(created.metadata) == {"page": 12.0}
    assert created.HasField("create_time") and created.update_time == created.create_time
    assert not created.HasField("expire_time")
    assert await client.get_memory(created.memory_id) == created

    change = Memory(memory_id=created.memory_id, content="the runbook moved to the handbook", importance=0.4)
    updated = await client.update_memory(change, "content,importance")
    assert updated.content == "the runbook moved to the handbook" and updated.importance == pytest.approx(0.4)
    assert updated.tags == created.tags and updated.agent_id == "ops"  # outside the mask: untouched
    assert updated.update_time.ToDatetime() >= created.update_time.ToDatetime()

    await client.delete_memory(created.memory_id)
    with pytest.raises(NotFound) as missing:
        await client.get_memory(created.memory_id)
    assert missing.value.resource_info is not None and missing.value.resource_info.resource_type == "Memory"
    with pytest.raises(NotFound):
        await client.delete_memory(created.memory_id)
    with pytest.raises(NotFound):
        await client.update_memory(change, "content")


async def test_bad_input_reports_every_field(client: PatternClient) -> None:
    bad = Memory(content=" ", importance=1.5, tags=["", "ok"], agent_id="a" * 201)
    bad.expire_time.FromDatetime(datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(InvalidArgument) as err:
        await client.create_memory(bad)
    assert _violations(err.value) == {
        "memory.content",
        "memory.importance",
        "memory.tags[0]",
        "memory.agent_id",
        "memory.expire_time",
    }
    with pytest.raises(InvalidArgument) as err:
        await client.get_memory("not-a-uuid")
    assert _violations(err.value) == {"memory_id"}
    with pytest.raises(InvalidArgument) as err:
        await client.update_memory(Memory(memory_id=str(uuid.uuid4())), ["memory_id", "create_time"])
    assert _violations(err.value) == {"update_mask.paths[0]", "update_mask.paths[1]"}
    with pytest.raises(InvalidArgument) as err:
        await client.list_memories(
            filter=memory_filter(min_importance=0.8, max_importance=0.2, tags_all=["x" * 101]), order_by="name"
        )
    assert _violations(err.value) == {"filter.min_importance", "filter.tags_all[0]", "order_by"}
    with pytest.raises(InvalidArgument) as err:
        await client.purge_memories(None, force=True)  # type: ignore[arg-type]
    assert _violations(err.value) == {"filter"}
    with pytest.raises(InvalidArgument) as err:
        await client.search_memories(" ", min_score=2.0, limit=101)
    assert _violations(err.value) == {"query", "min_score", "limit"}
    with pytest.raises(NotFound):
        await client.get_memory(str(uuid.uuid4()))


async def test_batch_create_is_atomic_and_reports_every_violation(client: PatternClient) -> None:
    good = [new_memory(f"note {i} about the deploy pipeline", agent_id="ci") for i in range(3)]
    with pytest.raises(InvalidArgument) as err:
        await client.batch_create_memories([*good, new_memory(""), new_memory("x", importance=-1.0)])
    assert _violations(err.value) == {"requests[3].memory.content", "requests[4].memory.importance"}
    assert (await client.list_memories()).total_size == 0  # nothing was stored
    with pytest.raises(InvalidArgument) as err:
        await client.batch_create_memories([new_memory("x")] * 1001)
    assert _violations(err.value) == {"requests"}

    stored = await client.batch_create_memories(good)
    assert [m.content for m in stored] == [m.content for m in good]
    page = await client.list_memories(filter=memory_filter(agent_id="ci"))
    assert page.total_size == 3


async def test_list_filters_orders_and_pages(client: PatternClient) -> None:
    batch = [
        new_memory("alpha", agent_id="a", tags=["x", "y"], importance=0.9, memory_type="fact"),
        new_memory("beta", agent_id="a", tags=["x"], importance=0.5),
        new_memory("gamma", agent_id="b", tags=["y"], importance=0.1),
        new_memory("delta", agent_id="a", tags=["x", "y", "z"], importance=0.5),
    ]
    for memory in batch:  # separate calls: distinct create times
        await client.create_memory(memory)
    contents = [m.content async for m in client.iter_all_memories(page_size=1)]
    assert contents == ["delta", "gamma", "beta", "alpha"]  # newest first, across 4 pages
    oldest = await client.list_memories(order_by="create_time", page_size=3)
    assert [m.content for m in oldest.memories] == ["alpha", "beta", "gamma"] and oldest.total_size == 4
    by_importance = [m.content async for m in client.iter_all_memories(order_by="importance desc", page_size=2)]
    assert by_importance == ["alpha", "delta", "beta", "gamma"]  # ties newest first

    async def listed(**kwargs: object) -> list[str]:
        return [m.content async for m in client.iter_all_memories(filter=memory_filter(**kwargs))]  # type: ignore[arg-type]

    assert await listed(agent_id="a") == ["delta", "beta", "alpha"]
    assert await listed(tags_all=["x", "Y"]) == ["delta", "alpha"]
    assert await listed(tags_any=["z", "x"], agent_id="a", memory_type="general") == ["delta", "beta"]
    assert await listed(min_importance=0.4, max_importance=0.6) == ["delta", "beta"]
    start = (await client.list_memories(order_by="create_time", page_size=2)).memories[1].create_time.ToDatetime()
    assert await listed(created_after=start) == ["delta", "gamma", "beta"]
    assert await listed(created_before=start) == ["beta", "alpha"]

    first = await client.list_memories(page_size=2)
    with pytest.raises(InvalidArgument) as err:  # a token of another query
        await client.list_memories(page_size=2, page_token=first.next_page_token, order_by="importance")
    assert _violations(err.value) == {"page_token"}
    with pytest.raises(InvalidArgument):
        await client.list_memories(page_token="garbage")


async def test_purge_previews_then_deletes(client: PatternClient) -> None:
    await client.batch_create_memories(
        [new_memory(f"agent one note {i}", agent_id="one") for i in range(5)]
        + [new_memory("agent two note", agent_id="two")]
    )
    preview = await client.purge_memories(memory_filter(agent_id="one"))
    assert preview.purge_count == 5 and len(preview.purge_sample) == 5
    assert (await client.list_memories()).total_size == 6  # a preview changes nothing
    done = await client.purge_memories(memory_filter(agent_id="one"), force=True)
    assert done.purge_count == 5 and set(done.purge_sample) == set(preview.purge_sample)
    remaining = await client.list_memories()
    assert [m.agent_id for m in remaining.memories] == ["two"]
    search = await client.search_memories("agent one note", min_score=0.0)
    assert {r.memory.agent_id for r in search.results} == {"two"}
    everything = await client.purge_memories(MemoryFilter(), force=True)
    assert everything.purge_count == 1 and (await client.list_memories()).total_size == 0


async def test_search_has_recalls_ranking_and_filters(client: PatternClient) -> None:
    await client.batch_create_memories(
        [
            new_memory(RUNBOOK, agent_id="ops", tags=["runbook"]),
            new_memory("the orders database fails over to the standby in region b", agent_id="ops"),
            new_memory("lunch is at noon on fridays", agent_id="social"),
        ]
    )
    recall = await client.execute(RECALL, context={"limit": 10}, use_cache=False)
    recalled = [(m["memory_id"], m["score"]) for m in recall.result["memory"]["memories"]]
    search = await client.search_memories(RECALL.removeprefix("recall memories about "), limit=10)
    assert search.min_score == pytest.approx(recall.result["memory"]["min_score"])
    assert [(r.memory.memory_id, r.score) for r in search.results] == [
        (i, pytest.approx(s)) for i, s in recalled
    ]  # same ids, same order, same scores
    assert search.results and all(r.memory.agent_id == "ops" for r in search.results)  # lunch is below the floor
    scores = [r.score for r in search.results]
    assert scores == sorted(scores, reverse=True)
    tagged = await client.search_memories("orders database", filter=memory_filter(tags_all=["runbook"]))
    assert [r.memory.content for r in tagged.results] == [RUNBOOK]
    everything = await client.search_memories("orders database", min_score=0.0, limit=10)
    assert len(everything.results) == 3 and everything.below_min_score == 0


async def test_deleted_or_updated_memory_never_reappears(client: PatternClient) -> None:
    created = await client.create_memory(new_memory(RUNBOOK, agent_id="ops"))
    first = await client.execute(RECALL)
    cached = await client.execute(RECALL)
    assert cached.cache_hit and created.memory_id in [m["memory_id"] for m in cached.result["memory"]["memories"]]
    hybrid_query = "check system health and recall memories about the orders database failover runbook"
    hybrid = await client.execute(hybrid_query, execution_mode="comprehensive")
    assert created.memory_id in [m["memory_id"] for m in hybrid.result["memory"]["memories"]]
    assert (await client.execute(hybrid_query, execution_mode="comprehensive")).cache_hit

    change = Memory(memory_id=created.memory_id, content=RUNBOOK + " (moved to the handbook)")
    await client.update_memory(change, "content")
    after_update = await client.execute(RECALL)
    assert not after_update.cache_hit
    assert [m["content"] for m in after_update.result["memory"]["memories"]] == [change.content]
    assert first.result != after_update.result

    await client.delete_memory(created.memory_id)
    for result in (
        await client.execute(RECALL),
        await client.execute(RECALL, use_cache=False),
        await client.execute(hybrid_query, execution_mode="comprehensive"),
    ):
        assert not result.cache_hit
        assert created.memory_id not in [m["memory_id"] for m in result.result["memory"]["memories"]]
    assert not (await client.search_memories("orders database failover runbook", min_score=0.0)).results
    assert (await client.list_memories()).total_size == 0


async def test_expired_memories_are_never_returned(client: PatternClient) -> None:
    short = await client.create_memory(new_memory("a short lived note about the orders database", ttl=5.0))
    await client.create_memory(new_memory("a lasting note about the orders database"))
    assert short.HasField("expire_time")
    cached = await client.execute("recall memories about the orders database")
    assert short.memory_id in [m["memory_id"] for m in cached.result["memory"]["memories"]]
    assert (await client.execute("recall memories about the orders database")).cache_hit
    await asyncio.sleep(5.2)
    with pytest.raises(NotFound):
        await client.get_memory(short.memory_id)
    assert [m.content for m in (await client.list_memories()).memories] == ["a lasting note about the orders database"]
    hits = await client.search_memories("orders database note", min_score=0.0)
    assert short.memory_id not in [r.memory.memory_id for r in hits.results]
    fresh = await client.execute("recall memories about the orders database", use_cache=False)
    assert short.memory_id not in [m["memory_id"] for m in fresh.result["memory"]["memories"]]
    # The cached recall holding it lived no longer than the memory (the sweep has not run yet).
    again = await client.execute("recall memories about the orders database")
    assert short.memory_id not in [m["memory_id"] for m in again.result["memory"]["memories"]]

    made_permanent = await client.create_memory(new_memory("keep me", ttl=60))
    kept = await client.update_memory(Memory(memory_id=made_permanent.memory_id), ["expire_time"])
    assert not kept.HasField("expire_time")


async def test_memories_are_tenant_scoped(client: PatternClient, other_tenant: PatternClient) -> None:
    mine = await client.create_memory(new_memory(RUNBOOK))
    with pytest.raises(NotFound):
        await other_tenant.get_memory(mine.memory_id)
    with pytest.raises(NotFound):
        await other_tenant.delete_memory(mine.memory_id)
    assert (await other_tenant.list_memories()).total_size == 0
    assert (await other_tenant.purge_memories(MemoryFilter(), force=True)).purge_count == 0
    assert not (await other_tenant.search_memories(RUNBOOK, min_score=0.0)).results
    assert await client.get_memory(mine.memory_id) == mine
