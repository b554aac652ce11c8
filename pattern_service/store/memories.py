"""SQL memory store with semantic recall through the vector index."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, bindparam, exists, func, or_, select

from pattern_service.domain import Memory, MemoryAggregate, MemoryFilter, NewMemory
from pattern_service.engine.ports import Embedder
from pattern_service.store.db import Database
from pattern_service.store.memory_binding import MEMORY_BINDING
from pattern_service.store.orm import MemoryRow, MemoryTagRow, utcnow
from pattern_service.store.outbox import VectorSync, enqueue
from pattern_service.store.vectors.base import VectorIndex

#: Tags reported by :meth:`SqlMemoryStore.aggregate`.
TOP_TAGS = 10


#: The columns of a memory by primary key, as one cached Core statement (``ids``: an expanding IN list).
#: ``metadata`` is labelled ``metadata_`` so a result row reads like a :class:`MemoryRow`.
_ROWS_BY_ID = select(
    MemoryRow.memory_id,
    MemoryRow.tenant_id,
    MemoryRow.agent_id,
    MemoryRow.content,
    MemoryRow.memory_type,
    MemoryRow.tags,
    MemoryRow.importance,
    MemoryRow.metadata_.label("metadata_"),
    MemoryRow.created_at,
    MemoryRow.updated_at,
    MemoryRow.expire_at,
).where(MemoryRow.memory_id.in_(bindparam("ids", expanding=True)))


#: Searches one recall makes at most, and the most extra hits it asks for beyond ``limit``,
#: when SQL drops hits the index returned (see :meth:`SqlMemoryStore.recall`).
_RECALL_ROUNDS = 3
_RECALL_EXTRA_MAX = 1000


def rows_by_id(conn: Connection, ids: Sequence[str]) -> dict[str, Row[Any]]:
    """The memory rows of ``ids`` that exist, by id (a primary-key read; see :meth:`Database.read`)."""
    return {r.memory_id: r for r in conn.execute(_ROWS_BY_ID, {"ids": list(ids)})}


def _to_domain(row: MemoryRow | Row[Any], score: float | None = None) -> Memory:
    return Memory(
        memory_id=row.memory_id,
        tenant_id=row.tenant_id,
        content=row.content,
        agent_id=row.agent_id,
        memory_type=row.memory_type,
        tags=tuple(row.tags or ()),
        importance=float(row.importance),
        metadata=dict(row.metadata_ or {}),
        created_at=row.created_at,
        score=score,
        updated_at=row.updated_at,
        expire_at=row.expire_at,
    )


#: A loaded ``memories`` row as a :class:`~pattern_service.domain.Memory` (``score`` optional).
memory_from_row = _to_domain


def _has_any_tag(tenant_id: str, tags: Sequence[str]) -> ColumnElement[bool]:
    """EXISTS a ``memory_tags`` row of the memory carrying one of ``tags``."""
    return exists().where(
        MemoryTagRow.memory_id == MemoryRow.memory_id,
        MemoryTagRow.tenant_id == tenant_id,
        MemoryTagRow.tag.in_(list(tags)),
    )


def _has_every_tag(tenant_id: str, tags: Sequence[str]) -> list[ColumnElement[bool]]:
    """One EXISTS per tag: the memory carries every one of ``tags``."""
    return [_has_any_tag(tenant_id, (tag,)) for tag in dict.fromkeys(tags)]


def not_expired(now: datetime | None = None) -> ColumnElement[bool]:
    """SQL condition: the memory has no expiry or it lies after ``now`` (default: the current time)."""
    return or_(MemoryRow.expire_at.is_(None), MemoryRow.expire_at > (now or utcnow()))


def memory_conditions(tenant_id: str, flt: MemoryFilter) -> list[ColumnElement[bool]]:
    """SQL conditions selecting the tenant's unexpired memories that pass ``flt``."""
    conds: list[ColumnElement[bool]] = [MemoryRow.tenant_id == tenant_id, not_expired()]
    if flt.agent_id is not None:
        conds.append(MemoryRow.agent_id == flt.agent_id)
    if flt.memory_type is not None:
        conds.append(MemoryRow.memory_type == flt.memory_type)
    if flt.tags:
        conds.append(_has_any_tag(tenant_id, flt.tags))
    if flt.tags_all:
        conds.extend(_has_every_tag(tenant_id, flt.tags_all))
    if flt.min_importance is not None:
        conds.append(MemoryRow.importance >= flt.min_importance)
    if flt.max_importance is not None:
        conds.append(MemoryRow.importance <= flt.max_importance)
    if flt.since is not None:
        conds.append(MemoryRow.created_at >= flt.since)
    if flt.until is not None:
        conds.append(MemoryRow.created_at <= flt.until)
    return conds


def _utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (naive = UTC, as :class:`~pattern_service.store.orm.UTCDateTime` binds it)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def memory_passes(row: MemoryRow | Row[Any], tenant_id: str, flt: MemoryFilter) -> bool:
    """Whether a loaded row passes what :func:`memory_conditions` selects (unexpired too), evaluated in Python.

    Used after a primary-key lookup, so the database is never asked to combine
    the id list with the tenant (which made it scan the tenant's whole index
    range). Tenant isolation is checked first and exactly.
    """
    if row.tenant_id != tenant_id:
        return False
    if flt.agent_id is not None and row.agent_id != flt.agent_id:
        return False
    if flt.memory_type is not None and row.memory_type != flt.memory_type:
        return False
    if flt.tags and not set(row.tags or ()) & set(flt.tags):
        return False
    if flt.tags_all and not set(flt.tags_all) <= set(row.tags or ()):
        return False
    if flt.min_importance is not None and not float(row.importance) >= flt.min_importance:
        return False
    if flt.max_importance is not None and not float(row.importance) <= flt.max_importance:
        return False
    if row.expire_at is not None and _utc(row.expire_at) <= utcnow():
        return False
    created = _utc(row.created_at)
    if flt.since is not None and created < _utc(flt.since):
        return False
    return flt.until is None or created <= _utc(flt.until)


class SqlMemoryStore:
    """:class:`~pattern_service.engine.ports.MemoryStore` on SQL plus the collection of :data:`MEMORY_BINDING`.

    Every read is scoped by ``tenant_id`` and honours every
    :class:`~pattern_service.domain.MemoryFilter` field.

    Args:
        db: The database (source of truth).
        index: The vector index holding :data:`MEMORY_BINDING`'s collection.
        embedder: Embeds recall queries (same model as :class:`VectorSync`'s).
        sync: Applies the outbox after each write.
    """

    def __init__(self, db: Database, index: VectorIndex, embedder: Embedder, sync: VectorSync):
        self.db = db
        self.index = index
        self.embedder = embedder
        self.sync = sync

    async def store(self, memory: NewMemory) -> Memory:
        """Store a memory with its tags and an outbox row in one transaction, then apply the outbox.

        Returns:
            The stored memory (acknowledged once SQL has committed, even if the
            vector write must be retried later).

        Raises:
            UnavailableError: The database cannot be reached.
        """
        now = utcnow()
        tags = list(dict.fromkeys(memory.tags))
        row = MemoryRow(
            memory_id=str(uuid.uuid4()),
            tenant_id=memory.tenant_id,
            agent_id=memory.agent_id,
            content=memory.content,
            memory_type=memory.memory_type,
            tags=tags,
            importance=float(memory.importance),
            metadata_=dict(memory.metadata),
            created_at=now,
            updated_at=now,
            expire_at=memory.expire_at,
        )
        async with self.db.session(write=True) as session:
            session.add(row)
            await session.flush()
            session.add_all([MemoryTagRow(memory_id=row.memory_id, tenant_id=row.tenant_id, tag=t) for t in tags])
            enqueue(session, MEMORY_BINDING.collection, row.memory_id, "upsert")
        await self.sync.apply(MEMORY_BINDING.collection, [row.memory_id])
        return _to_domain(row)

    async def recall(self, tenant_id: str, query: str, flt: MemoryFilter, limit: int) -> list[Memory]:
        """Memories closest in meaning to ``query``, best first, with ``score`` = cosine similarity in [0, 1].

        The filter is pushed down to the index; ids whose SQL row is gone (or
        no longer passes the filter, has expired, or belongs to another tenant)
        are dropped, and the index is asked for more hits (up to three searches)
        so that dropped ones do not cost the caller a slot of ``limit``.
        The SQL rows are read by primary key only and checked in Python
        (:func:`memory_passes`): joining the id list with ``tenant_id`` in SQL
        made the planner walk the tenant's index range instead. The read is one
        cached Core statement through :meth:`Database.read` (no ORM session; on a SQLite
        file inline, without a thread hop).

        Raises:
            UnavailableError: The database or the index cannot be reached.
        """
        if limit <= 0:
            return []
        vector = (await self.embedder.embed([query]))[0]
        vector_filter = MEMORY_BINDING.vector_filter(tenant_id, flt)
        fetch = limit
        for _ in range(_RECALL_ROUNDS):
            hits = await self.index.search(
                MEMORY_BINDING.collection, vector, limit=fetch, flt=vector_filter, with_payload=False
            )
            if not hits:
                return []
            ids = [h.id for h in hits]
            rows = await self.db.read(functools.partial(rows_by_id, ids=ids), inline=True)
            by_id = {k: r for k, r in rows.items() if memory_passes(r, tenant_id, flt)}
            kept = [h for h in hits if h.id in by_id]
            if len(kept) >= limit or len(hits) < fetch:
                break
            # Some hits were dropped (expired and not yet swept, or deleted/changed and the index not
            # yet told) and the index may hold more: ask it for more, so they do not cost a slot.
            fetch = min(fetch * 4, limit + _RECALL_EXTRA_MAX)
        return [_to_domain(by_id[h.id], min(1.0, max(0.0, float(h.score)))) for h in kept[:limit]]

    async def _select(
        self, tenant_id: str, flt: MemoryFilter, limit: int, *extra: Any, order: Sequence[Any]
    ) -> list[Memory]:
        if limit <= 0:
            return []
        async with self.db.session() as session:
            rows = await session.scalars(
                select(MemoryRow).where(*memory_conditions(tenant_id, flt), *extra).order_by(*order).limit(limit)
            )
            return [_to_domain(r) for r in rows]

    async def search_by_tag(self, tenant_id: str, tags: Sequence[str], flt: MemoryFilter, limit: int) -> list[Memory]:
        """Memories carrying any of ``tags`` (and passing ``flt``), newest first.

        Raises:
            UnavailableError: The database cannot be reached.
        """
        if not tags:
            return []
        return await self._select(
            tenant_id,
            flt,
            limit,
            _has_any_tag(tenant_id, tags),
            order=(MemoryRow.created_at.desc(), MemoryRow.memory_id.desc()),
        )

    async def filter_by_importance(
        self, tenant_id: str, min_importance: float, flt: MemoryFilter, limit: int
    ) -> list[Memory]:
        """Memories with importance >= ``min_importance`` (and passing ``flt``), most important first.

        Raises:
            UnavailableError: The database cannot be reached.
        """
        return await self._select(
            tenant_id,
            flt,
            limit,
            MemoryRow.importance >= min_importance,
            order=(MemoryRow.importance.desc(), MemoryRow.created_at.desc(), MemoryRow.memory_id.desc()),
        )

    async def recent(self, tenant_id: str, flt: MemoryFilter, limit: int) -> list[Memory]:
        """Memories passing ``flt``, newest first.

        Raises:
            UnavailableError: The database cannot be reached.
        """
        return await self._select(
            tenant_id, flt, limit, order=(MemoryRow.created_at.desc(), MemoryRow.memory_id.desc())
        )

    async def aggregate(self, tenant_id: str, flt: MemoryFilter) -> MemoryAggregate:
        """Counts over the memories passing ``flt``.

        Raises:
            UnavailableError: The database cannot be reached.
        """
        conds = memory_conditions(tenant_id, flt)
        async with self.db.session() as session:
            totals = (
                await session.execute(
                    select(func.count(), func.avg(MemoryRow.importance), func.max(MemoryRow.created_at)).where(*conds)
                )
            ).one()
            by_type = (
                await session.execute(
                    select(MemoryRow.memory_type, func.count()).where(*conds).group_by(MemoryRow.memory_type)
                )
            ).all()
            n = func.count().label("n")
            top_tags = (
                await session.execute(
                    select(MemoryTagRow.tag, n)
                    .where(
                        MemoryTagRow.tenant_id == tenant_id,
                        MemoryTagRow.memory_id.in_(select(MemoryRow.memory_id).where(*conds)),
                    )
                    .group_by(MemoryTagRow.tag)
                    .order_by(n.desc(), MemoryTagRow.tag)
                    .limit(TOP_TAGS)
                )
            ).all()
        total = int(totals[0] or 0)
        return MemoryAggregate(
            total=total,
            by_type={str(t): int(c) for t, c in by_type},
            top_tags=tuple((str(t), int(c)) for t, c in top_tags),
            mean_importance=float(totals[1]) if total and totals[1] is not None else 0.0,
            newest=totals[2],
        )

    async def count(self, tenant_id: str) -> int:
        """Number of memories of the tenant.

        Raises:
            UnavailableError: The database cannot be reached.
        """
        async with self.db.session() as session:
            return int(
                await session.scalar(
                    select(func.count()).select_from(MemoryRow).where(MemoryRow.tenant_id == tenant_id)
                )
                or 0
            )
