"""Domain types of learning: success patterns, their matching and their pages.

Field names keep the seed's names (``PATTERN_LEARNING_QUICK_START.md``: the 18
columns of ``success_patterns``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar


class SuccessPatternStatus(enum.StrEnum):
    """Lifecycle status of a success pattern (seed: active, deprecated, draft, archived)."""

    ACTIVE = "active"
    DEPRECATED = "deprecated"
    DRAFT = "draft"
    ARCHIVED = "archived"


# ---------------------------------------------------------------------------
# Success patterns (the learning store)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SuccessPattern:
    """A success pattern: the seed's 18 columns plus tenant, context and quality score.

    Attributes:
        pattern_id: UUID text (primary key).
        tenant_id: Owner tenant.
        pattern_type: Category, 1-100 characters.
        name: Unique per tenant.
        description: Free text.
        version: >= 1.
        parent_pattern_id: The pattern this evolved from, or ``None``.
        context_hash: SHA-256 hex of ``json.dumps(context, sort_keys=True)``.
        execution_trace: JSON object; ``steps`` (list of strings) become recommendations.
        success_criteria: JSON object.
        quality_metrics: JSON object.
        performance_data: JSON object.
        tags: Tags.
        status: Lifecycle status.
        created_at: Creation time (UTC).
        updated_at: Last update time (UTC).
        last_matched_at: Last recorded outcome (UTC), or ``None``.
        match_count: Recorded outcomes, >= 0.
        success_rate: Running success fraction in [0, 1], or ``None``.
        context: The context that was hashed.
        quality_score: See :func:`quality_score`.
    """

    pattern_id: str
    tenant_id: str
    pattern_type: str
    name: str
    description: str
    version: int
    parent_pattern_id: str | None
    context_hash: str
    execution_trace: Mapping[str, Any]
    success_criteria: Mapping[str, Any]
    quality_metrics: Mapping[str, Any]
    performance_data: Mapping[str, Any]
    tags: tuple[str, ...]
    status: SuccessPatternStatus
    created_at: datetime
    updated_at: datetime
    last_matched_at: datetime | None
    match_count: int
    success_rate: float | None
    context: Mapping[str, Any]
    quality_score: float


@dataclass(frozen=True, slots=True)
class SuccessPatternInput:
    """Fields a caller sets when creating a success pattern (validated by the API layer)."""

    pattern_type: str
    name: str
    description: str = ""
    version: int | None = None  # None: 1, or the parent's version + 1
    parent_pattern_id: str | None = None
    execution_trace: Mapping[str, Any] = field(default_factory=dict)
    success_criteria: Mapping[str, Any] = field(default_factory=dict)
    quality_metrics: Mapping[str, Any] = field(default_factory=dict)
    performance_data: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    status: SuccessPatternStatus = SuccessPatternStatus.ACTIVE
    context: Mapping[str, Any] = field(default_factory=dict)
    success_rate: float | None = None


#: Fields ``UpdateSuccessPattern`` may change (the update mask's vocabulary).
UPDATABLE_SUCCESS_PATTERN_FIELDS = frozenset(
    {
        "pattern_type",
        "name",
        "description",
        "version",
        "parent_pattern_id",
        "execution_trace",
        "success_criteria",
        "quality_metrics",
        "performance_data",
        "tags",
        "status",
        "context",
        "success_rate",
    }
)


def quality_score(quality_metrics: Mapping[str, Any]) -> float:
    """Quality score of a success pattern, in [0, 1].

    The mean of the numeric (non-boolean) values of ``quality_metrics`` that lie
    in [0, 1] (fractions such as ``accuracy`` or ``reliability``); values
    outside that range (``latency_p99_ms``) are measurements, not scores, and
    are left out. 0.0 when no value qualifies.

    Example: ``{"accuracy": 0.95, "latency_p99_ms": 45, "reliability": 0.99}`` → 0.97.
    """
    values = [
        float(v)
        for v in quality_metrics.values()
        if isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= float(v) <= 1.0
    ]
    return sum(values) / len(values) if values else 0.0


@dataclass(frozen=True, slots=True)
class MatchFilters:
    """Filters of ``MatchPatterns``, pushed down to the vector index.

    Attributes:
        pattern_types: Only these pattern types (empty = all).
        statuses: Only these statuses (empty = ``ACTIVE``).
        tags: Only patterns with at least one of these tags (empty = all).
        min_quality_score: ``quality_score`` >= this.
        min_success_rate: ``success_rate`` >= this (patterns without a rate fail it).
    """

    pattern_types: tuple[str, ...] = ()
    statuses: tuple[SuccessPatternStatus, ...] = ()
    tags: tuple[str, ...] = ()
    min_quality_score: float | None = None
    min_success_rate: float | None = None


class MatchRanking(enum.StrEnum):
    """How ``MatchPatterns`` orders its matches."""

    RELEVANCE = "relevance"
    LEARNED = "learned"


@dataclass(frozen=True, slots=True)
class MatchQuery:
    """A ``MatchPatterns`` query.

    Attributes:
        intent: 1-1000 characters.
        context: Free text embedded with the intent.
        requirements: Embedded with the intent.
        filters: Index filters.
        limit: 1-100.
        min_confidence: Threshold on the calibrated relevance, in [0, 1].
        ranking: How matches are ordered.
    """

    intent: str
    context: str = ""
    requirements: tuple[str, ...] = ()
    filters: MatchFilters = MatchFilters()
    limit: int = 10
    min_confidence: float = 0.3
    ranking: MatchRanking = MatchRanking.RELEVANCE


@dataclass(frozen=True, slots=True)
class PatternMatch:
    """One match.

    Attributes:
        pattern: The stored pattern.
        confidence_score: Calibrated relevance in [0, 1] (Platt scaling of ``similarity``).
        recommendations: Steps from its execution trace.
        similarity: Raw cosine of query and pattern, in [-1, 1].
        ranking_score: What the matches are ordered by (``confidence_score`` for
            relevance ranking, the outcome-aware blend for learned ranking).
    """

    pattern: SuccessPattern
    confidence_score: float
    recommendations: tuple[str, ...]
    similarity: float = 0.0
    ranking_score: float = 0.0


@dataclass(frozen=True, slots=True)
class MatchResult:
    """Result of ``MatchPatterns``.

    Attributes:
        matches: Best first.
        query_time_ms: Time spent, milliseconds.
        embedding_model: Model id that embedded the query.
    """

    matches: tuple[PatternMatch, ...]
    query_time_ms: float
    embedding_model: str


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class KeysetCursor:
    """A position in a list ordered newest first (ties by id, descending): just after this item.

    The API turns it into and out of an opaque ``page_token``
    (:mod:`pattern_service.api.paging`); a store takes and returns only this.

    Attributes:
        created_at: ``created_at`` of the last item of the previous page, as stored.
        id: Its id (the tie-breaker).
        rank: Its leading sort value when the list is ordered by something before the time
            (a memory's ``importance`` in ``ListMemories`` ordered by importance); else ``None``.
    """

    created_at: datetime
    id: str
    rank: float | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list.

    Attributes:
        items: The page.
        next_cursor: Where the next page starts; ``None`` on the last page.
        total_size: Items matching the filter across all pages.
    """

    items: Sequence[T]
    next_cursor: KeysetCursor | None
    total_size: int
