"""The hybrid decision router: which pattern runs, on which path, with what confidence and cost.

Selection (first that applies):

1. **Exact name** — the normalized query equals a pattern name: confidence 1.0.
2. **Trigger** — the highest-priority matching trigger (then name):
   ``confidence = 0.75 + 0.25 × min(1, matched characters / query characters)``
   (both on the normalized query), so in [0.75, 1.0].
3. **Semantic** — the pattern whose best example has the highest cosine with
   the query, if it reaches the threshold: ``confidence = cosine``.
4. **Keyword** — the original router's decision (REFERENCE.md: keyword sets,
   word-bounded; "memories exist" = ``MemoryStore.count(tenant) > 0``) picks a
   type, except that memory keywords alone always choose memory (the original
   also required existing memories, which turned "recall …" on an empty store
   into a tool call); the pattern of that type with the best example cosine runs (ties:
   priority, then name). ``confidence = 0.2 + 0.5 × supporting hits / all
   keyword hits`` (0.2 with no keyword), at most 0.7: always below a trigger.

Modes (DESIGN.md §1; REFERENCE.md: the original ignored the mode) decide the path:

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
(``PATTERN_SERVICE_README.md`` quick reference). In FAST mode the semantic and
keyword fallbacks only consider infrastructure and hybrid patterns.

Alternatives: the other trigger matches (their trigger score), the top semantic
neighbours (their cosine), and the chosen pattern under the paths the other
modes would take (``0.9 × confidence``), best first, at most 5.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache

from pattern_service.domain import (
    ExecutionMode,
    MatchSource,
    MemoryOperation,
    PatternDefinition,
    PatternType,
    RouteAlternative,
    RoutingDecision,
)
from pattern_service.engine.executors import tags_in
from pattern_service.engine.registry import MatchOutcome, PatternRegistry
from pattern_service.engine.text import subject_of
from pattern_service.errors import FailedPreconditionError, NotFoundError
from pattern_service.store.base import MemoryStore

INFRASTRUCTURE_BASE_COST = 50
MEMORY_BASE_COST = 100
UPGRADE_TOOL = "match_patterns"
MAX_ALTERNATIVES = 5
OTHER_PATH_FACTOR = 0.9

KEYWORDS: dict[PatternType, re.Pattern[str]] = {
    PatternType.INFRASTRUCTURE: re.compile(r"\b(tool|function|command|execute|run|install|setup)\b"),
    PatternType.MEMORY: re.compile(r"\b(remember|recall|memory|history|past|previous|stored)\b"),
    PatternType.HYBRID: re.compile(r"\b(analyze|compare|find|search|similar|related)\b"),
}


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


def trigger_confidence(span_length: int, query_length: int) -> float:
    """``0.75 + 0.25 × min(1, span_length / query_length)``, in [0.75, 1]."""
    return 0.75 + 0.25 * min(1.0, span_length / max(1, query_length))


def keyword_decision(normalized: str, memories_exist: bool) -> tuple[PatternType, float, str]:
    """The original router's keyword decision with a scored confidence (see the module docstring).

    Args:
        normalized: Normalized query.
        memories_exist: Whether the tenant has any memory.

    Returns:
        (type, confidence in [0.2, 0.7], reasoning).
    """
    hits = {t: len(rx.findall(normalized)) for t, rx in KEYWORDS.items()}
    infra, memory, hybrid = hits[PatternType.INFRASTRUCTURE], hits[PatternType.MEMORY], hits[PatternType.HYBRID]
    total = infra + memory + hybrid
    if infra and not memory and not hybrid:
        chosen, support, why = PatternType.INFRASTRUCTURE, infra, "only infrastructure keywords"
    elif memory and not infra and not hybrid:
        # Unlike the original (memory only when memories exist): a caller who
        # asks to recall gets the memory path, and an empty answer if there is none.
        chosen, support, why = PatternType.MEMORY, memory, "only memory keywords"
    elif hybrid or (memory and infra):
        chosen, support, why = PatternType.HYBRID, total, "hybrid keywords, or memory and infrastructure keywords"
    elif memories_exist:
        chosen, support, why = PatternType.MEMORY, memory, "no decisive keywords; the tenant has memories"
    else:
        chosen, support, why = PatternType.INFRASTRUCTURE, infra, "no decisive keywords; the tenant has no memories"
    confidence = 0.2 + 0.5 * support / total if total else 0.2
    counts = ", ".join(f"{t.value} {n}" for t, n in hits.items())
    return chosen, min(0.7, confidence), f"keyword decision ({counts}): {why}"


class HybridDecisionRouter:
    """Routes queries to a pattern and a path (seed ``HybridDecisionRouter``).

    Args:
        registry: The pattern registry.
        memory_store: Used for "memories exist" in the keyword fallback.
    """

    #: Plans of trigger and exact-name matches kept (see :meth:`plan`).
    PLAN_CACHE_SIZE = 4096

    def __init__(self, registry: PatternRegistry, memory_store: MemoryStore) -> None:
        self._registry = registry
        self._memories = memory_store
        self._total = 0
        self._by_type = {t.value: 0 for t in PatternType}
        self._plans: LRUCache[tuple[str, ExecutionMode], tuple[MatchOutcome, ExecutionPlan]] = LRUCache(
            self.PLAN_CACHE_SIZE
        )
        registry.add_swap_listener(lambda _version: self._plans.clear())

    async def route(
        self, query: str, mode: ExecutionMode, context: Mapping[str, Any], tenant_id: str
    ) -> RoutingDecision:
        """The routing decision for ``query`` (see :meth:`plan`)."""
        return (await self.plan(query, mode, context, tenant_id)).decision

    async def plan(self, query: str, mode: ExecutionMode, context: Mapping[str, Any], tenant_id: str) -> ExecutionPlan:
        """Choose the pattern and the path for ``query`` under ``mode``.

        Args:
            query: Trimmed, non-empty query.
            mode: Execution mode.
            context: Caller context (not used for the choice; kept for the seed's signature).
            tenant_id: Caller tenant (for "memories exist").

        Raises:
            FailedPreconditionError: ``MODE_EXCLUDES_PATH``: FAST mode and the
                query names a memory read.
            NotFoundError: ``NO_MATCHING_PATTERN``: the registry is empty (or, in
                FAST mode, holds no infrastructure or hybrid pattern).

        A plan chosen by a trigger or an exact name depends only on the query,
        the mode and the registry's match outcome, so it is kept per
        ``(query, mode)`` with the outcome it came from, and reused while the
        registry returns that same outcome object (its match cache is cleared
        on every registry change). Semantic and keyword choices also depend on
        the context and on the tenant's memories and are planned every time.
        """
        outcome = await self._registry.match(query)
        memo = self._plans.get((query, mode))
        if memo is not None and memo[0] is outcome:
            plan = memo[1]
            self._total += 1
            self._by_type[plan.path.pattern_type.value] += 1
            return plan
        norm_len = len(outcome.normalized)
        span: tuple[int, int] | None = None
        if outcome.exact is not None:
            chosen, source, confidence = outcome.exact, MatchSource.EXACT_NAME, 1.0
            span = (0, len(query))
            why = f"the query names pattern {chosen.name!r}"
        elif outcome.triggers:
            hit = outcome.triggers[0]
            chosen, source = hit.definition, MatchSource.TRIGGER
            confidence = trigger_confidence(hit.span_length, norm_len)
            span = self._registry.trigger_span(chosen.name, query)
            why = (
                f"trigger of {chosen.name!r} (priority {chosen.priority}) matched "
                f"{hit.span_length} of {norm_len} characters"
            )
        else:
            chosen, source, confidence, why = await self._fallback(outcome, mode, query, context, tenant_id)
        path = plan_path(chosen, mode)
        if path is None:
            raise FailedPreconditionError(
                f"execution mode {mode.name} excludes the memory path of pattern {chosen.name!r}; "
                "use BALANCED or COMPREHENSIVE",
                reason="MODE_EXCLUDES_PATH",
                metadata={"execution_mode": mode.name, "pattern_name": chosen.name},
            )
        why += f"; {mode.name} runs {self._describe(chosen, path)}"
        decision = RoutingDecision(
            pattern_type=path.pattern_type,
            pattern_name=chosen.name,
            confidence=round(confidence, 6),
            reasoning=why,
            estimated_cost=path.cost,
            alternative_routes=self._alternatives(outcome, chosen, path, confidence, mode),
            match_source=source,
        )
        self._total += 1
        self._by_type[path.pattern_type.value] += 1
        baseline = (plan_path(chosen, ExecutionMode.COMPREHENSIVE) or path).cost
        plan = ExecutionPlan(decision, chosen, path, subject_of(query, span), baseline)
        if source in (MatchSource.TRIGGER, MatchSource.EXACT_NAME):
            self._plans[(query, mode)] = (outcome, plan)
        return plan

    async def _fallback(
        self, outcome: MatchOutcome, mode: ExecutionMode, query: str, context: Mapping[str, Any], tenant_id: str
    ) -> tuple[PatternDefinition, MatchSource, float, str]:
        """Semantic, then keyword choice among the patterns that can run on this query.

        A ``search_by_tag`` pattern needs a tag in the query or the context; the
        keyword guess never picks a write (only a trigger, a name or a semantic
        match can).
        """
        fast = mode is ExecutionMode.FAST
        allowed = {PatternType.INFRASTRUCTURE, PatternType.HYBRID} if fast else set(PatternType)

        def runnable(d: PatternDefinition) -> bool:
            return d.pattern_type in allowed and (
                d.operation is not MemoryOperation.SEARCH_BY_TAG or bool(tags_in(query, context))
            )

        semantic = [h for h in outcome.semantic if runnable(h.definition)]
        threshold = self._registry.semantic_threshold
        if semantic and semantic[0].score >= threshold:
            best = semantic[0]
            why = f"closest example of {best.definition.name!r} ({best.example!r}) scored {best.score:.3f}"
            return best.definition, MatchSource.SEMANTIC, max(0.0, best.score), why + f" >= {threshold}"
        if fast:
            wanted, confidence, why = keyword_decision(outcome.normalized, False)
            wanted = PatternType.INFRASTRUCTURE if wanted is PatternType.MEMORY else wanted
        else:
            wanted, confidence, why = await self._keyword(outcome.normalized, tenant_id)

        def guessable() -> Iterator[PatternDefinition]:
            """Semantic hits, then every other runnable pattern (priority order), never a write; lazily."""
            seen: set[str] = set()  # names are unique in a registry state: O(1), not dataclass equality
            for h in semantic:
                if not h.definition.is_write:
                    seen.add(h.definition.name)
                    yield h.definition
            for d in self._registry.iter_definitions():
                if d.name not in seen and not d.is_write and runnable(d):
                    yield d

        # The first guessable pattern of the wanted type, else the first guessable one; stops early.
        chosen = next((d for d in guessable() if d.pattern_type is wanted), None)
        if chosen is None:
            chosen = next(guessable(), None)
        if chosen is None:
            raise NotFoundError(
                "PatternDefinition",
                outcome.normalized,
                "no registered pattern can answer this query",
                reason="NO_MATCHING_PATTERN",
            )
        return chosen, MatchSource.KEYWORD, confidence, f"{why}; best {wanted.value} pattern {chosen.name!r}"

    async def _keyword(self, normalized: str, tenant_id: str) -> tuple[PatternType, float, str]:
        kinds = {t for t, rx in KEYWORDS.items() if rx.search(normalized)}
        needs_count = not kinds
        exist = needs_count and await self._memories.count(tenant_id) > 0
        return keyword_decision(normalized, exist)

    def _alternatives(
        self, outcome: MatchOutcome, chosen: PatternDefinition, path: PathPlan, confidence: float, mode: ExecutionMode
    ) -> tuple[RouteAlternative, ...]:
        found: dict[tuple[PatternType, str], RouteAlternative] = {}

        def add(d: PatternDefinition, p: PathPlan | None, score: float) -> None:
            if p is None or (p.pattern_type, d.name) == (path.pattern_type, chosen.name):
                return
            key = (p.pattern_type, d.name)
            if key not in found or found[key].score < score:
                found[key] = RouteAlternative(p.pattern_type, d.name, round(max(0.0, score), 6), p.cost)

        for hit in outcome.triggers:
            if hit.definition.name != chosen.name:
                score = trigger_confidence(hit.span_length, len(outcome.normalized))
                add(hit.definition, plan_path(hit.definition, mode), score)
        for sem in outcome.semantic[:MAX_ALTERNATIVES]:
            add(sem.definition, plan_path(sem.definition, mode), sem.score)
        for other in ExecutionMode:
            if other is not mode:
                add(chosen, plan_path(chosen, other), OTHER_PATH_FACTOR * confidence)
        ranked = sorted(found.values(), key=lambda a: (-a.score, a.estimated_cost, a.pattern_name))
        return tuple(ranked[:MAX_ALTERNATIVES])

    @staticmethod
    def _describe(d: PatternDefinition, path: PathPlan) -> str:
        parts = []
        if path.tool:
            parts.append(f"tool {path.tool!r}")
        if path.operation:
            parts.append(f"memory {path.operation.value!r}")
        own = d.pattern_type.value
        if path.pattern_type is d.pattern_type:
            where = f"its own {own} path"
        else:
            where = f"the {path.pattern_type.value} path instead of its own {own} path"
        return f"{where}: {' + '.join(parts)} ({path.cost} tokens)"

    def stats(self) -> dict[str, Any]:
        """Router statistics: ``total_routes``, ``routes_by_type`` (counts), ``route_distribution`` (fractions 0-1)."""
        total = self._total
        return {
            "total_routes": total,
            "routes_by_type": dict(self._by_type),
            "route_distribution": {t: (n / total if total else 0.0) for t, n in self._by_type.items()},
        }
