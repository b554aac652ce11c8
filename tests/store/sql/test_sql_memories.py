"""SqlMemoryStore against a migrated SQLite file and a real qdrant-edge index."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import delete, update

from pattern_service.domain import Memory, MemoryFilter, NewMemory
from pattern_service.store.db import Database
from pattern_service.store.memories import SqlMemoryStore
from pattern_service.store.memory_binding import MEMORY_BINDING
from pattern_service.store.orm import MemoryRow, utcnow
from pattern_service.store.outbox import VectorSync
from pattern_service.store.vectors.edge import EdgeVectorIndex

MEMORY_COLLECTION = MEMORY_BINDING.collection

A, B = "tenant-a", "tenant-b"

SEED = [
    NewMemory(A, "postgres connection pooling reduced latency", "artemis", "decision", ("db", "perf"), 0.9),
    NewMemory(A, "redis cache invalidation across replicas", "athena", "general", ("cache",), 0.4),
    NewMemory(A, "grpc streaming backpressure window of 64", "artemis", "general", ("grpc", "perf"), 0.7),
    NewMemory(A, "deploy plan for the pattern service", None, "plan", (), 0.2, {"plan": {"steps": [1, 2]}}),
    NewMemory(A, "postgres vacuum schedule for large tables", "hera", "decision", ("db",), 0.55),
    NewMemory(B, "postgres connection pooling reduced latency", "artemis", "decision", ("db", "perf"), 0.95),
    NewMemory(B, "tenant b secret roadmap", "artemis", "plan", ("cache", "db"), 0.8),
]


@pytest.fixture
async def seeded(sql_memories: SqlMemoryStore) -> list[Memory]:
    return [await sql_memories.store(m) for m in SEED]


def _passes(m: Memory, flt: MemoryFilter) -> bool:
    return (
        (flt.agent_id is None or m.agent_id == flt.agent_id)
        and (flt.memory_type is None or m.memory_type == flt.memory_type)
        and (not flt.tags or bool(set(flt.tags) & set(m.tags)))
        and (flt.min_importance is None or m.importance >= flt.min_importance)
        and (flt.since is None or m.created_at >= flt.since)
        and (flt.until is None or m.created_at <= flt.until)
    )


def _filters(seeded: list[Memory]) -> list[MemoryFilter]:
    mid = seeded[2].created_at
    return [
        MemoryFilter(),
        MemoryFilter(agent_id="artemis"),
        MemoryFilter(memory_type="decision"),
        MemoryFilter(tags=("perf", "cache")),
        MemoryFilter(min_importance=0.55),
        MemoryFilter(since=mid),
        MemoryFilter(until=mid),
        MemoryFilter(since=seeded[1].created_at, until=seeded[3].created_at),
        MemoryFilter(agent_id="artemis", tags=("db",), min_importance=0.5),
        MemoryFilter(agent_id="nobody"),
    ]


async def test_store_commits_row_tags_and_vector(
    sql_memories: SqlMemoryStore, sql_index: EdgeVectorIndex, sql_sync: VectorSync
) -> None:
    m = await sql_memories.store(SEED[3])
    assert m.tenant_id == A and m.agent_id is None and m.metadata == {"plan": {"steps": [1, 2]}}
    assert m.created_at.tzinfo is not None and m.score is None
    assert await sql_index.list_ids(MEMORY_COLLECTION) == {m.memory_id}
    assert await sql_sync.pending_count() == 0
    assert await sql_memories.count(A) == 1 and await sql_memories.count(B) == 0


async def test_recall_ranks_by_meaning_and_is_tenant_scoped(sql_memories: SqlMemoryStore, seeded: list[Memory]) -> None:
    hits = await sql_memories.recall(A, "postgres connection pooling", MemoryFilter(), 3)
    assert hits[0].memory_id == seeded[0].memory_id
    assert all(h.tenant_id == A for h in hits)
    scores = [h.score for h in hits]
    assert all(s is not None and 0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    b_hits = await sql_memories.recall(B, "postgres connection pooling", MemoryFilter(), 10)
    assert {h.memory_id for h in b_hits} == {seeded[5].memory_id, seeded[6].memory_id}


async def test_every_read_honours_every_filter(sql_memories: SqlMemoryStore, seeded: list[Memory]) -> None:
    a_memories = [m for m in seeded if m.tenant_id == A]
    for flt in _filters(seeded):
        expected = [m for m in a_memories if _passes(m, flt)]
        newest_first = sorted(expected, key=lambda m: (m.created_at, m.memory_id), reverse=True)
        recalled = await sql_memories.recall(A, "postgres grpc redis deploy", flt, 100)
        assert {m.memory_id for m in recalled} == {m.memory_id for m in expected}, flt
        recent = await sql_memories.recent(A, flt, 100)
        assert [m.memory_id for m in recent] == [m.memory_id for m in newest_first], flt
        important = await sql_memories.filter_by_importance(A, 0.5, flt, 100)
        assert [m.memory_id for m in important] == [
            m.memory_id for m in sorted((m for m in newest_first if m.importance >= 0.5), key=lambda m: -m.importance)
        ], flt
        tagged = await sql_memories.search_by_tag(A, ("db", "grpc"), flt, 100)
        assert [m.memory_id for m in tagged] == [m.memory_id for m in newest_first if {"db", "grpc"} & set(m.tags)]
        agg = await sql_memories.aggregate(A, flt)
        assert agg.total == len(expected)
        assert dict(agg.by_type) == dict(Counter(m.memory_type for m in expected))
        tag_counts = Counter(t for m in expected for t in m.tags)
        assert list(agg.top_tags) == sorted(tag_counts.items(), key=lambda kv: (-kv[1], kv[0]))
        mean = sum(m.importance for m in expected) / len(expected) if expected else 0.0
        assert agg.mean_importance == pytest.approx(mean)
        assert agg.newest == (max(m.created_at for m in expected) if expected else None)


async def test_limits_and_empty_tags(sql_memories: SqlMemoryStore, seeded: list[Memory]) -> None:
    assert len(await sql_memories.recent(A, MemoryFilter(), 2)) == 2
    assert len(await sql_memories.recall(A, "postgres", MemoryFilter(), 1)) == 1
    assert await sql_memories.recall(A, "postgres", MemoryFilter(), 0) == []
    assert await sql_memories.search_by_tag(A, (), MemoryFilter(), 10) == []
    assert await sql_memories.count(A) == 5 and await sql_memories.count(B) == 2
    assert await sql_memories.count("tenant-c") == 0


async def test_tenant_isolation_everywhere(sql_memories: SqlMemoryStore, seeded: list[Memory]) -> None:
    b_ids = {m.memory_id for m in seeded if m.tenant_id == B}
    flt = MemoryFilter()
    reads = [
        await sql_memories.recall(A, "tenant b secret roadmap", flt, 100),
        await sql_memories.recent(A, flt, 100),
        await sql_memories.search_by_tag(A, ("cache", "db"), flt, 100),
        await sql_memories.filter_by_importance(A, 0.0, flt, 100),
    ]
    for read in reads:
        assert not b_ids & {m.memory_id for m in read}
    c = await sql_memories.aggregate("tenant-c", flt)
    assert (c.total, dict(c.by_type), c.top_tags, c.mean_importance, c.newest) == (0, {}, (), 0.0, None)


async def test_recall_drops_ids_whose_row_is_gone(
    sql_memories: SqlMemoryStore, sql_db: Database, seeded: list[Memory]
) -> None:
    gone = seeded[0].memory_id
    async with sql_db.session() as session:  # removed behind the store's back: the vector is still indexed
        await session.execute(delete(MemoryRow).where(MemoryRow.memory_id == gone))
    hits = await sql_memories.recall(A, "postgres connection pooling", MemoryFilter(), 10)
    assert gone not in {h.memory_id for h in hits}
    assert len(hits) == 4


async def test_recall_answers_from_the_sql_row_not_the_stale_index(
    sql_memories: SqlMemoryStore, sql_db: Database, seeded: list[Memory]
) -> None:
    """An update the index has not seen yet (its payload still says agent artemis): SQL decides."""
    changed = seeded[0].memory_id
    async with sql_db.session() as session:  # behind the store's back: no outbox row, the index is stale
        await session.execute(
            update(MemoryRow)
            .where(MemoryRow.memory_id == changed)
            .values(content="postgres pooling, revised", agent_id="hera", importance=0.1)
        )
    hits = {h.memory_id: h for h in await sql_memories.recall(A, "postgres connection pooling", MemoryFilter(), 10)}
    assert hits[changed].content == "postgres pooling, revised" and hits[changed].agent_id == "hera"
    assert hits[changed].importance == pytest.approx(0.1)
    for flt in (MemoryFilter(agent_id="artemis"), MemoryFilter(min_importance=0.5)):
        # The index still matches the old payload; the row no longer passes, so it is not returned.
        assert changed not in {h.memory_id for h in await sql_memories.recall(A, "postgres pooling", flt, 10)}


async def test_duplicate_tags_are_stored_once(sql_memories: SqlMemoryStore) -> None:
    m = await sql_memories.store(replace(SEED[0], tags=("db", "db", "perf")))
    assert m.tags == ("db", "perf")
    agg = await sql_memories.aggregate(A, MemoryFilter())
    assert dict(agg.top_tags) == {"db": 1, "perf": 1}


async def test_an_expired_memory_not_yet_swept_does_not_take_a_recall_slot(
    sql_memories: SqlMemoryStore, sql_db: Database, seeded: list[Memory]
) -> None:
    """The index still holds an expired memory until the sweep runs; recall asks it for more hits instead."""
    query = "postgres connection pooling"
    before = await sql_memories.recall(A, query, MemoryFilter(), 2)
    assert len(before) == 2
    expired = before[0].memory_id
    async with sql_db.session() as session:  # expired a minute ago; the sweep has not run
        await session.execute(
            update(MemoryRow).where(MemoryRow.memory_id == expired).values(expire_at=utcnow() - timedelta(minutes=1))
        )
    after = await sql_memories.recall(A, query, MemoryFilter(), 2)
    assert len(after) == 2 and expired not in {m.memory_id for m in after}
    assert after[0].memory_id == before[1].memory_id
