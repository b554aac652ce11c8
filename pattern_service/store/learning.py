"""SQL learning store: success patterns, searchable by meaning through the vector index.

Longer than this code base's ~400-line guide on purpose: :class:`SqlLearningStore`
is one implementation of the learning store, and its writes (create, update,
delete, outcome) share the same row loading, version lineage and outbox rules in
one transaction each; the vector side is already its binding
(:mod:`.learning_binding`) and the ranking of matches :mod:`.relevance`.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Float,
    Row,
    and_,
    bindparam,
    exists,
    func,
    inspect,
    literal,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, array
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from pattern_service.domain import (
    UPDATABLE_SUCCESS_PATTERN_FIELDS,
    KeysetCursor,
    MatchFilters,
    MatchQuery,
    MatchResult,
    Page,
    PatternMatch,
    SuccessPattern,
    SuccessPatternInput,
    SuccessPatternStatus,
    quality_score,
)
from pattern_service.engine.ports import Embedder
from pattern_service.errors import AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError
from pattern_service.store.db import Database
from pattern_service.store.learning_binding import PATTERN_BINDING, recommendation_texts
from pattern_service.store.orm import SuccessPatternRow, utcnow
from pattern_service.store.outbox import VectorSync, enqueue
from pattern_service.store.relevance import MATCH_CANDIDATES, dense_floor, rank_matches
from pattern_service.store.vectors.base import VectorIndex

RESOURCE = "SuccessPattern"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

#: Fields whose change alters the embedding text or the index payload (so the vector is rewritten).
_VECTOR_FIELDS = frozenset(
    {
        "pattern_type",
        "name",
        "description",
        "version",
        "tags",
        "status",
        "quality_metrics",
        "success_rate",
        "context",
        "execution_trace",
    }
)

#: Fields that say what a pattern *is*: an update changing one of them to a different value
#: increments ``version`` (unless the update sets ``version`` itself). Tags, status, metrics,
#: performance data, context, success rate, name, type and parent are facts *about* it and do not.
VERSIONED_FIELDS = frozenset({"description", "execution_trace", "success_criteria"})

#: Ancestors followed when checking that a new parent does not make a cycle.
MAX_LINEAGE_DEPTH = 10_000


def context_hash(context: Mapping[str, Any]) -> str:
    """SHA-256 hex of ``json.dumps(context, sort_keys=True)`` (seed)."""
    return hashlib.sha256(json.dumps(context, sort_keys=True).encode()).hexdigest()


def recommendations(execution_trace: Mapping[str, Any]) -> tuple[str, ...]:
    """The steps of ``execution_trace["steps"]``: strings, or dicts' ``description`` / ``action``."""
    return recommendation_texts(execution_trace)


#: Every column of a success pattern by primary key, as one cached Core statement (``ids``: an
#: expanding IN list), labelled with the mapped attribute names so a row reads like a SuccessPatternRow.
_ROWS_BY_ID = select(
    *(getattr(SuccessPatternRow, a.key).label(a.key) for a in inspect(SuccessPatternRow).column_attrs)
).where(SuccessPatternRow.pattern_id.in_(bindparam("ids", expanding=True)))


def rows_by_id(conn: Connection, ids: Sequence[str]) -> list[Row[Any]]:
    """The success-pattern rows of ``ids`` that exist (a primary-key read; see :meth:`Database.read`)."""
    return list(conn.execute(_ROWS_BY_ID, {"ids": list(ids)}))


def _to_domain(row: SuccessPatternRow | Row[Any]) -> SuccessPattern:
    return SuccessPattern(
        pattern_id=row.pattern_id,
        tenant_id=row.tenant_id,
        pattern_type=row.pattern_type,
        name=row.name,
        description=row.description,
        version=int(row.version),
        parent_pattern_id=row.parent_pattern_id,
        context_hash=row.context_hash,
        execution_trace=dict(row.execution_trace or {}),
        success_criteria=dict(row.success_criteria or {}),
        quality_metrics=dict(row.quality_metrics or {}),
        performance_data=dict(row.performance_data or {}),
        tags=tuple(row.tags or ()),
        status=SuccessPatternStatus(row.status),
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_matched_at=row.last_matched_at,
        match_count=int(row.match_count),
        success_rate=None if row.success_rate is None else float(row.success_rate),
        context=dict(row.context or {}),
        quality_score=float(row.quality_score),
    )


def _changes_identity(row: SuccessPatternRow, changes: Mapping[str, Any]) -> bool:
    """Whether ``changes`` sets a :data:`VERSIONED_FIELDS` field of ``row`` to a different value."""
    for key in VERSIONED_FIELDS & set(changes):
        old = row.description if key == "description" else dict(getattr(row, key) or {})
        new = changes[key] if key == "description" else dict(changes[key])
        if old != new:
            return True
    return False


def _has_any_tag(dialect: str, tags: Sequence[str]) -> ColumnElement[bool]:
    """``tags`` (a JSON list column) holds at least one of ``tags``: ``?|`` on PostgreSQL, ``json_each`` on SQLite."""
    if dialect == "postgresql":
        return type_coerce(SuccessPatternRow.tags, JSONB).has_any(array(list(tags)))
    each = func.json_each(SuccessPatternRow.tags).table_valued("value").alias("tag")
    return exists(select(literal(1)).select_from(each).where(each.c.value.in_(list(tags))))


def _passes(p: SuccessPattern, f: MatchFilters) -> bool:
    """Whether the SQL row (the truth) passes the filters the index applied."""
    statuses = f.statuses or (SuccessPatternStatus.ACTIVE,)
    return (
        p.status in statuses
        and (not f.pattern_types or p.pattern_type in f.pattern_types)
        and (not f.tags or bool(set(p.tags) & set(f.tags)))
        and (f.min_quality_score is None or p.quality_score >= f.min_quality_score)
        and (f.min_success_rate is None or (p.success_rate is not None and p.success_rate >= f.min_success_rate))
    )


class SqlLearningStore:
    """:class:`~pattern_service.store.base.LearningStore` on SQL plus the collection of :data:`PATTERN_BINDING`.

    Args:
        db: The database (source of truth).
        index: The vector index holding :data:`PATTERN_BINDING`'s collection.
        embedder: Embeds match queries (same model as :class:`VectorSync`'s).
        sync: Applies the outbox after each write.
    """

    def __init__(self, db: Database, index: VectorIndex, embedder: Embedder, sync: VectorSync):
        self.db = db
        self.index = index
        self.embedder = embedder
        self.sync = sync

    @staticmethod
    async def _row(session: AsyncSession, tenant_id: str, pattern_id: str) -> SuccessPatternRow:
        row = await session.scalar(
            select(SuccessPatternRow).where(
                SuccessPatternRow.tenant_id == tenant_id, SuccessPatternRow.pattern_id == pattern_id
            )
        )
        if row is None:
            raise NotFoundError(RESOURCE, pattern_id)
        return row

    @staticmethod
    async def _check_name_free(session: AsyncSession, tenant_id: str, name: str) -> None:
        taken = await session.scalar(
            select(SuccessPatternRow.pattern_id).where(
                SuccessPatternRow.tenant_id == tenant_id, SuccessPatternRow.name == name
            )
        )
        if taken is not None:
            raise AlreadyExistsError(RESOURCE, name)

    async def create(self, tenant_id: str, data: SuccessPatternInput) -> SuccessPattern:
        """Create a pattern (and its vector, via the outbox).

        ``version`` ``None`` means 1, or the parent's version + 1 when
        ``parent_pattern_id`` is set.

        Raises:
            AlreadyExistsError: The tenant has a pattern of that name.
            NotFoundError: ``parent_pattern_id`` names no pattern of the tenant.
            UnavailableError: The database cannot be reached.
        """
        now = utcnow()
        row = SuccessPatternRow(
            pattern_id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            pattern_type=data.pattern_type,
            name=data.name,
            description=data.description,
            version=data.version or 1,
            parent_pattern_id=data.parent_pattern_id,
            context_hash=context_hash(data.context),
            execution_trace=dict(data.execution_trace),
            success_criteria=dict(data.success_criteria),
            quality_metrics=dict(data.quality_metrics),
            performance_data=dict(data.performance_data),
            tags=list(dict.fromkeys(data.tags)),
            status=SuccessPatternStatus(data.status).value,
            created_at=now,
            updated_at=now,
            last_matched_at=None,
            match_count=0,
            success_rate=data.success_rate,
            context=dict(data.context),
            quality_score=quality_score(data.quality_metrics),
        )
        try:
            async with self.db.session(write=True) as session:
                if data.parent_pattern_id is not None:
                    parent = await self._row(session, tenant_id, data.parent_pattern_id)
                    if data.version is None:
                        row.version = int(parent.version) + 1
                await self._check_name_free(session, tenant_id, data.name)
                session.add(row)
                enqueue(session, PATTERN_BINDING.collection, row.pattern_id, "upsert")
        except IntegrityError as exc:  # a concurrent create took the name
            raise AlreadyExistsError(RESOURCE, data.name) from exc
        await self.sync.apply(PATTERN_BINDING.collection, [row.pattern_id])
        return _to_domain(row)

    async def get(self, tenant_id: str, pattern_id: str) -> SuccessPattern:
        """The tenant's pattern ``pattern_id``.

        Raises:
            NotFoundError: No such pattern in the tenant.
            UnavailableError: The database cannot be reached.
        """
        async with self.db.session() as session:
            return _to_domain(await self._row(session, tenant_id, pattern_id))

    async def list(
        self,
        tenant_id: str,
        *,
        page_size: int,
        after: KeysetCursor | None = None,
        pattern_type: str | None = None,
        statuses: Sequence[SuccessPatternStatus] = (),
        parent_pattern_id: str | None = None,
        tags: Sequence[str] = (),
        name_prefix: str | None = None,
    ) -> Page[SuccessPattern]:
        """One page of the tenant's patterns, newest first (ties broken by id, descending).

        Pages are keyset positions, so inserts between pages never repeat or skip an item.

        Args:
            tenant_id: Owner tenant.
            page_size: Items per page; <= 0 means 50, capped at 1,000.
            after: ``None`` for the first page, else the previous page's ``next_cursor``.
            pattern_type: Only this pattern type.
            statuses: Only these statuses (empty = all).
            parent_pattern_id: Only the children of this pattern.
            tags: Only patterns carrying at least one of these tags (exact match; empty = all).
            name_prefix: Only names starting with this (case-sensitive on every backend).

        Raises:
            UnavailableError: The database cannot be reached.
        """
        size = DEFAULT_PAGE_SIZE if page_size <= 0 else min(page_size, MAX_PAGE_SIZE)
        conds: list[ColumnElement[bool]] = [SuccessPatternRow.tenant_id == tenant_id]
        if pattern_type is not None:
            conds.append(SuccessPatternRow.pattern_type == pattern_type)
        if statuses:
            conds.append(SuccessPatternRow.status.in_([str(s) for s in statuses]))
        if parent_pattern_id is not None:
            conds.append(SuccessPatternRow.parent_pattern_id == parent_pattern_id)
        if tags:
            conds.append(_has_any_tag(self.db.dialect, tags))
        if name_prefix:
            # substr, not LIKE: LIKE is case-insensitive on SQLite and needs escaping of % and _.
            conds.append(func.substr(SuccessPatternRow.name, 1, len(name_prefix)) == name_prefix)
        position = []
        if after is not None:
            position.append(
                or_(
                    SuccessPatternRow.created_at < after.created_at,
                    and_(SuccessPatternRow.created_at == after.created_at, SuccessPatternRow.pattern_id < after.id),
                )
            )
        async with self.db.session() as session:
            total = await session.scalar(select(func.count()).select_from(SuccessPatternRow).where(*conds))
            rows = list(
                await session.scalars(
                    select(SuccessPatternRow)
                    .where(*conds, *position)
                    .order_by(SuccessPatternRow.created_at.desc(), SuccessPatternRow.pattern_id.desc())
                    .limit(size + 1)
                )
            )
        items = [_to_domain(r) for r in rows[:size]]
        last = rows[size - 1] if len(rows) > size else None
        cursor = KeysetCursor(created_at=last.created_at, id=last.pattern_id) if last is not None else None
        return Page(items=items, next_cursor=cursor, total_size=int(total or 0))

    async def update(self, tenant_id: str, pattern_id: str, changes: Mapping[str, Any]) -> SuccessPattern:
        """Apply ``changes`` (keys of ``UPDATABLE_SUCCESS_PATTERN_FIELDS``) and bump ``updated_at``.

        ``context`` also recomputes ``context_hash``; ``quality_metrics`` also
        recomputes ``quality_score``. A change of a :data:`VERSIONED_FIELDS`
        field to a different value increments ``version`` (one SQL
        ``version + 1``, so concurrent updates never lose an increment) unless
        ``changes`` sets ``version``. The vector is rewritten (outbox) when an
        embedded or indexed field changes.

        Raises:
            InvalidArgumentError: An unknown field, or a parent that would make a
                cycle (the pattern itself or one of its descendants).
            NotFoundError: No such pattern, or ``parent_pattern_id`` names no pattern of the tenant.
            AlreadyExistsError: Renamed onto a name the tenant already uses.
            UnavailableError: The database cannot be reached.
        """
        unknown = sorted(set(changes) - UPDATABLE_SUCCESS_PATTERN_FIELDS)
        if unknown:
            raise InvalidArgumentError.single("update_mask", f"fields cannot be updated: {', '.join(unknown)}")
        try:
            async with self.db.session(write=True) as session:
                row = await self._row(session, tenant_id, pattern_id)
                bump = "version" not in changes and _changes_identity(row, changes)
                for key, value in changes.items():
                    await self._apply_change(session, row, key, value)
                row.updated_at = utcnow()
                if bump:
                    row.version = SuccessPatternRow.version + 1
                rewrite = bool(_VECTOR_FIELDS & set(changes)) or bump
                if rewrite:
                    enqueue(session, PATTERN_BINDING.collection, pattern_id, "upsert")
                await session.flush()
                if bump:
                    await session.refresh(row, ["version"])
                result = _to_domain(row)
        except IntegrityError as exc:
            raise AlreadyExistsError(RESOURCE, str(changes.get("name", pattern_id))) from exc
        if rewrite:
            await self.sync.apply(PATTERN_BINDING.collection, [pattern_id])
        return result

    async def _apply_change(self, session: AsyncSession, row: SuccessPatternRow, key: str, value: Any) -> None:
        if key == "name":
            if value != row.name:
                await self._check_name_free(session, row.tenant_id, value)
            row.name = value
        elif key == "parent_pattern_id":
            if value == row.pattern_id:
                raise InvalidArgumentError.single(
                    "success_pattern.parent_pattern_id", "a pattern cannot be its own parent"
                )
            if value is not None:
                await self._row(session, row.tenant_id, value)
                await self._check_no_cycle(session, row, value)
            row.parent_pattern_id = value
        elif key == "context":
            row.context = dict(value)
            row.context_hash = context_hash(value)
        elif key == "quality_metrics":
            row.quality_metrics = dict(value)
            row.quality_score = quality_score(value)
        elif key == "tags":
            row.tags = list(dict.fromkeys(value))
        elif key == "status":
            row.status = SuccessPatternStatus(value).value
        elif key in ("execution_trace", "success_criteria", "performance_data"):
            setattr(row, key, dict(value))
        else:  # pattern_type, description, version, success_rate
            setattr(row, key, value)

    @staticmethod
    async def _check_no_cycle(session: AsyncSession, row: SuccessPatternRow, parent_id: str) -> None:
        """Raises InvalidArgumentError if ``parent_id`` is ``row`` itself or one of its descendants."""
        t = SuccessPatternRow
        current: str | None = parent_id
        for _ in range(MAX_LINEAGE_DEPTH):
            if current is None:
                return
            if current == row.pattern_id:
                raise InvalidArgumentError.single(
                    "success_pattern.parent_pattern_id", "would make a cycle: the parent descends from this pattern"
                )
            current = await session.scalar(
                select(t.parent_pattern_id).where(t.tenant_id == row.tenant_id, t.pattern_id == current)
            )

    async def delete(self, tenant_id: str, pattern_id: str, *, force: bool = False) -> tuple[str, ...]:
        """Delete the pattern and (via the outbox) its vector.

        A pattern that is the ``parent_pattern_id`` of others is deleted only
        with ``force``, which detaches those children (their parent becomes
        ``None`` and their ``updated_at`` now) in the same transaction.

        Returns:
            The ids of the detached children, oldest first (empty without children).

        Raises:
            NotFoundError: No such pattern in the tenant.
            FailedPreconditionError: ``HAS_CHILD_PATTERNS``: it has children and
                ``force`` is false (nothing changed).
            UnavailableError: The database cannot be reached.
        """
        t = SuccessPatternRow
        async with self.db.session(write=True) as session:
            row = await self._row(session, tenant_id, pattern_id)
            children = tuple(
                await session.scalars(
                    select(t.pattern_id)
                    .where(t.tenant_id == tenant_id, t.parent_pattern_id == pattern_id)
                    .order_by(t.created_at, t.pattern_id)
                )
            )
            if children and not force:
                shown = ", ".join(children[:10]) + (", ..." if len(children) > 10 else "")
                raise FailedPreconditionError(
                    f"success pattern {pattern_id!r} is the parent of {len(children)} pattern(s) ({shown}); "
                    "delete or re-parent them first, or delete with force to detach them",
                    reason="HAS_CHILD_PATTERNS",
                    metadata={"pattern_id": pattern_id, "child_count": str(len(children))},
                )
            if children:
                await session.execute(
                    update(t)
                    .where(t.tenant_id == tenant_id, t.parent_pattern_id == pattern_id)
                    .values(parent_pattern_id=None, updated_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
            await session.delete(row)
            enqueue(session, PATTERN_BINDING.collection, pattern_id, "delete")
        await self.sync.apply(PATTERN_BINDING.collection, [pattern_id])
        return children

    async def record_outcome(self, tenant_id: str, pattern_id: str, success: bool) -> SuccessPattern:
        """Record one use: ``match_count`` + 1, running success rate, ``last_matched_at`` = now.

        The increment is one SQL ``UPDATE`` (safe under concurrency):
        ``rate = (coalesce(rate, 0) * count + outcome) / (count + 1)``.

        Raises:
            NotFoundError: No such pattern in the tenant.
            UnavailableError: The database cannot be reached.
        """
        t = SuccessPatternRow
        outcome = literal(1.0 if success else 0.0, Float)
        async with self.db.session(write=True) as session:
            result = await session.execute(
                update(t)
                .where(t.tenant_id == tenant_id, t.pattern_id == pattern_id)
                .values(
                    match_count=t.match_count + 1,
                    success_rate=(func.coalesce(t.success_rate, literal(0.0, Float)) * t.match_count + outcome)
                    / (t.match_count + 1),
                    last_matched_at=utcnow(),
                )
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0) == 0:
                raise NotFoundError(RESOURCE, pattern_id)
            enqueue(session, PATTERN_BINDING.collection, pattern_id, "upsert")
            pattern = _to_domain(await self._row(session, tenant_id, pattern_id))
        await self.sync.apply(PATTERN_BINDING.collection, [pattern_id])
        return pattern

    async def match(self, tenant_id: str, query: MatchQuery) -> MatchResult:
        """Match by meaning: dense search with the filters pushed down, lexical re-scoring, calibration.

        The query text (``intent + context + requirements``) is embedded and
        the index returns the ``max(limit, 20)`` closest patterns (exact cosine
        below the HNSW threshold). Each is re-scored with the hybrid similarity
        of :mod:`.relevance` and calibrated; matches under ``min_confidence``
        are dropped, the rest ordered by relevance or, for learned ranking, by
        relevance blended with the outcome record. Hits whose SQL row is gone,
        belongs to another tenant or no longer passes the filters are dropped
        after the primary-key lookup.

        Raises:
            UnavailableError: The database or the index cannot be reached.
        """
        started = time.perf_counter()
        text = " ".join(part for part in (query.intent, query.context, *query.requirements) if part)
        vector = (await self.embedder.embed([text]))[0]
        hits = await self.index.search(
            PATTERN_BINDING.collection,
            vector,
            limit=max(MATCH_CANDIDATES, query.limit),
            flt=PATTERN_BINDING.vector_filter(tenant_id, query.filters),
            score_threshold=dense_floor(query.min_confidence),
            with_payload=False,
        )
        candidates: list[SuccessPattern] = []
        similarities: list[float] = []
        if hits:
            # Primary key only, tenant checked in Python: with ``tenant_id = ?`` in the query the
            # planner walked the tenant's whole ix_success_patterns_tenant_created range. One Core
            # statement on the loop's own SQLite connection (Database.read inline), not an ORM unit of work.
            ids = [h.id for h in hits]
            rows = await self.db.read(lambda conn: rows_by_id(conn, ids), inline=True)
            by_id = {r.pattern_id: _to_domain(r) for r in rows if r.tenant_id == tenant_id}
            for hit in hits:
                pattern = by_id.get(hit.id)
                if pattern is not None and _passes(pattern, query.filters):
                    candidates.append(pattern)
                    similarities.append(float(hit.score))
        scored = rank_matches(query.intent, candidates, similarities, query.ranking)
        matches = [
            PatternMatch(m.pattern, m.confidence, recommendations(m.pattern.execution_trace), m.similarity, m.rank)
            for m in scored
            if m.confidence >= query.min_confidence
        ][: query.limit]
        return MatchResult(
            matches=tuple(matches),
            query_time_ms=(time.perf_counter() - started) * 1000.0,
            embedding_model=self.embedder.model_id,
        )
