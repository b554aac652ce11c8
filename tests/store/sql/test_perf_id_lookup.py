"""The primary-key lookups after a vector search: tenant and filters are checked on the returned rows.

The stores read the hits' rows by primary key only (the SQL join with
``tenant_id`` made the planner scan the tenant's index range), so these tests
hand the stores an index that ignores the tenant filter and returns every
tenant's points: a row of another tenant (or one failing a filter) must
still never come back.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import numpy.typing as npt

from pattern_service.domain import MatchFilters, MatchQuery, MemoryFilter, NewMemory, SuccessPatternInput
from pattern_service.store.db import Database
from pattern_service.store.embeddings import HashingEmbedder
from pattern_service.store.learning import SqlLearningStore
from pattern_service.store.memories import SqlMemoryStore
from pattern_service.store.memory_binding import MEMORY_BINDING
from pattern_service.store.outbox import VectorSync
from pattern_service.store.vectors.base import ScoredPoint, VectorFilter, VectorIndex
from pattern_service.store.vectors.edge import EdgeVectorIndex


class _LeakyIndex:
    """Delegates to a real index but drops the filter of every search (a broken or stale index)."""

    def __init__(self, inner: VectorIndex) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def search(
        self,
        collection: str,
        vector: npt.NDArray[np.float32],
        *,
        limit: int,
        flt: VectorFilter | None = None,
        score_threshold: float | None = None,
        with_payload: bool = True,
    ) -> list[ScoredPoint]:
        return await self._inner.search(
            collection, vector, limit=100, score_threshold=score_threshold, with_payload=with_payload
        )


async def test_recall_never_returns_another_tenants_row_even_if_the_index_does(
    sql_db: Database, sql_index: EdgeVectorIndex, sql_embedder: HashingEmbedder, sql_sync: VectorSync
) -> None:

    writer = SqlMemoryStore(sql_db, sql_index, sql_embedder, sql_sync)
    mine = await writer.store(NewMemory(tenant_id="a", content="deploy checklist for payments", tags=("deploy",)))
    await writer.store(NewMemory(tenant_id="b", content="deploy checklist for payments", tags=("deploy",)))
    await writer.store(NewMemory(tenant_id="b", content="deploy checklist for payments service", importance=0.9))
    leaky = SqlMemoryStore(sql_db, _LeakyIndex(sql_index), sql_embedder, sql_sync)  # type: ignore[arg-type]
    assert (
        len(await sql_index.search(MEMORY_BINDING.collection, (await sql_embedder.embed(["deploy"]))[0], limit=10)) == 3
    )

    got = await leaky.recall("a", "deploy checklist for payments", MemoryFilter(), 10)
    assert [m.memory_id for m in got] == [mine.memory_id]
    assert all(m.tenant_id == "a" for m in got)
    assert await leaky.recall("c", "deploy checklist for payments", MemoryFilter(), 10) == []


async def test_recall_checks_every_filter_on_the_rows(
    sql_db: Database, sql_index: EdgeVectorIndex, sql_embedder: HashingEmbedder, sql_sync: VectorSync
) -> None:
    writer = SqlMemoryStore(sql_db, sql_index, sql_embedder, sql_sync)
    base = await writer.store(
        NewMemory(tenant_id="a", content="rotate the api keys", agent_id="artemis", tags=("sec",), importance=0.5)
    )
    other = await writer.store(
        NewMemory(
            tenant_id="a", content="rotate the api keys now", agent_id="hermes", memory_type="plan", importance=0.2
        )
    )
    leaky = SqlMemoryStore(sql_db, _LeakyIndex(sql_index), sql_embedder, sql_sync)  # type: ignore[arg-type]

    async def ids(flt: MemoryFilter) -> set[str]:
        return {m.memory_id for m in await leaky.recall("a", "rotate the api keys", flt, 10)}

    assert await ids(MemoryFilter()) == {base.memory_id, other.memory_id}
    assert await ids(MemoryFilter(agent_id="artemis")) == {base.memory_id}
    assert await ids(MemoryFilter(memory_type="plan")) == {other.memory_id}
    assert await ids(MemoryFilter(tags=("sec", "x"))) == {base.memory_id}
    assert await ids(MemoryFilter(min_importance=0.5)) == {base.memory_id}
    assert await ids(MemoryFilter(min_importance=0.51)) == set()
    assert await ids(MemoryFilter(since=base.created_at)) == {base.memory_id, other.memory_id}
    assert await ids(MemoryFilter(since=other.created_at)) == {other.memory_id}
    assert await ids(MemoryFilter(until=base.created_at)) == {base.memory_id}
    naive_until = (base.created_at - timedelta(microseconds=1)).replace(tzinfo=None)  # naive = UTC
    assert await ids(MemoryFilter(until=naive_until)) == set()


async def test_match_never_returns_another_tenants_pattern_even_if_the_index_does(
    sql_db: Database, sql_index: EdgeVectorIndex, sql_embedder: HashingEmbedder, sql_sync: VectorSync
) -> None:
    writer = SqlLearningStore(sql_db, sql_index, sql_embedder, sql_sync)
    spec = {"pattern_type": "api_optimization", "description": "connection pooling with read replicas"}
    mine = await writer.create("a", SuccessPatternInput(name="pooling", **spec))
    await writer.create("b", SuccessPatternInput(name="pooling", **spec))
    await writer.create("b", SuccessPatternInput(name="pooling 2", **spec))
    leaky = SqlLearningStore(sql_db, _LeakyIndex(sql_index), sql_embedder, sql_sync)  # type: ignore[arg-type]

    result = await leaky.match("a", MatchQuery(intent="connection pooling with read replicas", limit=10))
    assert [m.pattern.pattern_id for m in result.matches] == [mine.pattern_id]
    assert all(m.pattern.tenant_id == "a" for m in result.matches)
    none = await leaky.match("c", MatchQuery(intent="connection pooling", limit=10, filters=MatchFilters()))
    assert none.matches == ()
