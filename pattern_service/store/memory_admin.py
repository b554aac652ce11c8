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
import base64
import binascii
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from pattern_service.domain import Memory, MemoryFilter, NewMemory, Page
from pattern_service.errors import InvalidArgumentError, NotFoundError
from pattern_service.store.db import Database
from pattern_service.store.memories import memory_conditions, memory_from_row, not_expired
from pattern_service.store.orm import MemoryRow, MemoryTagRow, utcnow
from pattern_service.store.outbox import MEMORY_COLLECTION, VectorSync, enqueue

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


def _key_values(row: MemoryRow, order: MemoryOrder) -> list[Any]:
    values: dict[str, Any] = {
        "importance": float(row.importance),
        "created_at": row.created_at.isoformat(),
        "memory_id": row.memory_id,
    }
    return [values[col.key] for col, _ in _sort_keys(order)]


def _after(order: MemoryOrder, values: Sequence[Any]) -> ColumnElement[bool]:
    """Keyset condition: rows strictly after the position ``values`` in ``order``."""
    keys = _sort_keys(order)
    decoded = [
        datetime.fromisoformat(v) if col.key == "created_at" else v for (col, _), v in zip(keys, values, strict=True)
    ]
    alternatives = []
    for i, (col, desc) in enumerate(keys):
        equal = [keys[j][0] == decoded[j] for j in range(i)]
        beyond = col < decoded[i] if desc else col > decoded[i]
        alternatives.append(and_(*equal, beyond))
    return or_(*alternatives)


def _fingerprint(tenant_id: str, flt: MemoryFilter, order: MemoryOrder) -> str:
    material = json.dumps([tenant_id, asdict(flt), order], default=str, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def _encode_token(values: Sequence[Any], fingerprint: str) -> str:
    raw = json.dumps({"k": list(values), "f": fingerprint}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(token: str, fingerprint: str, order: MemoryOrder) -> list[Any]:
    """The keyset position of a page token.

    Raises:
        InvalidArgumentError: Malformed, or made for another query (field ``page_token``, ``INVALID_PAGE_TOKEN``).
    """
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        values, token_fp = list(data["k"]), data["f"]
        kinds: dict[str, type | tuple[type, ...]] = {"importance": (int, float), "created_at": str, "memory_id": str}
        keys = _sort_keys(order)
        if len(values) != len(keys):
            raise ValueError
        if not all(isinstance(v, kinds[c.key]) for (c, _), v in zip(keys, values, strict=True)):
            raise ValueError
        _after(order, values)  # validates the time value
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError, AttributeError):
        raise InvalidArgumentError.single("page_token", "malformed page token", reason="INVALID_PAGE_TOKEN") from None
    if token_fp != fingerprint:
        raise InvalidArgumentError.single(
            "page_token", "page token belongs to another query", reason="INVALID_PAGE_TOKEN"
        )
    return values


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
                enqueue(session, MEMORY_COLLECTION, row.memory_id, "upsert")
        await self.sync.apply(MEMORY_COLLECTION, [r.memory_id for r in rows])
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
        self, tenant_id: str, flt: MemoryFilter, *, order: MemoryOrder, page_size: int, page_token: str
    ) -> Page[Memory]:
        """One page of the tenant's unexpired memories passing ``flt``, in ``order`` (keyset paging).

        A memory created or deleted between pages neither shifts nor repeats
        the others.

        Raises:
            InvalidArgumentError: ``page_token`` is malformed or belongs to another query.
            UnavailableError: The database cannot be reached.
        """
        fingerprint = _fingerprint(tenant_id, flt, order)
        conds = memory_conditions(tenant_id, flt)
        page_conds = list(conds)
        if page_token:
            page_conds.append(_after(order, _decode_token(page_token, fingerprint, order)))
        sort = [col.desc() if desc else col.asc() for col, desc in _sort_keys(order)]
        async with self.db.session() as session:
            rows = list(
                await session.scalars(select(MemoryRow).where(*page_conds).order_by(*sort).limit(page_size + 1))
            )
            total = await session.scalar(select(func.count()).select_from(MemoryRow).where(*conds))
        more = len(rows) > page_size
        rows = rows[:page_size]
        token = _encode_token(_key_values(rows[-1], order), fingerprint) if more and rows else ""
        return Page(items=[memory_from_row(r) for r in rows], next_page_token=token, total_size=int(total or 0))

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
                enqueue(session, MEMORY_COLLECTION, memory_id, "upsert")
        if rewrite:
            await self.sync.apply(MEMORY_COLLECTION, [memory_id])
        return memory_from_row(row)

    async def delete(self, tenant_id: str, memory_id: str) -> None:
        """Delete one memory and (through the outbox) its vector.

        Raises:
            NotFoundError: No such unexpired memory of this tenant.
            UnavailableError: The database cannot be reached.
        """
        async with self.db.session(write=True) as session:
            await self._row(session, tenant_id, memory_id)
            await self._delete_ids(session, [memory_id])
        await self.sync.apply(MEMORY_COLLECTION, [memory_id])

    @staticmethod
    async def _delete_ids(session: AsyncSession, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), DELETE_CHUNK):
            chunk = list(ids[start : start + DELETE_CHUNK])
            await session.execute(delete(MemoryTagRow).where(MemoryTagRow.memory_id.in_(chunk)))
            await session.execute(delete(MemoryRow).where(MemoryRow.memory_id.in_(chunk)))
            for memory_id in chunk:
                enqueue(session, MEMORY_COLLECTION, memory_id, "delete")

    async def purge(self, tenant_id: str, flt: MemoryFilter, *, force: bool) -> tuple[int, Sequence[str]]:
        """Delete (``force``) or count (preview) the tenant's unexpired memories passing ``flt``, atomically.

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
        if not force:
            async with self.db.session() as session:
                ids = list(await session.scalars(query))
            return len(ids), ids[:PURGE_SAMPLE]
        async with self.db.session(write=True) as session:
            ids = list(await session.scalars(query))
            await self._delete_ids(session, ids)
        if ids:
            await self.sync.apply(MEMORY_COLLECTION, ids)
        return len(ids), ids[:PURGE_SAMPLE]

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
                await self.sync.apply(MEMORY_COLLECTION, [r.memory_id for r in found])
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
