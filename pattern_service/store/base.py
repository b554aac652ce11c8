"""Interface of the learning store the API layer uses (the engine's own ports are in
:mod:`pattern_service.engine.ports`).

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
    Page,
    SuccessPattern,
    SuccessPatternInput,
    SuccessPatternStatus,
)


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


__all__ = ["LearningStore"]
