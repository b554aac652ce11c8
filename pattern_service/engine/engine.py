"""The pattern execution engine: route, answer from cache, execute, account (seed ``PatternExecutionEngine``).

Longer than this code base's ~400-line guide on purpose: the engine is the one
facade the API layer's ``Engine`` protocol describes, so besides the execute
pipeline (plan → cache lookup → run → account) it carries one short,
documented delegating method per engine operation (definitions, evaluation,
memory changes, statistics). The work behind them lives in the modules they
call (:mod:`.registries`, :mod:`.router`, :mod:`.executors`, :mod:`.evaluation`,
:mod:`.stats`); splitting the facade would only spread its signatures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pattern_service.domain import (
    DEFAULT_TENANT,
    ExecutionMode,
    ExecutionResult,
    Memory,
    MemoryFilter,
    PatternDefinition,
    PatternType,
    RoutingDecision,
)
from pattern_service.engine.cache import LocalGenerationStore, LocalResultCache, cache_key
from pattern_service.engine.evaluation import Evaluation, Fit, LabelledUtterance, evaluate, fit
from pattern_service.engine.executors import (
    DEFAULT_RECALL_MIN_SCORE,
    HybridExecutor,
    InfrastructureExecutor,
    MemoryCall,
    MemoryExecutor,
    PartResult,
)
from pattern_service.engine.memory_context import parse_memory_context
from pattern_service.engine.ports import Embedder, GenerationStore, MemoryStore, ResultCache
from pattern_service.engine.registries import PatternLayer, TenantRegistries
from pattern_service.engine.registry import PatternRegistry
from pattern_service.engine.router import ExecutionPlan, HybridDecisionRouter
from pattern_service.engine.stats import EngineStats, StatsSnapshot, TenantStats
from pattern_service.engine.tools import HealthProbe, ToolRegistry, ToolServices
from pattern_service.errors import FieldViolation, InvalidArgumentError, NotFoundError, PermissionDeniedError
from pattern_service.tracing import span

logger = logging.getLogger(__name__)


class PatternExecutionEngine:
    """Matches, routes, caches and executes queries.

    Args:
        registry: Loaded global pattern registry.
        router: Router over ``registry`` (and the tenants' registries of ``registries``).
        tools: Tool registry (built-ins and entry-point tools).
        memory_store: The learning store's memories.
        embedder: The service's embedder (given to tools).
        health_probe: Async component probe for the ``health_check`` tool
            (default: checks the registry, tools and the memory store).
        cache: Result cache (default: :class:`LocalResultCache`).
        generations: Tenant data generations (default: :class:`LocalGenerationStore`).
        stats: Engine counters (default: fresh).
        refresh_interval: Seconds between checks of the store's registry version
            (changes by other replicas); 0 disables the check.
        recall_min_score: Default relevance floor of ``recall`` (``TMWS_RECALL_MIN_SCORE``).
        registries: The tenants' registries over ``registry`` (loaded); default:
            every tenant routes with ``registry`` (no tenant layers).
    """

    def __init__(
        self,
        registry: PatternRegistry,
        router: HybridDecisionRouter,
        tools: ToolRegistry,
        memory_store: MemoryStore,
        embedder: Embedder,
        *,
        health_probe: HealthProbe | None = None,
        cache: ResultCache | None = None,
        generations: GenerationStore | None = None,
        stats: EngineStats | None = None,
        refresh_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        recall_min_score: float = DEFAULT_RECALL_MIN_SCORE,
        registries: TenantRegistries | None = None,
    ) -> None:
        self.registry = registry
        self.registries = registries if registries is not None else TenantRegistries(registry, None)
        self.router = router
        self.tools = tools
        self.cache: ResultCache = cache if cache is not None else LocalResultCache()
        self.generations: GenerationStore = generations if generations is not None else LocalGenerationStore()
        self.stats = stats if stats is not None else EngineStats()
        self.tenant_stats = TenantStats(self.stats)
        self._memory_store = memory_store
        self._refresh_interval = refresh_interval
        self._clock = clock
        self._last_refresh = clock()
        services = ToolServices(
            self.registries.for_tenant, health_probe or self._probe, self._stats_dict, embedder, tools
        )
        self._infrastructure = InfrastructureExecutor(tools, services)
        self._memory = MemoryExecutor(memory_store, recall_min_score=recall_min_score)
        self._hybrid = HybridExecutor(self._infrastructure, self._memory)
        registry.add_swap_listener(self._drop_stale_results)

    # ---------------------------------------------------------------- queries

    async def execute(
        self,
        query: str,
        *,
        execution_mode: ExecutionMode = ExecutionMode.BALANCED,
        context: Mapping[str, Any] | None = None,
        use_cache: bool = True,
        tenant_id: str = DEFAULT_TENANT,
        allow_write: bool = True,
        keyword_fallback: bool | None = None,
    ) -> ExecutionResult:
        """Execute a query.

        Args:
            query: Natural-language query, non-blank. Its length limit
                (``TMWS_MAX_QUERY_LENGTH``) is the API's to check
                (:func:`pattern_service.api.validation.check_query`); the
                engine trusts the length it is given.
            execution_mode: FAST (infrastructure only), BALANCED (own path) or
                COMPREHENSIVE (always hybrid); see :mod:`.router`.
            context: JSON-compatible context (memory keys: :mod:`.memory_context`).
            use_cache: False bypasses the result cache for both reading and writing.
            tenant_id: Caller tenant (scopes memories, cache keys and statistics).
            allow_write: False refuses a query that routes to a write (the
                caller lacks the ``write`` scope); only the router knows a write.
            keyword_fallback: Allow the seed's keyword guess when nothing
                matched (``None`` = the router's setting).

        Returns:
            The result; ``metadata`` has ``execution_mode``, ``tenant``,
            ``match_source``, ``parts`` (which parts ran), ``tool``, ``operation``,
            ``subject``, ``confidence``, ``registry_version``, ``write``.

        Raises:
            InvalidArgumentError: Blank query or context keys that are not strings (nothing ran).
            FailedPreconditionError: ``MODE_EXCLUDES_PATH`` (FAST and a memory read).
            NotFoundError: ``NO_PATTERN_MATCHED``: nothing matched (details name the closest candidates).
            PermissionDeniedError: ``MISSING_SCOPE``: a write and not ``allow_write`` (nothing ran).
            PatternServiceError: A backend of a memory-only path failed (counted as a failed execution).
        """
        start = time.perf_counter()
        text, ctx = self._check_request(query, context)
        plan, call = await self._plan(text, execution_mode, ctx, tenant_id, allow_write, keyword_fallback)
        key = await self._cache_key(plan, text, execution_mode, ctx, tenant_id) if use_cache else None
        if key is not None:
            hit = await self._lookup(key, plan, start)
            if hit is not None:
                self._account(tenant_id, plan, hit, cache_lookup=True)
                return hit
        try:
            result, expiry = await self._run_plan(plan, call, text, ctx, execution_mode, tenant_id, start)
        except Exception:
            elapsed = (time.perf_counter() - start) * 1000
            self._account(tenant_id, plan, None, cache_lookup=key is not None, time_ms=elapsed)
            raise
        if key is not None and result.success:
            ttl: float = plan.definition.cache_ttl
            if expiry is not None:  # never serve a memory from cache past its expiry
                ttl = min(ttl, (expiry - datetime.now(UTC)).total_seconds())
            await self.cache.set(key, tenant_id, result, ttl, reads_memory=plan.reads_memory)
        self._account(tenant_id, plan, result, cache_lookup=key is not None)
        return result

    async def _plan(
        self,
        text: str,
        mode: ExecutionMode,
        ctx: Mapping[str, Any],
        tenant_id: str,
        allow_write: bool,
        keyword_fallback: bool | None,
    ) -> tuple[ExecutionPlan, MemoryCall | None]:
        """Route a checked request and prepare its memory call; counts the routing decision.

        Raises:
            PermissionDeniedError: ``MISSING_SCOPE``: a write and not ``allow_write``.
            InvalidArgumentError, FailedPreconditionError, NotFoundError: As :meth:`execute`.
        """
        await self._maybe_refresh()
        with span("route"):
            plan = await self.router.plan(text, mode, ctx, tenant_id, keyword_fallback=keyword_fallback)
        if plan.is_write and not allow_write:
            raise PermissionDeniedError(
                f"the query routes to a write (pattern {plan.definition.name!r}), which needs the 'write' scope",
                reason="MISSING_SCOPE",
                metadata={"required_scope": "write", "pattern_name": plan.definition.name},
            )
        call = self._prepare_memory(plan, text, ctx)
        self.tenant_stats.record_route(tenant_id, plan.path.pattern_type)
        return plan, call

    async def _cache_key(
        self, plan: ExecutionPlan, text: str, mode: ExecutionMode, ctx: Mapping[str, Any], tenant_id: str
    ) -> str | None:
        """The result-cache key of a plan, or ``None`` when its result is not cached.

        Writes, patterns with ``cache_ttl`` 0 and contexts that are not JSON are
        not cached; a memory read's key includes the tenant's data generation.
        """
        if plan.is_write or plan.definition.cache_ttl <= 0:
            return None
        generation = await self.generations.get(tenant_id) if plan.reads_memory else None
        try:
            return cache_key(tenant_id, text, mode, ctx, self.registries.version_of(tenant_id), generation)
        except (TypeError, ValueError):
            return None

    async def _lookup(self, key: str, plan: ExecutionPlan, start: float) -> ExecutionResult | None:
        """The cached result under ``key`` as this request's result (timed from ``start``), or ``None``."""
        with span("cache.lookup"):
            hit = await self.cache.get(key)
        if hit is None:
            return None
        return ExecutionResult(  # not dataclasses.replace: this is the cache-hit hot path
            pattern_name=hit.pattern_name,
            pattern_type=hit.pattern_type,
            success=hit.success,
            result=hit.result,
            execution_time_ms=(time.perf_counter() - start) * 1000,
            tokens_used=0,
            cache_hit=True,
            error=hit.error,
            metadata=hit.metadata,
            routing=plan.decision,
            cache_entry=hit.cache_entry,
            cache_layer=hit.cache_layer,
        )

    async def _run_plan(
        self,
        plan: ExecutionPlan,
        call: MemoryCall | None,
        text: str,
        ctx: Mapping[str, Any],
        mode: ExecutionMode,
        tenant_id: str,
        start: float,
    ) -> tuple[ExecutionResult, datetime | None]:
        """Run the plan's parts; a successful memory write bumps the tenant's generation and drops its results.

        Returns:
            The result and the earliest expiry of the memories it holds (``None``: none expires), which
            bounds how long it may be cached.

        Raises:
            PatternServiceError: A backend of a memory-only path failed.
        """
        parts = await self._run(plan, call, text, ctx, tenant_id)
        success = all(p.success for p in parts)
        errors = [f"{p.part} part failed: {p.error}" for p in parts if not p.success]
        if plan.is_write and any(p.part == "memory" and p.success for p in parts):
            await self.memories_changed(tenant_id)
        expiry = min((p.expires_at for p in parts if p.expires_at is not None), default=None)
        result = ExecutionResult(
            pattern_name=plan.definition.name,
            pattern_type=plan.path.pattern_type,
            success=success,
            result={p.part: p.to_json() for p in parts},
            execution_time_ms=(time.perf_counter() - start) * 1000,
            tokens_used=plan.path.cost,
            cache_hit=False,
            error="; ".join(errors) or None,
            metadata=self._metadata(plan, mode, tenant_id, parts),
            routing=plan.decision,
        )
        return result, expiry

    def _account(
        self,
        tenant_id: str,
        plan: ExecutionPlan,
        result: ExecutionResult | None,
        *,
        cache_lookup: bool,
        time_ms: float | None = None,
    ) -> None:
        """Count one execution in the tenant's and the process's statistics (:mod:`.stats`).

        Args:
            tenant_id: Caller tenant.
            plan: What was routed (its path cost and all-hybrid baseline).
            result: The result returned (a cache hit costs 0 tokens); ``None`` when
                the run raised, which counts as a failure at the path's cost.
            cache_lookup: Whether the result cache was consulted.
            time_ms: Wall time when there is no result to take it from.
        """
        if result is None:
            success, cache_hit, tokens, layer, elapsed = False, False, plan.path.cost, None, time_ms or 0.0
        else:
            success, cache_hit, tokens = result.success, result.cache_hit, result.tokens_used
            layer, elapsed = result.cache_layer, result.execution_time_ms
        self.tenant_stats.record(
            tenant_id,
            success=success,
            cache_hit=cache_hit,
            cache_lookup=cache_lookup,
            time_ms=elapsed,
            tokens=tokens,
            baseline=plan.baseline_cost,
            cache_layer=layer,
        )

    async def route(
        self,
        query: str,
        *,
        execution_mode: ExecutionMode = ExecutionMode.BALANCED,
        context: Mapping[str, Any] | None = None,
        tenant_id: str = DEFAULT_TENANT,
        keyword_fallback: bool | None = None,
    ) -> RoutingDecision:
        """The routing decision :meth:`execute` would take, without executing.

        Raises:
            InvalidArgumentError, FailedPreconditionError, NotFoundError: As :meth:`execute`.
        """
        text, ctx = self._check_request(query, context)
        await self._maybe_refresh()
        decision = await self.router.route(text, execution_mode, ctx, tenant_id, keyword_fallback=keyword_fallback)
        self.tenant_stats.record_route(tenant_id, decision.pattern_type)
        return decision

    async def memories_changed(self, tenant_id: str) -> None:
        """Make every cached memory-reading result of ``tenant_id`` unreachable, on every replica.

        Called after each committed memory write (``store``, ``MemoryService``
        writes, the expiry sweep): bumps the tenant's data generation (shared
        through Redis when configured, which also tells the other replicas to
        drop their local entries) and drops this process's entries.
        """
        await self.generations.bump(tenant_id)
        await self.cache.invalidate_tenant(tenant_id)

    async def search_memories(
        self, tenant_id: str, query: str, flt: MemoryFilter, limit: int, min_score: float | None
    ) -> tuple[list[Memory], int, float]:
        """Semantic memory search with ``recall``'s ranking and floor (never cached).

        Args:
            tenant_id: Caller tenant.
            query: Trimmed, non-empty query.
            flt: Filters.
            limit: Best hits considered (1-100).
            min_score: Relevance floor in [0, 1]; ``None`` = the server's ``recall`` default.

        Returns:
            (hits at or above the floor, best first; how many fell below; the floor applied).

        Raises:
            PatternServiceError: From the store (e.g. ``UnavailableError``).
        """
        floor = self._memory.default_min_score if min_score is None else min_score
        with span("memory.search"):
            found, below = await self._memory.recall(tenant_id, query, flt, limit, floor)
        return found, below, floor

    def _check_request(self, query: str, context: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
        text = query.strip() if isinstance(query, str) else ""
        if not text:
            raise InvalidArgumentError.single("query", "must not be empty")
        ctx = dict(context or {})
        if not all(isinstance(k, str) for k in ctx):
            raise InvalidArgumentError.single("context", "keys must be strings")
        return text, ctx

    def _prepare_memory(self, plan: ExecutionPlan, text: str, ctx: Mapping[str, Any]) -> MemoryCall | None:
        if plan.path.operation is None:
            return None
        request = parse_memory_context(ctx)
        return self._memory.prepare(plan.path.operation, request, query=text, subject=plan.subject)

    async def _run(
        self, plan: ExecutionPlan, call: MemoryCall | None, text: str, ctx: Mapping[str, Any], tenant_id: str
    ) -> list[PartResult]:
        tool = plan.path.tool
        if tool is not None and call is not None:
            both = await self._hybrid.run(
                tool, call, query=text, subject=plan.subject, context=ctx, tenant_id=tenant_id
            )
            return list(both)
        if tool is not None:
            return [
                await self._infrastructure.run(tool, query=text, subject=plan.subject, context=ctx, tenant_id=tenant_id)
            ]
        if call is not None:
            return [await self._memory.run(call, tenant_id)]
        raise RuntimeError(f"pattern {plan.definition.name!r} has neither a tool nor an operation")

    def _metadata(
        self, plan: ExecutionPlan, mode: ExecutionMode, tenant_id: str, parts: Sequence[PartResult]
    ) -> dict[str, Any]:
        return {
            "execution_mode": mode.value,
            "tenant": tenant_id,
            "match_source": plan.decision.match_source.value,
            "confidence": plan.decision.confidence,
            "parts": [p.part for p in parts],
            "failed_parts": [p.part for p in parts if not p.success],
            "tool": plan.path.tool,
            "operation": plan.path.operation.value if plan.path.operation else None,
            "subject": plan.subject,
            "pattern_own_type": plan.definition.pattern_type.value,
            "registry_version": self.registries.version_of(tenant_id),
            "write": plan.is_write,
        }

    def _drop_stale_results(self, _version: int) -> None:
        """Result keys include the registry version: after a global change the local entries are unreachable.

        (After a change of one tenant's layer only that tenant's entries are;
        they age out, and other tenants keep their cached results.)
        """
        self.cache.drop_local()

    async def _maybe_refresh(self) -> None:
        if self._refresh_interval <= 0 or self._clock() - self._last_refresh < self._refresh_interval:
            return
        self._last_refresh = self._clock()
        try:
            await self.registries.refresh_if_changed()
        except Exception:
            logger.warning("registry refresh check failed; serving the loaded definitions", exc_info=True)

    # ------------------------------------------------------------ definitions

    async def register_batch(
        self,
        definitions: Sequence[PatternDefinition],
        *,
        validate_only: bool = False,
        tenant_id: str = DEFAULT_TENANT,
        layer: PatternLayer = PatternLayer.GLOBAL,
    ) -> tuple[list[PatternDefinition], int, int, int]:
        """Register or replace definitions in one registry layer atomically (:mod:`.registries`).

        Args:
            definitions: The batch (unique names).
            validate_only: Only validate.
            tenant_id: The caller's tenant (whose layer ``TENANT`` is).
            layer: The layer to change (the caller's scopes were checked by the API).

        Returns:
            (stored definitions, created count, replaced count, registry version:
            the tenant's effective version for its layer).

        Raises:
            InvalidArgumentError: With every violation; nothing changed.
        """
        res = await self.registries.register_batch(
            definitions, tenant_id=tenant_id, layer=layer, validate_only=validate_only
        )
        return res.definitions, res.created, res.replaced, res.version

    async def delete_definition(
        self, name: str, *, tenant_id: str = DEFAULT_TENANT, layer: PatternLayer = PatternLayer.GLOBAL
    ) -> int:
        """Delete a definition of one layer; returns the new version (see :meth:`TenantRegistries.delete`).

        Raises:
            NotFoundError: No definition has that name.
            FailedPreconditionError: ``GLOBAL_LAYER_PATTERN``: the tenant layer
                was targeted and only the global layer has ``name``.
        """
        return await self.registries.delete(name, tenant_id=tenant_id, layer=layer)

    async def evaluate_routing(
        self,
        utterances: Sequence[LabelledUtterance],
        *,
        execution_mode: ExecutionMode = ExecutionMode.BALANCED,
        tenant_id: str = DEFAULT_TENANT,
    ) -> Evaluation:
        """Route labelled utterances with the tenant's registry, without executing, and report the quality.

        Raises:
            InvalidArgumentError: An utterance names an unregistered pattern.
        """
        await self._maybe_refresh()
        registry = self.registries.for_tenant(tenant_id)
        return (await evaluate(self.router, registry, utterances, execution_mode))[0]

    async def fit_routing(
        self,
        utterances: Sequence[LabelledUtterance],
        *,
        validate_only: bool = False,
        tenant_id: str = DEFAULT_TENANT,
        layer: PatternLayer = PatternLayer.GLOBAL,
    ) -> Fit:
        """Fit thresholds and the calibration of one layer on labelled utterances and apply them atomically.

        A tenant layer's fit routes with the tenant's effective registry and
        stores the result as the tenant's (:mod:`.tenant_registry`).

        Raises:
            InvalidArgumentError: An utterance names an unregistered pattern.
        """
        await self._maybe_refresh()
        async with self.registries.changing(tenant_id, layer) as registry:
            return await fit(self.router, registry, utterances, validate_only=validate_only)

    def get_definition(self, name: str, *, tenant_id: str = DEFAULT_TENANT) -> PatternDefinition:
        """The tenant's effective definition named ``name``.

        Raises:
            NotFoundError: No definition has that name.
        """
        definition = self.registries.for_tenant(tenant_id).get(name)
        if definition is None:
            raise NotFoundError("PatternDefinition", name)
        return definition

    def definition_layer(self, name: str, *, tenant_id: str = DEFAULT_TENANT) -> PatternLayer:
        """The layer the tenant's effective definition ``name`` comes from."""
        return self.registries.layer_of(tenant_id, name)

    def validate_definitions(self, definitions: Sequence[PatternDefinition]) -> list[FieldViolation]:
        """Every problem of a batch as field violations ``pattern_definitions[i].<field>`` (changes nothing)."""
        return self.registry.validate(definitions)

    def list_definitions(
        self, pattern_type: PatternType | None = None, *, tenant_id: str = DEFAULT_TENANT
    ) -> list[PatternDefinition]:
        """The tenant's effective definitions (optionally of one type), priority descending then name."""
        return self.registries.definitions(tenant_id, pattern_type)

    async def close(self) -> None:
        """Release the result cache (the stores belong to the caller)."""
        await self.cache.close()

    # ------------------------------------------------------------------ stats

    def get_stats(self, tenant_id: str | None = None) -> StatsSnapshot:
        """The engine, registry, router and cache sections of ``GetStats``; rates are fractions 0-1.

        The fields of each section are those of :mod:`.stats`' snapshots
        (``EngineSnapshot``, ``RegistrySnapshot``, ``RouterSnapshot``,
        ``CacheSnapshot``); the process view's router also counts
        ``no_match_count`` and a Redis cache its own errors, which stay off the wire.

        Args:
            tenant_id: ``None`` for the process totals; a tenant for that
                tenant's own numbers: ``engine`` and ``router`` are the
                tenant's, and in ``cache`` the ``hits``, ``misses``,
                ``local_hits``, ``redis_hits`` and ``hit_rate`` are the tenant's
                lookups. In either view ``local_hits + redis_hits == hits``:
                a hit is answered by the in-process layer or, when that missed,
                by Redis. The ``registry`` section is the tenant's effective
                registry (its version the tenant's). Shared facts stay global: the cache's
                ``evictions``, ``invalidations``, ``local_cache_size`` and
                ``redis_available``.
        """
        cache = self.cache.stats()
        if tenant_id is None:
            return StatsSnapshot(self.stats.snapshot(), self.registry.stats(), self.router.stats(), cache)
        registry = replace(
            self.registries.for_tenant(tenant_id).stats(), registry_version=self.registries.version_of(tenant_id)
        )
        return StatsSnapshot(
            self.tenant_stats.engine(tenant_id),
            registry,
            self.tenant_stats.router(tenant_id),
            self.tenant_stats.cache(tenant_id, cache),
        )

    def _stats_dict(self, tenant_id: str | None) -> dict[str, Any]:
        """:meth:`get_stats` as JSON-ready sections (what tools see, :data:`.tools.StatsProvider`)."""
        return self.get_stats(tenant_id).as_dict()

    async def _probe(self) -> Mapping[str, Any]:
        """Default health probe: registry, tools and a round trip to the memory store."""
        components: dict[str, Mapping[str, Any]] = {
            "registry": {
                "healthy": True,
                "patterns": len(self.registry.definitions()),
                "version": self.registry.version,
            },
            "tools": {"healthy": len(self.tools) > 0, "registered": len(self.tools)},
        }
        started = time.perf_counter()
        try:
            await self._memory_store.count(DEFAULT_TENANT)
        except Exception as exc:
            components["memory_store"] = {"healthy": False, "error": f"{type(exc).__name__}: {exc}"}
        else:
            latency = round((time.perf_counter() - started) * 1000, 3)
            components["memory_store"] = {"healthy": True, "latency_ms": latency}
        return components
