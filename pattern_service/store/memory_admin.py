"""Memories as resources: batch create, get, list (keyset pages), update, delete, purge and the expiry sweep.

The typed ``MemoryService`` works on the same ``memories`` rows as the
``Execute`` memory operations (:mod:`pattern_service.store.memories`, whose
filter translation it reuses, so both see the same memories). Every write
changes SQL and adds its ``vector_outbox`` rows in one transaction, then
applies the outbox at once (:class:`~pattern_service.store.outbox.VectorSync`):
a memory's vector is rewritten when its content, agent, type, tags or
importance change and deleted with the row. The caller (the servicer, the
sweep) then invalidates the tenant's cached results
(``PatternExecutionEngine.memories_changed``).

Expired memories (``expire_at`` at or before now) are invisible to every read
here and in :mod:`~pattern_service.store.memories`; :meth:`SqlMemoryAdmin.sweep_expired`
deletes them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from pattern_service.domain import KeysetCursor, Memory, MemoryFilter, NewMemory, Page
from pattern_service.errors import InvalidArgumentError, NotFoundError
from pattern_service.store.db import Database
from pattern_service.store.memories import memory_conditions, memory_from_row, not_expired
from pattern_service.store.memory_binding import MEMORY_BINDING
from pattern_service.store.orm import MemoryRow, MemoryTagRow, utcnow
from pattern_service.store.outbox import VectorSync, enqueue

log = logging.getLogger(__name__)

RESOURCE = "Memory"
#: Fields ``update`` accepts (domain names).
UPDATABLE_MEMORY_FIELDS = frozenset(
    {"content", "agent_id", "memory_type", "tags", "importance", "metadata", "expire_at"}
)
#: Fields whose change rewrites the vector point (embedded text or filtered payload).
_VECTOR_FIELDS = frozenset({"content", "agent_id", "memory_type", "tags", "importance"})
#: Ids returned by a purge as its sample.
PURGE_SAMPLE = 100
#: Rows deleted per statement by purge and sweep (bounded ``IN`` lists).
DELETE_CHUNK = 500

MemoryOrder = Literal["create_time desc", "create_time", "importance desc", "importance"]
#: Accepted ``order_by`` values, first = default.
MEMORY_ORDERS: tuple[MemoryOrder, ...] = ("create_time desc", "create_time", "importance desc", "importance")


def _sort_keys(order: MemoryOrder) -> list[tuple[Any, bool]]:
    """(column, descending) of ``order``, ending with unique tie-breakers (newest first, then id)."""
    if order == "create_time desc":
        return [(MemoryRow.created_at, True), (MemoryRow.memory_id, True)]
    if order == "create_time":
        return [(MemoryRow.created_at, False), (MemoryRow.memory_id, False)]
    first = (MemoryRow.importance, order == "importance desc")
    return [first, (MemoryRow.created_at, True), (MemoryRow.memory_id, True)]


def _cursor(row: MemoryRow, order: MemoryOrder) -> KeysetCursor:
    """The position just after ``row`` in ``order``."""
    rank = float(row.importance) if order.startswith("importance") else None
    return KeysetCursor(created_at=row.created_at, id=row.memory_id, rank=rank)


def _after(order: MemoryOrder, cursor: KeysetCursor) -> ColumnElement[bool]:
    """Keyset condition: rows strictly after ``cursor`` in ``order``.

    Raises:
        InvalidArgumentError: An importance order and a cursor without a rank (field ``page_token``).
    """
    keys = _sort_keys(order)
    by_column = {"created_at": cursor.created_at, "memory_id": cursor.id}
    if order.startswith("importance"):
        if cursor.rank is None:
            raise InvalidArgumentError.single(
                "page_token", "is malformed; pass a next_page_token unchanged", reason="INVALID_PAGE_TOKEN"
            )
        by_column["importance"] = cursor.rank
    values = [by_column[col.key] for col, _ in keys]
    alternatives = []
    for i, (col, desc) in enumerate(keys):
        equal = [keys[j][0] == values[j] for j in range(i)]
        beyond = col < values[i] if desc else col > values[i]
        alternatives.append(and_(*equal, beyond))
    return or_(*alternatives)


def _new_row(memory: NewMemory, now: datetime) -> MemoryRow:
    return MemoryRow(
        memory_id=str(uuid.uuid4()),
        tenant_id=memory.tenant_id,
        agent_id=memory.agent_id,
        content=memory.content,
        memory_type=memory.memory_type,
        tags=list(dict.fromkeys(memory.tags)),
        importance=float(memory.importance),
        metadata_=dict(memory.metadata),
        created_at=now,
        updated_at=now,
        expire_at=memory.expire_at,
    )


class SqlMemoryAdmin:
    """Resource-style memory operations on SQL, vectors through the outbox.

    Args:
        db: The database (source of truth).
        sync: Applies the outbox after each write.
    """

    def __init__(self, db: Database, sync: VectorSync):
        self.db = db
        self.sync = sync
        self._pending: set[asyncio.Task[bool]] = set()

    async def create_many(self, memories: Sequence[NewMemory]) -> list[Memory]:
        """Store ``memories`` in one transaction (all or none), then write their vectors.

        Returns:
            The stored memories, in the given order.

        Raises:
            UnavailableError: The database cannot be reached (nothing was stored).
        """
        now = utcnow()
        rows = [_new_row(m, now) for m in memories]
        async with self.db.session(write=True) as session:
            session.add_all(rows)
            await session.flush()
            session.add_all(
                [MemoryTagRow(memory_id=r.memory_id, tenant_id=r.tenant_id, tag=t) for r in rows for t in r.tags]
            )
            for row in rows:
                enqueue(session, MEMORY_BINDING.collection, row.memory_id, "upsert")
        await self.sync.apply(MEMORY_BINDING.collection, [r.memory_id for r in rows])
        return [memory_from_row(r) for r in rows]

    async def _row(self, session: AsyncSession, tenant_id: str, memory_id: str) -> MemoryRow:
        row = await session.get(MemoryRow, memory_id)
        if row is None or row.tenant_id != tenant_id or (row.expire_at is not None and row.expire_at <= utcnow()):
            raise NotFoundError(RESOURCE, memory_id)
        return row

    async def get(self, tenant_id: str, memory_id: str) -> Memory:
        """One unexpired memory of the tenant.

        Raises:
            NotFoundError: No such memory of this tenant, or it expired.
            UnavailableError: The database cannot be reached.
        """
        async with self.db.session() as session:
            return memory_from_row(await self._row(session, tenant_id, memory_id))

    async def list(
        self, tenant_id: str, flt: MemoryFilter, *, order: MemoryOrder, page_size: int, after: KeysetCursor | None
    ) -> Page[Memory]:
        """One page of the tenant's unexpired memories passing ``flt``, in ``order`` (keyset paging).

        A memory created or deleted between pages neither shifts nor repeats
        the others.

        Args:
            tenant_id: Caller tenant.
            flt: Filters.
            order: One of :data:`MEMORY_ORDERS`.
            page_size: Memories per page (>= 1).
            after: ``None`` for the first page, else the previous page's ``next_cursor``.

        Raises:
            InvalidArgumentError: An importance order and a cursor without a rank.
            UnavailableError: The database cannot be reached.
        """
        conds = memory_conditions(tenant_id, flt)
        page_conds = list(conds) if after is None else [*conds, _after(order, after)]
        sort = [col.desc() if desc else col.asc() for col, desc in _sort_keys(order)]
        async with self.db.session() as session:
            rows = list(
                await session.scalars(select(MemoryRow).where(*page_conds).order_by(*sort).limit(page_size + 1))
            )
            total = await session.scalar(select(func.count()).select_from(MemoryRow).where(*conds))
        more = len(rows) > page_size
        rows = rows[:page_size]
        cursor = _cursor(rows[-1], order) if more and rows else None
        return Page(items=[memory_from_row(r) for r in rows], next_cursor=cursor, total_size=int(total or 0))

    async def update(self, tenant_id: str, memory_id: str, changes: Mapping[str, Any]) -> Memory:
        """Apply ``changes`` (keys from :data:`UPDATABLE_MEMORY_FIELDS`, values validated).

        A change of content, agent, type, tags or importance rewrites the
        vector (re-embedding the content) through the outbox.

        Raises:
            NotFoundError: No such unexpired memory of this tenant.
            UnavailableError: The database cannot be reached.
        """
        async with self.db.session(write=True) as session:
            row = await self._row(session, tenant_id, memory_id)
            for key, value in changes.items():
                if key == "metadata":
                    row.metadata_ = dict(value)
                elif key == "tags":
                    row.tags = list(dict.fromkeys(value))
                else:
                    setattr(row, key, value)
            if "tags" in changes:
                await session.execute(delete(MemoryTagRow).where(MemoryTagRow.memory_id == memory_id))
                session.add_all([MemoryTagRow(memory_id=memory_id, tenant_id=tenant_id, tag=t) for t in row.tags])
            row.updated_at = utcnow()
            rewrite = bool(_VECTOR_FIELDS & set(changes))
            if rewrite:
                enqueue(session, MEMORY_BINDING.collection, memory_id, "upsert")
        if rewrite:
            await self.sync.apply(MEMORY_BINDING.collection, [memory_id])
        return memory_from_row(row)

    async def delete(self, tenant_id: str, memory_id: str) -> None:
        """Delete one memory and (through the outbox, in the background) its vector.

        Answers once SQL has committed: reads join index hits with the SQL rows,
        so the memory is never returned again even before its point is gone
        (waiting for the index made a delete queue behind a large purge's).

        Raises:
            NotFoundError: No such unexpired memory of this tenant.
            UnavailableError: The database cannot be reached.
        """
        async with self.db.session(write=True) as session:
            await self._row(session, tenant_id, memory_id)
            await self._delete_ids(session, [memory_id])
        self._apply_later([memory_id])

    @staticmethod
    async def _delete_ids(session: AsyncSession, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), DELETE_CHUNK):
            chunk = list(ids[start : start + DELETE_CHUNK])
            await session.execute(delete(MemoryTagRow).where(MemoryTagRow.memory_id.in_(chunk)))
            await session.execute(delete(MemoryRow).where(MemoryRow.memory_id.in_(chunk)))
            for memory_id in chunk:
                enqueue(session, MEMORY_BINDING.collection, memory_id, "delete")

    async def purge(self, tenant_id: str, flt: MemoryFilter, *, force: bool) -> tuple[int, Sequence[str]]:
        """Delete (``force``) or count (preview) the tenant's unexpired memories passing ``flt``, atomically.

        The vectors are deleted in the background (the outbox rows commit with
        the SQL delete); no read returns a purged memory meanwhile.

        Returns:
            (how many were or would be deleted, up to :data:`PURGE_SAMPLE` of their ids, newest first).

        Raises:
            UnavailableError: The database cannot be reached (nothing was deleted).
        """
        query = (
            select(MemoryRow.memory_id)
            .where(*memory_conditions(tenant_id, flt))
            .order_by(MemoryRow.created_at.desc(), MemoryRow.memory_id.desc())
        )
        if not force:  # a count and a sample, not every id of what may be the tenant's whole store
            count = select(func.count()).select_from(MemoryRow).where(*memory_conditions(tenant_id, flt))
            async with self.db.session() as session:
                total = int(await session.scalar(count) or 0)
                sample = list(await session.scalars(query.limit(PURGE_SAMPLE)))
            return total, sample
        async with self.db.session(write=True) as session:
            ids = list(await session.scalars(query))
            await self._delete_ids(session, ids)
        if ids:
            self._apply_later(ids)
        return len(ids), ids[:PURGE_SAMPLE]

    async def drain(self) -> None:
        """Wait until the vector deletes started by :meth:`delete` and :meth:`purge` are applied (or failed)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def _apply_later(self, ids: Sequence[str]) -> None:
        """Delete the points of ``ids`` from the index without waiting (their outbox rows are committed).

        Reads join index hits with the SQL rows, so a point not deleted yet is
        never returned; a delete or a purge of many thousands of memories answers
        once SQL has committed instead of after every point is gone from the index.
        """
        task = asyncio.create_task(self.sync.apply(MEMORY_BINDING.collection, ids), name="memory-purge-apply")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def sweep_expired(self, *, batch_size: int = DELETE_CHUNK) -> dict[str, int]:
        """Delete every memory whose ``expire_at`` has passed (all tenants), vectors through the outbox.

        Returns:
            Memories deleted per tenant.

        Raises:
            UnavailableError: The database cannot be reached.
        """
        deleted: dict[str, int] = {}
        while True:
            now = utcnow()
            async with self.db.session(write=True) as session:
                found = (
                    await session.execute(
                        select(MemoryRow.memory_id, MemoryRow.tenant_id)
                        .where(~not_expired(now))
                        .order_by(MemoryRow.expire_at)
                        .limit(batch_size)
                    )
                ).all()
                await self._delete_ids(session, [r.memory_id for r in found])
            if found:
                await self.sync.apply(MEMORY_BINDING.collection, [r.memory_id for r in found])
            for row in found:
                deleted[row.tenant_id] = deleted.get(row.tenant_id, 0) + 1
            if len(found) < batch_size:
                return deleted


async def sweep_periodically(
    admin: SqlMemoryAdmin, on_deleted: Callable[[str], Awaitable[None]], interval: float
) -> None:
    """Run :meth:`SqlMemoryAdmin.sweep_expired` every ``interval`` seconds until cancelled.

    Args:
        admin: The memory admin store.
        on_deleted: Called with each tenant whose memories were deleted
            (``PatternExecutionEngine.memories_changed``: invalidates its cached results).
        interval: Seconds between sweeps (``TMWS_MEMORY_SWEEP_INTERVAL``).
    """
    while True:
        try:
            deleted = await admin.sweep_expired()
            for tenant_id, count in deleted.items():
                log.info("expiry sweep deleted %d memories of tenant %s", count, tenant_id)
                await on_deleted(tenant_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("memory expiry sweep failed; retrying next interval", exc_info=True)
        await asyncio.sleep(interval)


__all__ = ["MEMORY_ORDERS", "UPDATABLE_MEMORY_FIELDS", "MemoryOrder", "SqlMemoryAdmin", "sweep_periodically"]
