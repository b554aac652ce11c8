"""Interfaces of the stores the engine and the API layer use.

SQL (SQLAlchemy 2 async; SQLite via aiosqlite by default, PostgreSQL via
asyncpg in production) is the source of truth. Vectors live in a
:class:`~pattern_service.store.vectors.base.VectorIndex`, kept in sync by a
transactional outbox: every write that changes a vector adds an outbox row in
the same transaction; after commit the write applies it at once, and a
background pass retries what failed, so an acknowledged write is never lost.

Every method is scoped by ``tenant_id`` where data belongs to a tenant: no
call ever reads or changes another tenant's rows or vectors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pattern_service.domain import (
    KeysetCursor,
    MatchQuery,
    MatchResult,
    Memory,
    MemoryAggregate,
    MemoryFilter,
    NewMemory,
    Page,
    PatternDefinition,
    PatternType,
    SuccessPattern,
    SuccessPatternInput,
    SuccessPatternStatus,
)


class PatternDefinitionStore(Protocol):
    """Persistent pattern definitions (global, shared by all tenants) and the registry version."""

    async def load(self) -> tuple[list[PatternDefinition], int]:
        """All stored definitions and the current registry version."""
        ...

    async def load_state(self) -> tuple[list[PatternDefinition], int, dict[str, Any] | None]:
        """All stored definitions, the registry version and the stored confidence calibration (one read)."""
        ...

    async def is_seeded(self) -> bool:
        """Whether the default set was ever loaded (so a deleted default stays deleted)."""
        ...

    async def apply_batch(
        self,
        definitions: Sequence[PatternDefinition],
        *,
        mark_seeded: bool = False,
        calibration: Mapping[str, Any] | None = None,
    ) -> tuple[list[PatternDefinition], int, int, int]:
        """Insert or replace definitions by name in one transaction.

        Args:
            definitions: Already validated, unique names.
            mark_seeded: Also record that the default set has been loaded.
            calibration: Also replace the stored confidence calibration (same transaction).

        Returns:
            (stored definitions with timestamps, created count, replaced count,
            new registry version).
        """
        ...

    async def delete(self, name: str) -> int:
        """Delete one definition; returns the new registry version.

        Raises:
            NotFoundError: No definition has that name.
        """
        ...

    async def version(self) -> int:
        """The current registry version (for replicas to notice changes)."""
        ...


class MemoryStore(Protocol):
    """Agent memories: stored in SQL, embedded in the ``memory_embeddings`` vector collection."""

    async def store(self, memory: NewMemory) -> Memory:
        """Store a memory; returns it once SQL has committed (the vector follows via the outbox)."""
        ...

    async def recall(self, tenant_id: str, query: str, flt: MemoryFilter, limit: int) -> list[Memory]:
        """Memories closest in meaning to ``query`` (``Memory.score`` set), best first."""
        ...

    async def search_by_tag(self, tenant_id: str, tags: Sequence[str], flt: MemoryFilter, limit: int) -> list[Memory]:
        """Memories carrying any of ``tags``, newest first."""
        ...

    async def filter_by_importance(
        self, tenant_id: str, min_importance: float, flt: MemoryFilter, limit: int
    ) -> list[Memory]:
        """Memories with importance >= ``min_importance``, most important first."""
        ...

    async def recent(self, tenant_id: str, flt: MemoryFilter, limit: int) -> list[Memory]:
        """Memories newest first (``flt.since``/``until`` bound the window)."""
        ...

    async def aggregate(self, tenant_id: str, flt: MemoryFilter) -> MemoryAggregate:
        """Counts over the memories passing ``flt``."""
        ...

    async def count(self, tenant_id: str) -> int:
        """Number of memories of the tenant."""
        ...


class LearningStore(Protocol):
    """Success patterns (seed ``PATTERN_LEARNING_QUICK_START.md``), searchable by meaning."""

    async def create(self, tenant_id: str, data: SuccessPatternInput) -> SuccessPattern:
        """Create a pattern.

        Raises:
            AlreadyExistsError: The tenant has a pattern of that name.
            NotFoundError: ``parent_pattern_id`` names no pattern of the tenant.
        """
        ...

    async def get(self, tenant_id: str, pattern_id: str) -> SuccessPattern:
        """Raises: NotFoundError."""
        ...

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
        """Newest first, from just after ``after`` (``None``: the first page); every given filter
        must hold (``tags``: at least one of them). The page's ``next_cursor`` continues it."""
        ...

    async def update(self, tenant_id: str, pattern_id: str, changes: Mapping[str, Any]) -> SuccessPattern:
        """Apply ``changes`` (keys from ``UPDATABLE_SUCCESS_PATTERN_FIELDS``, values validated).

        A changed ``description``, ``execution_trace`` or ``success_criteria``
        increments ``version`` unless ``changes`` sets it.

        Raises:
            NotFoundError, AlreadyExistsError (renamed onto a taken name).
        """
        ...

    async def delete(self, tenant_id: str, pattern_id: str, *, force: bool = False) -> tuple[str, ...]:
        """Delete; with ``force`` detach its children first. Returns the detached children's ids.

        Raises:
            NotFoundError, FailedPreconditionError (``HAS_CHILD_PATTERNS``: it has children, no ``force``).
        """
        ...

    async def record_outcome(self, tenant_id: str, pattern_id: str, success: bool) -> SuccessPattern:
        """``match_count += 1``; ``success_rate`` = running mean of outcomes; ``last_matched_at`` = now.

        Raises:
            NotFoundError.
        """
        ...

    async def match(self, tenant_id: str, query: MatchQuery) -> MatchResult:
        """Semantic match with filters pushed down to the index, joined with SQL rows."""
        ...


__all__ = ["LearningStore", "MemoryStore", "PatternDefinitionStore", "PatternType"]
