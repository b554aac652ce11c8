r"""The hybrid decision router: which pattern runs, on which path, with what confidence and cost.

Selection (first that applies; ``raw`` is the hybrid similarity of
:mod:`.scoring`, ``confidence`` its calibration, :mod:`.calibration`):

1. **Exact name**: the normalized query equals a pattern name. Confidence 1.
2. **Trigger**: the highest-priority matching trigger (then name), confirmed
   when the query is in the registry's domain at all: the best hybrid
   similarity of any pattern reaches the trigger floor (``trigger_threshold``).
   The floor stops a regex that fires on an unrelated request ("what time
   does the hardware store close" matches ``store\s+``). A pattern without
   examples is confirmed by its trigger alone (raw = the share of the query
   its trigger covered); otherwise raw = its own hybrid similarity.
3. **Similarity**: the best runnable pattern by hybrid similarity, if it
   reaches its threshold (its ``similarity_threshold``, else the global one).
   **A guess never writes**: when that best candidate is a write, nothing runs
   (a write runs only when its trigger or its exact name matched).
4. **Keyword** (opt-in only: ``keyword_fallback`` per request or
   ``TMWS_KEYWORD_FALLBACK``): the seed router's keyword decision picks a
   type and the closest non-write pattern of it runs.
5. Otherwise **no match**: ``NotFoundError`` with reason
   ``NO_PATTERN_MATCHED`` whose metadata names the closest candidates, their
   scores and the threshold (the seed API's ``NotFoundError``).

Which path each execution mode takes, and its cost: :mod:`.plans`. In FAST
mode similarity and keyword choices only consider infrastructure and hybrid
patterns. The no-match error: :mod:`.no_match`; the keyword guess: :mod:`.keywords`.

Alternatives: the other trigger matches and the top similarity candidates
(calibrated), and the chosen pattern under the paths the other modes would
take (``0.9 × confidence``), best first, at most 5.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache

from pattern_service.calibration import RoutingCalibration
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
from pattern_service.engine.keywords import KEYWORDS, keyword_decision
from pattern_service.engine.no_match import no_match_error
from pattern_service.engine.plans import ExecutionPlan, PathPlan, plan_path
from pattern_service.engine.ports import MemoryStore
from pattern_service.engine.registry import MatchOutcome, PatternRegistry
from pattern_service.engine.scoring import Candidate
from pattern_service.engine.stats import RouterTotals
from pattern_service.engine.text import subject_of
from pattern_service.errors import FailedPreconditionError

MAX_ALTERNATIVES = 5
OTHER_PATH_FACTOR = 0.9


def trigger_confidence(span_length: int, query_length: int) -> float:
    """``0.75 + 0.25 × min(1, span_length / query_length)``, in [0.75, 1]."""
    return 0.75 + 0.25 * min(1.0, span_length / max(1, query_length))


@dataclass(frozen=True, slots=True)
class Choice:
    """A pattern the router chose, how, and with what raw score (see the module docstring)."""

    definition: PatternDefinition
    source: MatchSource
    raw: float
    why: str


class HybridDecisionRouter:
    """Routes queries to a pattern and a path (seed ``HybridDecisionRouter``).

    Args:
        registry: The pattern registry (patterns, thresholds, calibration).
        memory_store: Used for "memories exist" in the opt-in keyword guess.
        trigger_threshold: Minimum best hybrid similarity (of any pattern) that
            confirms a trigger match (``TMWS_TRIGGER_MIN_SIMILARITY``).
        keyword_fallback: Whether the keyword guess runs when nothing matched
            and the request does not say (``TMWS_KEYWORD_FALLBACK``).
        registries: The registry a tenant routes with
            (:meth:`~pattern_service.engine.registries.TenantRegistries.for_tenant`);
            default: ``registry`` for every tenant.
    """

    #: Plans of trigger and exact-name matches kept (see :meth:`plan`).
    PLAN_CACHE_SIZE = 4096

    def __init__(
        self,
        registry: PatternRegistry,
        memory_store: MemoryStore,
        *,
        trigger_threshold: float = 0.2,
        keyword_fallback: bool = False,
        registries: Callable[[str], PatternRegistry] | None = None,
    ) -> None:
        self._registry = registry
        self._for_tenant: Callable[[str], PatternRegistry] = registries or (lambda _tenant: registry)
        self._memories = memory_store
        self.trigger_threshold = trigger_threshold
        self.keyword_fallback = keyword_fallback
        self._total = 0
        self._no_match = 0
        self._by_type = {t.value: 0 for t in PatternType}
        # Keyed by (id of the registry routed with, query, mode): tenants sharing the global registry share plans.
        self._plans: LRUCache[tuple[int, str, ExecutionMode], tuple[MatchOutcome, ExecutionPlan]] = LRUCache(
            self.PLAN_CACHE_SIZE
        )
        registry.add_swap_listener(lambda _version: self._plans.clear())

    async def route(
        self,
        query: str,
        mode: ExecutionMode,
        context: Mapping[str, Any],
        tenant_id: str,
        *,
        keyword_fallback: bool | None = None,
    ) -> RoutingDecision:
        """The routing decision for ``query`` (see :meth:`plan`)."""
        return (await self.plan(query, mode, context, tenant_id, keyword_fallback=keyword_fallback)).decision

    async def plan(
        self,
        query: str,
        mode: ExecutionMode,
        context: Mapping[str, Any],
        tenant_id: str,
        *,
        keyword_fallback: bool | None = None,
    ) -> ExecutionPlan:
        """Choose the pattern and the path for ``query`` under ``mode``.

        Args:
            query: Trimmed, non-empty query.
            mode: Execution mode.
            context: Caller context (a ``search_by_tag`` pattern needs a tag in it or the query).
            tenant_id: Caller tenant: routes with the tenant's effective registry
                (and "memories exist" in the keyword guess is the tenant's).
            keyword_fallback: Allow the keyword guess; ``None`` = the router's setting.

        Raises:
            FailedPreconditionError: ``MODE_EXCLUDES_PATH``: FAST mode and the
                query names a memory read.
            NotFoundError: ``NO_PATTERN_MATCHED``: no exact name, confirmed
                trigger or similarity candidate over its threshold (or the best
                candidate is a write); the metadata names the closest candidates.

        A plan chosen by a trigger or an exact name depends only on the query,
        the mode and the registry's match outcome, so it is kept per
        ``(registry, query, mode)`` with the outcome it came from (the tenant's
        registry: tenants without a layer of their own share the global one's
        plans), and reused while that registry returns that same outcome object (its match cache is cleared
        on every registry change). Other choices also depend on the context and
        are planned every time.
        """
        registry = self._for_tenant(tenant_id)
        outcome = await registry.match(query)
        memo = self._plans.get((id(registry), query, mode))
        if memo is not None and memo[0] is outcome:
            plan = memo[1]
            self._total += 1
            self._by_type[plan.path.pattern_type.value] += 1
            return plan
        choice = self.choose(outcome, mode, query, context)
        guess = self.keyword_fallback if keyword_fallback is None else keyword_fallback
        if choice is None and guess:
            choice = await self._keyword_guess(registry, outcome, mode, query, context, tenant_id)
        if choice is None:
            self._no_match += 1
            best = self.best_candidate(outcome, mode, query, context)
            raise no_match_error(registry, outcome, best, mode=mode, trigger_threshold=self.trigger_threshold)
        chosen, source = choice.definition, choice.source
        path = plan_path(chosen, mode)
        if path is None:
            raise FailedPreconditionError(
                f"execution mode {mode.name} excludes the memory path of pattern {chosen.name!r}; "
                "use BALANCED or COMPREHENSIVE",
                reason="MODE_EXCLUDES_PATH",
                metadata={"execution_mode": mode.name, "pattern_name": chosen.name},
            )
        calibration = registry.calibration
        confidence = calibration.confidence(source.value, choice.raw)
        why = f"{choice.why}; {mode.name} runs {self._describe(chosen, path)}"
        decision = RoutingDecision(
            pattern_type=path.pattern_type,
            pattern_name=chosen.name,
            confidence=round(confidence, 6),
            reasoning=why,
            estimated_cost=path.cost,
            alternative_routes=self._alternatives(calibration, outcome, chosen, path, confidence, mode),
            match_source=source,
            raw_score=round(choice.raw, 6),
        )
        self._total += 1
        self._by_type[path.pattern_type.value] += 1
        baseline = (plan_path(chosen, ExecutionMode.COMPREHENSIVE) or path).cost
        span: tuple[int, int] | None = None
        if source is MatchSource.EXACT_NAME:
            span = (0, len(query))
        elif source is MatchSource.TRIGGER:
            span = registry.trigger_span(chosen.name, query)
        plan = ExecutionPlan(decision, chosen, path, subject_of(query, span), baseline)
        if source in (MatchSource.TRIGGER, MatchSource.EXACT_NAME):
            self._plans[(id(registry), query, mode)] = (outcome, plan)
        return plan

    def choose(
        self,
        outcome: MatchOutcome,
        mode: ExecutionMode,
        query: str,
        context: Mapping[str, Any],
        threshold: Callable[[PatternDefinition], float] | None = None,
    ) -> Choice | None:
        """The exact-name, confirmed-trigger or similarity choice for a match outcome; ``None`` = no match.

        Pure: counts nothing (``EvaluateRouting`` and ``FitRouting`` use it too).

        Args:
            outcome: The registry's match outcome of the query.
            mode: Execution mode (FAST considers no memory read by similarity).
            query: The query as sent (for tags in it).
            context: Caller context (for tags in it).
            threshold: Per-pattern similarity threshold; default the registry's
                (a fit evaluates candidate thresholds through this).
        """
        pinned = self.pinned_choice(outcome, query, context)
        if pinned is not None:
            return pinned
        threshold_of = threshold or self._registry.threshold
        best = self.best_candidate(outcome, mode, query, context)
        if best is None or best.definition.is_write:
            return None
        limit = threshold_of(best.definition)
        if best.score < limit:
            return None
        why = (
            f"hybrid similarity of {best.definition.name!r} {best.score:.3f} >= {limit:.3f} "
            f"(closest example {best.example!r})"
        )
        return Choice(best.definition, MatchSource.SEMANTIC, best.score, why)

    def pinned_choice(self, outcome: MatchOutcome, query: str, context: Mapping[str, Any]) -> Choice | None:
        """The exact-name or confirmed-trigger choice, which no similarity threshold affects; ``None`` if neither."""
        if outcome.exact is not None:
            return Choice(outcome.exact, MatchSource.EXACT_NAME, 1.0, f"the query names pattern {outcome.exact.name!r}")
        norm_len = len(outcome.normalized)
        # A trigger is confirmed when the query is about something the registry handles at all:
        # some pattern's hybrid similarity reaches the trigger floor (on the routing evaluation data
        # this refuses as many out-of-scope trigger hits as the triggered pattern's own score does,
        # without refusing "store <content unlike the examples>").
        in_domain = not outcome.candidates or outcome.candidates[0].score >= self.trigger_threshold
        for hit in outcome.triggers:
            d = hit.definition
            if d.operation is MemoryOperation.SEARCH_BY_TAG and not tags_in(query, context):
                continue  # its trigger fired, but the query names no tag it could search for
            scored = outcome.trigger_scores.get(d.name)
            why = f"trigger of {d.name!r} (priority {d.priority}) matched {hit.span_length} of {norm_len} characters"
            if scored is None:  # no examples to score it with: the trigger decides
                return Choice(d, MatchSource.TRIGGER, trigger_confidence(hit.span_length, norm_len), why)
            if in_domain:
                return Choice(d, MatchSource.TRIGGER, scored.score, f"{why}, similarity {scored.score:.3f}")
        return None

    def best_candidate(
        self, outcome: MatchOutcome, mode: ExecutionMode, query: str, context: Mapping[str, Any]
    ) -> Candidate | None:
        """The best similarity candidate that could run on this query under this mode."""
        for c in outcome.candidates:
            if self._runnable(c.definition, mode, query, context):
                return c
        return None

    @staticmethod
    def _runnable(d: PatternDefinition, mode: ExecutionMode, query: str, context: Mapping[str, Any]) -> bool:
        if mode is ExecutionMode.FAST and d.pattern_type is PatternType.MEMORY and not d.is_write:
            return False
        return d.operation is not MemoryOperation.SEARCH_BY_TAG or bool(tags_in(query, context))

    async def _keyword_guess(
        self,
        registry: PatternRegistry,
        outcome: MatchOutcome,
        mode: ExecutionMode,
        query: str,
        context: Mapping[str, Any],
        tenant_id: str,
    ) -> Choice | None:
        """The seed router's keyword decision (opt-in), never a write; ``None`` when no pattern can run."""
        if mode is ExecutionMode.FAST:
            wanted, raw, why = keyword_decision(outcome.normalized, False)
            wanted = PatternType.INFRASTRUCTURE if wanted is PatternType.MEMORY else wanted
        else:
            wanted, raw, why = await self._keyword(outcome.normalized, tenant_id)

        def guessable() -> Iterator[PatternDefinition]:
            """Similarity candidates, then every other runnable pattern (priority order), never a write; lazily."""
            seen: set[str] = set()
            for c in outcome.candidates:
                d = c.definition
                if not d.is_write and self._runnable(d, mode, query, context):
                    seen.add(d.name)
                    yield d
            for d in registry.iter_definitions():
                if d.name not in seen and not d.is_write and self._runnable(d, mode, query, context):
                    yield d

        chosen = next((d for d in guessable() if d.pattern_type is wanted), None)
        if chosen is None:
            chosen = next(guessable(), None)
        if chosen is None:
            return None
        return Choice(chosen, MatchSource.KEYWORD, raw, f"{why}; best {wanted.value} pattern {chosen.name!r}")

    async def _keyword(self, normalized: str, tenant_id: str) -> tuple[PatternType, float, str]:
        kinds = {t for t, rx in KEYWORDS.items() if rx.search(normalized)}
        needs_count = not kinds
        exist = needs_count and await self._memories.count(tenant_id) > 0
        return keyword_decision(normalized, exist)

    def _alternatives(
        self,
        calibration: RoutingCalibration,
        outcome: MatchOutcome,
        chosen: PatternDefinition,
        path: PathPlan,
        confidence: float,
        mode: ExecutionMode,
    ) -> tuple[RouteAlternative, ...]:
        found: dict[tuple[PatternType, str], RouteAlternative] = {}

        def add(d: PatternDefinition, p: PathPlan | None, score: float, raw: float) -> None:
            if p is None or (p.pattern_type, d.name) == (path.pattern_type, chosen.name):
                return
            key = (p.pattern_type, d.name)
            if key not in found or found[key].score < score:
                found[key] = RouteAlternative(p.pattern_type, d.name, round(max(0.0, score), 6), p.cost, round(raw, 6))

        for hit in outcome.triggers:
            if hit.definition.name != chosen.name:
                scored = outcome.trigger_scores.get(hit.definition.name)
                raw = (
                    scored.score if scored is not None else trigger_confidence(hit.span_length, len(outcome.normalized))
                )
                add(hit.definition, plan_path(hit.definition, mode), calibration.confidence("trigger", raw), raw)
        for c in outcome.candidates[:MAX_ALTERNATIVES]:
            add(c.definition, plan_path(c.definition, mode), calibration.confidence("semantic", c.score), c.score)
        for other in ExecutionMode:
            if other is not mode:
                add(chosen, plan_path(chosen, other), OTHER_PATH_FACTOR * confidence, 0.0)
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

    def stats(self) -> RouterTotals:
        """Router statistics: ``total_routes``, ``routes_by_type`` (counts), ``route_distribution`` (fractions 0-1),
        ``no_match_count`` (queries refused with ``NO_PATTERN_MATCHED``)."""
        total = self._total
        return RouterTotals(
            total_routes=total,
            routes_by_type=dict(self._by_type),
            route_distribution={t: (n / total if total else 0.0) for t, n in self._by_type.items()},
            no_match_count=self._no_match,
        )


__all__: Sequence[str] = (
    "Choice",
    "ExecutionPlan",
    "HybridDecisionRouter",
    "PathPlan",
    "keyword_decision",
    "plan_path",
    "trigger_confidence",
)
