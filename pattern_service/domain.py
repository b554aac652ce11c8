"""Domain types shared by the engine, the stores and the API layer.

Plain frozen dataclasses and string enums, free of protobuf and SQLAlchemy, so
that each layer converts at its own edge. Field names keep the seeds' names
(``PATTERN_SERVICE_API.md``: ``PatternDefinition``, ``ExecutionResult``,
``RoutingDecision``; ``PATTERN_LEARNING_QUICK_START.md``: the 18 columns of
``success_patterns``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

DEFAULT_TENANT = "default"


class PatternType(enum.StrEnum):
    """Execution path of a pattern (seed ``PatternType``)."""

    INFRASTRUCTURE = "infrastructure"
    MEMORY = "memory"
    HYBRID = "hybrid"


class ExecutionMode(enum.StrEnum):
    """How the router chooses among paths (seed ``ExecutionMode``)."""

    FAST = "fast"
    BALANCED = "balanced"
    COMPREHENSIVE = "comprehensive"


class SuccessPatternStatus(enum.StrEnum):
    """Lifecycle status of a success pattern (seed: active, deprecated, draft, archived)."""

    ACTIVE = "active"
    DEPRECATED = "deprecated"
    DRAFT = "draft"
    ARCHIVED = "archived"


class MemoryOperation(enum.StrEnum):
    """Operations a memory pattern can name in ``metadata.operation``."""

    RECALL = "recall"
    STORE = "store"
    SEARCH_BY_TAG = "search_by_tag"
    FILTER_BY_IMPORTANCE = "filter_by_importance"
    RECENT = "recent"
    AGGREGATE = "aggregate"

    @property
    def is_write(self) -> bool:
        """Whether the operation changes stored data (never cached)."""
        return self is MemoryOperation.STORE


@dataclass(frozen=True, slots=True)
class PatternDefinition:
    """A registered trigger pattern (seed ``PatternDefinition`` plus description and examples).

    Attributes:
        name: Unique name, ``[a-z][a-z0-9_]{0,99}``.
        pattern_type: Execution path.
        trigger_pattern: RE2 regex matched case-insensitively, or ``None`` when
            the pattern is matched by its examples only.
        cost_tokens: Token cost of the pattern's own path (0-100,000).
        priority: Higher is tried first (0-100).
        cache_ttl: Seconds a result may be cached; 0 = never (a write is always 0).
            The API fills an unset TTL with the server default (``TMWS_CACHE_TTL``).
        metadata: ``tool`` (infrastructure, hybrid), ``operation`` (memory,
            hybrid) and free-form keys. Treated as read-only.
        description: Human-readable description.
        examples: Example utterances for semantic matching.
        create_time: When first registered (set by the store).
        update_time: When last registered or replaced (set by the store).
        similarity_threshold: Minimum hybrid similarity at which the pattern is
            chosen by meaning (and a trigger match of it confirmed), in [0, 1];
            ``None`` = the registry's global threshold. Set by ``FitRouting``.
    """

    name: str
    pattern_type: PatternType
    trigger_pattern: str | None
    cost_tokens: int
    priority: int = 0
    cache_ttl: int = 300
    metadata: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    examples: tuple[str, ...] = ()
    create_time: datetime | None = None
    update_time: datetime | None = None
    similarity_threshold: float | None = None

    @property
    def tool(self) -> str | None:
        """The tool an infrastructure or hybrid pattern runs."""
        value = self.metadata.get("tool")
        return value if isinstance(value, str) else None

    @property
    def operation(self) -> MemoryOperation | None:
        """The memory operation a memory or hybrid pattern runs."""
        value = self.metadata.get("operation")
        try:
            return MemoryOperation(value) if isinstance(value, str) else None
        except ValueError:
            return None

    @property
    def is_write(self) -> bool:
        """Whether executing this pattern writes (such results are never cached)."""
        op = self.operation
        return op is not None and op.is_write


# ---------------------------------------------------------------------------
# Memories
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewMemory:
    """A memory to store.

    Attributes:
        tenant_id: Owner tenant.
        content: The text remembered (1-20,000 characters); it is what recall embeds.
        agent_id: Agent that stored it (e.g. ``artemis``), or ``None``.
        memory_type: Free category, default ``general``.
        tags: Tags (lower-cased, unique).
        importance: In [0, 1].
        metadata: JSON-compatible extra data (e.g. a stored plan).
        expire_at: When it expires (UTC), or ``None`` for never.
    """

    tenant_id: str
    content: str
    agent_id: str | None = None
    memory_type: str = "general"
    tags: tuple[str, ...] = ()
    importance: float = 0.5
    metadata: Mapping[str, Any] = field(default_factory=dict)
    expire_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Memory:
    """A stored memory.

    Attributes:
        memory_id: UUID text.
        score: Cosine similarity to the recall query in [0, 1] (``None`` for
            non-semantic reads).
        (other fields as :class:`NewMemory`)
        created_at: Creation time (UTC).
        updated_at: Last update time (UTC); ``None`` when not loaded.
        expire_at: Expiry time (UTC), or ``None`` for never.
    """

    memory_id: str
    tenant_id: str
    content: str
    agent_id: str | None
    memory_type: str
    tags: tuple[str, ...]
    importance: float
    metadata: Mapping[str, Any]
    created_at: datetime
    score: float | None = None
    updated_at: datetime | None = None
    expire_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class MemoryFilter:
    """Filters applied by every memory read, all optional and combined with AND.

    Attributes:
        agent_id: Only memories stored by this agent.
        tags: Only memories carrying at least one of these tags.
        memory_type: Only this memory type.
        min_importance: Only memories with importance >= this.
        since: Only memories created at or after this time (UTC).
        until: Only memories created at or before this time (UTC).
        tags_all: Only memories carrying every one of these tags.
        max_importance: Only memories with importance <= this.
    """

    agent_id: str | None = None
    tags: tuple[str, ...] = ()
    memory_type: str | None = None
    min_importance: float | None = None
    since: datetime | None = None
    until: datetime | None = None
    tags_all: tuple[str, ...] = ()
    max_importance: float | None = None


@dataclass(frozen=True, slots=True)
class MemoryAggregate:
    """Counts over the memories that pass a filter.

    Attributes:
        total: Number of memories.
        by_type: Count per memory type.
        top_tags: Up to 10 (tag, count) pairs, most frequent first.
        mean_importance: Mean importance, or 0 when there are none.
        newest: Creation time of the newest memory, if any.
    """

    total: int
    by_type: Mapping[str, int]
    top_tags: tuple[tuple[str, int], ...]
    mean_importance: float
    newest: datetime | None


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
class Page(Generic[T]):
    """One page of a list.

    Attributes:
        items: The page.
        next_page_token: Opaque token for the next page, ``""`` on the last.
        total_size: Items matching the filter across all pages.
    """

    items: Sequence[T]
    next_page_token: str
    total_size: int


# ---------------------------------------------------------------------------
# Routing and execution results (seed ``RoutingDecision``, ``ExecutionResult``)
# ---------------------------------------------------------------------------


class MatchSource(enum.StrEnum):
    """How the router found the pattern it chose."""

    EXACT_NAME = "exact_name"
    TRIGGER = "trigger"
    SEMANTIC = "semantic"
    KEYWORD = "keyword"


@dataclass(frozen=True, slots=True)
class RouteAlternative:
    """A candidate the router did not choose.

    Attributes:
        pattern_type: Path of the candidate.
        pattern_name: Its pattern.
        score: In [0, 1], same scale as ``RoutingDecision.confidence``.
        estimated_cost: Tokens had it been chosen.
        raw_score: Uncalibrated hybrid similarity, as ``RoutingDecision.raw_score``.
    """

    pattern_type: PatternType
    pattern_name: str
    score: float
    estimated_cost: int
    raw_score: float = 0.0


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """Which path a query takes and why.

    Attributes:
        pattern_type: The path that executes (after the mode was applied).
        pattern_name: The pattern that executes.
        confidence: Calibrated probability in [0, 1] that the decision is right
            (Platt scaling of ``raw_score`` per match source; 1 for an exact name).
        reasoning: Human-readable explanation.
        estimated_cost: Tokens of the chosen path.
        alternative_routes: Other candidates, best first.
        match_source: How the pattern was found.
        raw_score: Uncalibrated hybrid similarity of query and pattern, in [0, 1]
            (:mod:`pattern_service.engine.scoring`; 1 for an exact name).
    """

    pattern_type: PatternType
    pattern_name: str
    confidence: float
    reasoning: str
    estimated_cost: int
    alternative_routes: tuple[RouteAlternative, ...]
    match_source: MatchSource
    raw_score: float = 0.0


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """The outcome of one execution (seed ``ExecutionResult``).

    Attributes:
        pattern_name: Pattern that ran.
        pattern_type: Path actually executed.
        success: Whether every part succeeded.
        result: JSON-compatible result data (treat as read-only).
        execution_time_ms: Server wall time, milliseconds.
        tokens_used: Cost of the path executed; 0 on a cache hit.
        cache_hit: Served from cache.
        error: Error message when ``success`` is false.
        metadata: JSON-compatible execution metadata.
        routing: The decision taken.
        cache_entry: On a cache hit, the identity of the cache entry it came
            from (the same object for every hit of that entry, ``None``
            otherwise): a transport may memoize its encoding of ``result`` and
            ``metadata`` by it. Not compared.
        cache_layer: On a cache hit, the layer that answered: ``"local"`` (the
            in-process layer) or ``"redis"``; ``None`` otherwise. Not compared.
    """

    pattern_name: str
    pattern_type: PatternType
    success: bool
    result: Mapping[str, Any]
    execution_time_ms: float
    tokens_used: int
    cache_hit: bool
    error: str | None
    metadata: Mapping[str, Any]
    routing: RoutingDecision
    cache_entry: object | None = field(default=None, compare=False, repr=False)
    cache_layer: str | None = field(default=None, compare=False)
