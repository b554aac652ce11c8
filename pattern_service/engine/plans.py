"""Execution plans: the path a chosen pattern takes under each execution mode, and its cost.

Modes decide the path:

- infrastructure: FAST its tool (``cost``); BALANCED the same; COMPREHENSIVE
  tool + memory ``recall`` of the subject (``cost + 100``).
- memory read: FAST refused (``FailedPreconditionError``, reason
  ``MODE_EXCLUDES_PATH``); BALANCED its operation (``cost``); COMPREHENSIVE
  operation + the ``match_patterns`` tool (``cost + 50``).
- hybrid: FAST its tool only (``min(cost, 50)``); BALANCED and COMPREHENSIVE
  tool + operation (``cost``).
- write (``store``): as defined in every mode (``cost``): modes choose among
  read paths.

The added 100 / 50 are the seed's base costs of a memory / infrastructure path
(``PATTERN_SERVICE_README.md`` quick reference).
"""

from __future__ import annotations

from dataclasses import dataclass

from pattern_service.domain import ExecutionMode, MemoryOperation, PatternDefinition, PatternType, RoutingDecision

INFRASTRUCTURE_BASE_COST = 50
MEMORY_BASE_COST = 100
UPGRADE_TOOL = "match_patterns"


@dataclass(frozen=True, slots=True)
class PathPlan:
    """One way to execute a pattern.

    Attributes:
        pattern_type: The path that runs.
        tool: Tool of the infrastructure part, or ``None``.
        operation: Operation of the memory part, or ``None``.
        cost: Tokens of this path.
    """

    pattern_type: PatternType
    tool: str | None
    operation: MemoryOperation | None
    cost: int


@dataclass(frozen=True, slots=True)
class ExecutionPlan:
    """What the engine executes for a query.

    Attributes:
        decision: The routing decision (what ``Route`` returns).
        definition: The chosen pattern.
        path: The parts that run.
        subject: The query without the matched trigger text.
        baseline_cost: Tokens of the definition's ``COMPREHENSIVE`` path (its own
            path when that mode excludes it): what the statistics count a cheaper
            path or a cache hit as saving against.
    """

    decision: RoutingDecision
    definition: PatternDefinition
    path: PathPlan
    subject: str
    baseline_cost: int

    @property
    def is_write(self) -> bool:
        """Whether the memory part writes."""
        return self.path.operation is not None and self.path.operation.is_write

    @property
    def reads_memory(self) -> bool:
        """Whether the result depends on the tenant's memories (cache keys then carry its generation)."""
        return self.path.operation is not None and not self.path.operation.is_write


def plan_path(d: PatternDefinition, mode: ExecutionMode) -> PathPlan | None:
    """The path ``d`` takes under ``mode`` (see the module table); ``None`` when the mode excludes it."""
    tool = d.tool if d.pattern_type is not PatternType.MEMORY else None
    operation = d.operation if d.pattern_type is not PatternType.INFRASTRUCTURE else None
    own = PathPlan(d.pattern_type, tool, operation, d.cost_tokens)
    if d.is_write or mode is ExecutionMode.BALANCED:
        return own
    if mode is ExecutionMode.FAST:
        if d.pattern_type is PatternType.INFRASTRUCTURE:
            return PathPlan(PatternType.INFRASTRUCTURE, d.tool, None, d.cost_tokens)
        if d.pattern_type is PatternType.HYBRID:
            return PathPlan(PatternType.INFRASTRUCTURE, d.tool, None, min(d.cost_tokens, INFRASTRUCTURE_BASE_COST))
        return None
    if d.pattern_type is PatternType.INFRASTRUCTURE:
        return PathPlan(PatternType.HYBRID, d.tool, MemoryOperation.RECALL, d.cost_tokens + MEMORY_BASE_COST)
    if d.pattern_type is PatternType.MEMORY:
        return PathPlan(PatternType.HYBRID, UPGRADE_TOOL, d.operation, d.cost_tokens + INFRASTRUCTURE_BASE_COST)
    return own
