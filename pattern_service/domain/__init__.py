"""Domain types shared by the engine, the stores and the API layer.

Plain frozen dataclasses and string enums, free of protobuf and SQLAlchemy, so
that each layer converts at its own edge. Three modules, one per half of the
service: :mod:`.execution` (pattern definitions, routing, results),
:mod:`.memories` (what memory patterns read and write) and :mod:`.learning`
(success patterns). Everything is re-exported here: ``from pattern_service.domain
import X`` is the way to import any of them.
"""

from __future__ import annotations

from pattern_service.domain.execution import (
    DEFAULT_TENANT,
    ExecutionMode,
    ExecutionResult,
    MatchSource,
    MemoryOperation,
    PatternDefinition,
    PatternType,
    RouteAlternative,
    RoutingDecision,
)
from pattern_service.domain.learning import (
    UPDATABLE_SUCCESS_PATTERN_FIELDS,
    KeysetCursor,
    MatchFilters,
    MatchQuery,
    MatchRanking,
    MatchResult,
    Page,
    PatternMatch,
    SuccessPattern,
    SuccessPatternInput,
    SuccessPatternStatus,
    quality_score,
)
from pattern_service.domain.memories import (
    Memory,
    MemoryAggregate,
    MemoryFilter,
    NewMemory,
)

__all__ = [
    "DEFAULT_TENANT",
    "UPDATABLE_SUCCESS_PATTERN_FIELDS",
    "ExecutionMode",
    "ExecutionResult",
    "KeysetCursor",
    "MatchFilters",
    "MatchQuery",
    "MatchRanking",
    "MatchResult",
    "MatchSource",
    "Memory",
    "MemoryAggregate",
    "MemoryFilter",
    "MemoryOperation",
    "NewMemory",
    "Page",
    "PatternDefinition",
    "PatternMatch",
    "PatternType",
    "RouteAlternative",
    "RoutingDecision",
    "SuccessPattern",
    "SuccessPatternInput",
    "SuccessPatternStatus",
    "quality_score",
]
