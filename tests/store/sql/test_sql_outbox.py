"""The transactional outbox: failures, retries, reconciliation and restarts, on a real qdrant-edge index."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Sequence

import pytest
from sqlalchemy import select

from pattern_service.domain import MemoryFilter, NewMemory, SuccessPatternInput
from pattern_service.errors import FailedPreconditionError, UnavailableError
from pattern_service.store.db import Database
from pattern_service.store.embeddings import HashingEmbedder
from pattern_service.store.learning import SqlLearningStore
from pattern_service.store.learning_binding import PATTERN_BINDING
from pattern_service.store.memories import SqlMemoryStore
from pattern_service.store.memory_binding import MEMORY_BINDING
from pattern_service.store.orm import VectorOutboxRow
from pattern_service.store.outbox import VectorSync
from pattern_service.store.vector_bindings import VECTOR_BINDINGS
from pattern_service.store.vectors.base import VectorPoint
from pattern_service.store.vectors.edge import EdgeVectorIndex

MEMORY_COLLECTION = MEMORY_BINDING.collection
PATTERN_COLLECTION = PATTERN_BINDING.collection

A = "tenant-a"


class FlakyEdgeIndex(EdgeVectorIndex):
    """A real edge index whose next ``failures`` writes raise UnavailableError."""

    def __init__(self, root: pathlib.Path):
        super().__init__(root)
        self.failures = 0

    def _maybe_fail(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise UnavailableError("vector index down (test)")

    async def upsert(self, collection: str, points: Sequence[VectorPoint]) -> None:
        self._maybe_fail()
        await super().upsert(collection, points)

    async def delete(self, collection: str, ids: Sequence[str]) -> None:
        self._maybe_fail()
        await super().delete(collection, ids)


async def _outbox_rows(db: Database) -> list[VectorOutboxRow]:
    async with db.session() as session:
        return list(await session.scalars(select(VectorOutboxRow).order_by(VectorOutboxRow.id)))


async def _stack(
    db: Database, index: EdgeVectorIndex, interval: float = 1.0
) -> tuple[VectorSync, SqlMemoryStore, SqlLearningStore]:
    embedder = HashingEmbedder()
    sync = VectorSync(db, index, embedder, VECTOR_BINDINGS, interval=interval)
    await sync.ensure_collections()
    return sync, SqlMemoryStore(db, index, embedder, sync), SqlLearningStore(db, index, embedder, sync)


async def test_failed_apply_leaves_row_pending_then_retry_applies(
    sql_db: Database, sql_vector_root: pathlib.Path
) -> None:
    index = FlakyEdgeIndex(sql_vector_root)
    try:
        sync, memories, _ = await _stack(sql_db, index)
        assert await sync.lag_seconds() == 0.0
        index.failures = 1
        m = await memories.store(NewMemory(A, "the write is acknowledged although the index is down"))
        assert await memories.count(A) == 1  # SQL committed = acknowledged
        rows = await _outbox_rows(sql_db)
        assert [(r.point_id, r.op, r.attempts) for r in rows] == [(m.memory_id, "upsert", 1)]
        assert rows[0].last_error is not None and "index down" in rows[0].last_error
        assert await sync.pending_count() == 1 and await sync.lag_seconds() >= 0.0
        assert await index.list_ids(MEMORY_COLLECTION) == set()
        assert await memories.recall(A, "index down", MemoryFilter(), 5) == []

        index.failures = 1
        assert await sync.run_pending() == 0  # still failing: stays pending, attempts counted
        assert [r.attempts for r in await _outbox_rows(sql_db)] == [2]

        assert await sync.run_pending() == 1
        assert await sync.pending_count() == 0 and await sync.lag_seconds() == 0.0
        assert await index.list_ids(MEMORY_COLLECTION) == {m.memory_id}
        hits = await memories.recall(A, "index down", MemoryFilter(), 5)
        assert [h.memory_id for h in hits] == [m.memory_id]
    finally:
        await index.close()


async def test_background_task_retries_failed_delete(sql_db: Database, sql_vector_root: pathlib.Path) -> None:
    index = FlakyEdgeIndex(sql_vector_root)
    try:
        sync, _, learning = await _stack(sql_db, index, interval=0.01)
        p = await learning.create(A, SuccessPatternInput(pattern_type="t", name="doomed", description="to delete"))
        index.failures = 1
        await learning.delete(A, p.pattern_id)
        assert await index.list_ids(PATTERN_COLLECTION) == {p.pattern_id}  # vector not yet deleted
        assert await sync.pending_count() == 1
        sync.start()
        assert sync.running
        async with asyncio.timeout(30):
            while True:  # wait for the background pass (no assumption on how long it takes)
                if await sync.pending_count() == 0:
                    break
                await asyncio.sleep(0.01)
        await sync.stop()
        assert not sync.running
        assert await index.list_ids(PATTERN_COLLECTION) == set()
    finally:
        await index.close()


async def test_closed_index_then_restart_applies_pending(
    sql_db: Database, sql_url: str, sql_vector_root: pathlib.Path
) -> None:
    index = EdgeVectorIndex(sql_vector_root)
    _, memories, learning = await _stack(sql_db, index)
    kept = await memories.store(NewMemory(A, "stored while the index was healthy", tags=("ok",)))
    pattern = await learning.create(A, SuccessPatternInput(pattern_type="t", name="kept", description="kept pattern"))
    await index.close()  # the index dies; writes still succeed
    late = await memories.store(NewMemory(A, "stored while the index was closed", tags=("late",)))
    assert await memories.count(A) == 2
    await sql_db.dispose()

    db2 = Database(sql_url)
    index2 = EdgeVectorIndex(sql_vector_root)
    try:
        sync2, memories2, learning2 = await _stack(db2, index2)
        assert await sync2.pending_count() == 1
        assert await sync2.run_pending() == 1
        assert await index2.list_ids(MEMORY_COLLECTION) == {kept.memory_id, late.memory_id}
        assert await index2.list_ids(PATTERN_COLLECTION) == {pattern.pattern_id}
        assert await sync2.reconcile(MEMORY_COLLECTION) == (0, 0)
        assert [m.memory_id for m in await memories2.recall(A, "index was closed", MemoryFilter(), 1)] == [
            late.memory_id
        ]
        assert (await learning2.get(A, pattern.pattern_id)).name == "kept"
        assert (await learning2.list(A, page_size=10)).total_size == 1
    finally:
        await index2.close()
        await db2.dispose()


async def test_reconcile_repairs_both_directions(
    sql_memories: SqlMemoryStore, sql_learning: SqlLearningStore, sql_index: EdgeVectorIndex, sql_sync: VectorSync
) -> None:
    m1 = await sql_memories.store(NewMemory(A, "first memory"))
    m2 = await sql_memories.store(NewMemory(A, "second memory"))
    p = await sql_learning.create(A, SuccessPatternInput(pattern_type="t", name="n", description="d"))
    orphan = "11111111-2222-4333-8444-555555555555"
    vector = (await HashingEmbedder().embed(["orphan"]))[0]
    await sql_index.delete(MEMORY_COLLECTION, [m1.memory_id])  # SQL row without a vector
    await sql_index.upsert(MEMORY_COLLECTION, [VectorPoint(orphan, vector, {"tenant_id": A})])  # vector without a row
    await sql_index.delete(PATTERN_COLLECTION, [p.pattern_id])

    assert await sql_sync.reconcile(MEMORY_COLLECTION) == (1, 1)
    assert await sql_index.list_ids(MEMORY_COLLECTION) == {m1.memory_id, m2.memory_id}
    assert await sql_sync.reconcile_all() == {MEMORY_COLLECTION: (0, 0), PATTERN_COLLECTION: (1, 0)}
    assert await sql_index.list_ids(PATTERN_COLLECTION) == {p.pattern_id}
    hits = await sql_memories.recall(A, "first memory", MemoryFilter(), 1)
    assert [h.memory_id for h in hits] == [m1.memory_id]
    with pytest.raises(ValueError):
        await sql_sync.reconcile("unknown_collection")


async def test_apply_without_pending_rows_is_a_no_op(sql_sync: VectorSync) -> None:
    assert await sql_sync.apply(MEMORY_COLLECTION, []) is True
    assert await sql_sync.apply(MEMORY_COLLECTION, ["11111111-2222-4333-8444-555555555555"]) is True
    assert await sql_sync.run_pending() == 0


async def test_collections_refuse_another_model(
    sql_db: Database, sql_sync: VectorSync, sql_index: EdgeVectorIndex
) -> None:
    other = VectorSync(sql_db, sql_index, HashingEmbedder(dimension=64), VECTOR_BINDINGS)
    with pytest.raises(FailedPreconditionError) as info:
        await other.ensure_collections()
    assert info.value.reason == "EMBEDDING_MODEL_MISMATCH"


async def test_sync_serves_exactly_the_bindings_it_is_given(sql_db: Database, sql_vector_root: pathlib.Path) -> None:
    index = EdgeVectorIndex(sql_vector_root)
    try:
        embedder = HashingEmbedder()
        sync = VectorSync(sql_db, index, embedder, (MEMORY_BINDING,))
        await sync.ensure_collections()
        memories = SqlMemoryStore(sql_db, index, embedder, sync)
        m = await memories.store(NewMemory(A, "only memories are mirrored by this syncer"))
        assert await index.list_ids(MEMORY_COLLECTION) == {m.memory_id}
        assert await sync.reconcile_all() == {MEMORY_COLLECTION: (0, 0)}
        with pytest.raises(ValueError):
            await sync.reconcile(PATTERN_COLLECTION)
        with pytest.raises(ValueError):
            VectorSync(sql_db, index, embedder, (MEMORY_BINDING, MEMORY_BINDING))
    finally:
        await index.close()
