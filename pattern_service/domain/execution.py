"""Domain types of execution: pattern definitions, routing decisions and execution results.

Plain frozen dataclasses and string enums, free of protobuf and SQLAlchemy, so
that each layer converts at its own edge. Field names keep the seed's names
(``PATTERN_SERVICE_API.md``: ``PatternDefinition``, ``ExecutionResult``,
``RoutingDecision``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
