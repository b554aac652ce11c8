"""SqlMemoryAdmin on SQLite and PostgreSQL with a real qdrant-edge index: atomic batches, vectors, expiry sweep."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from pattern_service.domain import MemoryFilter, NewMemory
from pattern_service.errors import NotFoundError
from pattern_service.store.db import Database
from pattern_service.store.memories import SqlMemoryStore
from pattern_service.store.memory_admin import SqlMemoryAdmin
from pattern_service.store.memory_binding import MEMORY_BINDING
from pattern_service.store.orm import MemoryRow, MemoryTagRow, VectorOutboxRow, utcnow
from pattern_service.store.outbox import VectorSync
from pattern_service.store.vectors.edge import EdgeVectorIndex

MEMORY_COLLECTION = MEMORY_BINDING.collection

A, B = "tenant-a", "tenant-b"


@pytest.fixture
def admin(sql_db: Database, sql_sync: VectorSync) -> SqlMemoryAdmin:
    return SqlMemoryAdmin(sql_db, sql_sync)


async def _count(db: Database, table: type) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def test_batch_is_atomic_and_indexed(admin: SqlMemoryAdmin, sql_db: Database, sql_index: EdgeVectorIndex) -> None:
    created = await admin.create_many([NewMemory(A, f"note {i}", tags=("x", "y")) for i in range(3)])
    assert await sql_index.list_ids(MEMORY_COLLECTION) == {m.memory_id for m in created}
    assert await _count(sql_db, MemoryTagRow) == 6 and await _count(sql_db, VectorOutboxRow) == 0
    if sql_db.dialect == "postgresql":  # ck_memories_importance fails the last row: none is stored
        with pytest.raises(Exception, match="ck_memories_importance"):
            await admin.create_many([NewMemory(A, "fine"), NewMemory(A, "out of range", importance=2.0)])
        assert await _count(sql_db, MemoryRow) == 3 and await _count(sql_db, VectorOutboxRow) == 0


async def test_update_rewrites_the_vector_and_tags(
    admin: SqlMemoryAdmin, sql_memories: SqlMemoryStore, sql_index: EdgeVectorIndex
) -> None:
    (memory,) = await admin.create_many([NewMemory(A, "postgres vacuum schedule", tags=("db",))])
    updated = await admin.update(A, memory.memory_id, {"content": "redis eviction policy", "tags": ("cache",)})
    assert updated.content == "redis eviction policy" and updated.tags == ("cache",)
    assert updated.updated_at is not None and updated.updated_at >= memory.created_at
    hits = await sql_memories.recall(A, "redis eviction policy", MemoryFilter(tags=("cache",)), 5)
    assert [h.memory_id for h in hits] == [memory.memory_id] and hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert await sql_memories.search_by_tag(A, ("db",), MemoryFilter(), 5) == []
    with pytest.raises(NotFoundError):
        await admin.update(B, memory.memory_id, {"content": "x"})


async def test_sweep_deletes_expired_rows_and_vectors(
    admin: SqlMemoryAdmin, sql_db: Database, sql_index: EdgeVectorIndex, sql_memories: SqlMemoryStore
) -> None:
    past = utcnow() - timedelta(seconds=1)  # the store trusts its caller; the API refuses a past expiry
    kept = await admin.create_many([NewMemory(A, "lasting note"), NewMemory(B, "lasting b note")])
    doomed = await admin.create_many(
        [NewMemory(A, f"expiring note {i}", expire_at=past) for i in range(3)] + [NewMemory(B, "b", expire_at=past)]
    )
    assert len(await sql_index.list_ids(MEMORY_COLLECTION)) == 6
    assert [m.content for m in await sql_memories.recent(A, MemoryFilter(), 10)] == ["lasting note"]  # invisible
    recalled = await sql_memories.recall(A, "expiring note 1", MemoryFilter(), 10)
    assert {m.memory_id for m in recalled} <= {kept[0].memory_id}
    with pytest.raises(NotFoundError):
        await admin.get(A, doomed[0].memory_id)
    assert await admin.sweep_expired(batch_size=2) == {A: 3, B: 1}
    assert await sql_index.list_ids(MEMORY_COLLECTION) == {m.memory_id for m in kept}
    assert await _count(sql_db, MemoryRow) == 2 and await _count(sql_db, VectorOutboxRow) == 0
    assert await admin.sweep_expired() == {}


async def test_purge_is_tenant_scoped(admin: SqlMemoryAdmin, sql_index: EdgeVectorIndex) -> None:
    await admin.create_many([NewMemory(A, "a1", agent_id="x"), NewMemory(A, "a2"), NewMemory(B, "b1", agent_id="x")])
    assert (await admin.purge(A, MemoryFilter(agent_id="x"), force=False))[0] == 1
    count, sample = await admin.purge(A, MemoryFilter(), force=True)
    assert count == 2 and len(sample) == 2
    assert (await admin.list(A, MemoryFilter(), order="create_time", page_size=10, after=None)).total_size == 0
    await admin.drain()  # the vectors follow the committed SQL delete
    assert len(await sql_index.list_ids(MEMORY_COLLECTION)) == 1
    assert (await admin.list(B, MemoryFilter(), order="create_time desc", page_size=10, after=None)).total_size == 1
