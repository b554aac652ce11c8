"""The pattern execution engine: route, answer from cache, execute, account (seed ``PatternExecutionEngine``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
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
from pattern_service.engine.builtin_tools import register_builtin_tools
from pattern_service.engine.cache import (
    DEFAULT_MAX_SIZE,
    GenerationStore,
    LocalGenerationStore,
    LocalResultCache,
    ResultCache,
    cache_key,
)
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
from pattern_service.engine.registry import PatternRegistry
from pattern_service.engine.router import ExecutionPlan, HybridDecisionRouter
from pattern_service.engine.stats import EngineStats, TenantStats
from pattern_service.engine.tools import HealthProbe, ToolRegistry, ToolServices
from pattern_service.errors import FieldViolation, InvalidArgumentError, NotFoundError, PermissionDeniedError
from pattern_service.store.base import MemoryStore, PatternDefinitionStore
from pattern_service.store.embeddings import Embedder
from pattern_service.tracing import span

logger = logging.getLogger(__name__)

DEFAULT_MAX_QUERY_CHARS = 10_000


class PatternExecutionEngine:
    """Matches, routes, caches and executes queries.

    Args:
        registry: Loaded pattern registry.
        router: Router over ``registry``.
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
        max_query_length: Maximum characters of a trimmed query.
        recall_min_score: Default relevance floor of ``recall`` (``TMWS_RECALL_MIN_SCORE``).
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
        max_query_length: int = DEFAULT_MAX_QUERY_CHARS,
        clock: Callable[[], float] = time.monotonic,
        recall_min_score: float = DEFAULT_RECALL_MIN_SCORE,
    ) -> None:
        self.registry = registry
        self.router = router
        self.tools = tools
        self.cache: ResultCache = cache if cache is not None else LocalResultCache()
        self.generations: GenerationStore = generations if generations is not None else LocalGenerationStore()
        self.stats = stats if stats is not None else EngineStats()
        self.tenant_stats = TenantStats(self.stats)
        self._memory_store = memory_store
        self._refresh_interval = refresh_interval
        self._max_query_length = max_query_length
        self._clock = clock
        self._last_refresh = clock()
        services = ToolServices(registry, health_probe or self._probe, self.get_stats, embedder, tools)
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
            query: Natural-language query (1..max_query_length characters after trimming).
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
            InvalidArgumentError: Bad query or context (nothing ran).
            FailedPreconditionError: ``MODE_EXCLUDES_PATH`` (FAST and a memory read).
            NotFoundError: ``NO_PATTERN_MATCHED``: nothing matched (details name the closest candidates).
            PermissionDeniedError: ``MISSING_SCOPE``: a write and not ``allow_write`` (nothing ran).
            PatternServiceError: A backend of a memory-only path failed (counted as a failed execution).
        """
        start = time.perf_counter()
        text, ctx = self._check_request(query, context)
        await self._maybe_refresh()
        with span("route"):
            plan = await self.router.plan(text, execution_mode, ctx, tenant_id, keyword_fallback=keyword_fallback)
        if plan.is_write and not allow_write:
            raise PermissionDeniedError(
                f"the query routes to a write (pattern {plan.definition.name!r}), which needs the 'write' scope",
                reason="MISSING_SCOPE",
                metadata={"required_scope": "write", "pattern_name": plan.definition.name},
            )
        call = self._prepare_memory(plan, text, ctx)
        self.tenant_stats.record_route(tenant_id, plan.path.pattern_type)
        baseline = plan.baseline_cost
        key = None
        if use_cache and not plan.is_write and plan.definition.cache_ttl > 0:
            generation = await self.generations.get(tenant_id) if plan.reads_memory else None
            try:
                key = cache_key(tenant_id, text, execution_mode, ctx, self.registry.version, generation)
            except (TypeError, ValueError):
                key = None
        if key is not None:
            with span("cache.lookup"):
                hit = await self.cache.get(key)
            if hit is not None:
                elapsed = (time.perf_counter() - start) * 1000
                self.tenant_stats.record(
                    tenant_id,
                    success=hit.success,
                    cache_hit=True,
                    cache_lookup=True,
                    time_ms=elapsed,
                    tokens=0,
                    baseline=baseline,
                    cache_layer=hit.cache_layer,
                )
                return ExecutionResult(  # not dataclasses.replace: this is the cache-hit hot path
                    pattern_name=hit.pattern_name,
                    pattern_type=hit.pattern_type,
                    success=hit.success,
                    result=hit.result,
                    execution_time_ms=elapsed,
                    tokens_used=0,
                    cache_hit=True,
                    error=hit.error,
                    metadata=hit.metadata,
                    routing=plan.decision,
                    cache_entry=hit.cache_entry,
                    cache_layer=hit.cache_layer,
                )
        try:
            parts = await self._run(plan, call, text, ctx, tenant_id)
        except Exception:
            elapsed = (time.perf_counter() - start) * 1000
            self.tenant_stats.record(
                tenant_id,
                success=False,
                cache_hit=False,
                cache_lookup=key is not None,
                time_ms=elapsed,
                tokens=plan.path.cost,
                baseline=baseline,
            )
            raise
        success = all(p.success for p in parts)
        errors = [f"{p.part} part failed: {p.error}" for p in parts if not p.success]
        if plan.is_write and any(p.part == "memory" and p.success for p in parts):
            await self.memories_changed(tenant_id)
        elapsed = (time.perf_counter() - start) * 1000
        result = ExecutionResult(
            pattern_name=plan.definition.name,
            pattern_type=plan.path.pattern_type,
            success=success,
            result={p.part: p.to_json() for p in parts},
            execution_time_ms=elapsed,
            tokens_used=plan.path.cost,
            cache_hit=False,
            error="; ".join(errors) or None,
            metadata=self._metadata(plan, execution_mode, tenant_id, parts),
            routing=plan.decision,
        )
        if key is not None and success:
            ttl: float = plan.definition.cache_ttl
            expiry = min((p.expires_at for p in parts if p.expires_at is not None), default=None)
            if expiry is not None:  # never serve a memory from cache past its expiry
                ttl = min(ttl, (expiry - datetime.now(UTC)).total_seconds())
            await self.cache.set(key, tenant_id, result, ttl, reads_memory=plan.reads_memory)
        self.tenant_stats.record(
            tenant_id,
            success=success,
            cache_hit=False,
            cache_lookup=key is not None,
            time_ms=elapsed,
            tokens=plan.path.cost,
            baseline=baseline,
        )
        return result

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
        if not text or len(text) > self._max_query_length:
            raise InvalidArgumentError.single("query", f"must be 1-{self._max_query_length} characters after trimming")
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
            "registry_version": self.registry.version,
            "write": plan.is_write,
        }

    def _drop_stale_results(self, _version: int) -> None:
        """Result keys include the registry version: after a change the local entries are unreachable."""
        self.cache.drop_local()

    async def _maybe_refresh(self) -> None:
        if self._refresh_interval <= 0 or self._clock() - self._last_refresh < self._refresh_interval:
            return
        self._last_refresh = self._clock()
        try:
            await self.registry.refresh_if_changed()
        except Exception:
            logger.warning("registry refresh check failed; serving the loaded definitions", exc_info=True)

    # ------------------------------------------------------------ definitions

    async def register_batch(
        self, definitions: Sequence[PatternDefinition], *, validate_only: bool = False
    ) -> tuple[list[PatternDefinition], int, int, int]:
        """Register or replace definitions atomically (see :meth:`PatternRegistry.register_batch`).

        Returns:
            (stored definitions, created count, replaced count, registry version).

        Raises:
            InvalidArgumentError: With every violation; nothing changed.
        """
        res = await self.registry.register_batch(definitions, validate_only=validate_only)
        return res.definitions, res.created, res.replaced, res.version

    async def delete_definition(self, name: str) -> int:
        """Delete a definition; returns the new registry version.

        Raises:
            NotFoundError: No definition has that name.
        """
        return await self.registry.delete(name)

    async def evaluate_routing(
        self, utterances: Sequence[LabelledUtterance], *, execution_mode: ExecutionMode = ExecutionMode.BALANCED
    ) -> Evaluation:
        """Route labelled utterances without executing them and report the quality (:mod:`.evaluation`).

        Raises:
            InvalidArgumentError: An utterance names an unregistered pattern.
        """
        await self._maybe_refresh()
        return (await evaluate(self.router, self.registry, utterances, execution_mode))[0]

    async def fit_routing(self, utterances: Sequence[LabelledUtterance], *, validate_only: bool = False) -> Fit:
        """Fit per-pattern thresholds and the calibration on labelled utterances and apply them atomically.

        Raises:
            InvalidArgumentError: An utterance names an unregistered pattern.
        """
        await self._maybe_refresh()
        return await fit(self.router, self.registry, utterances, validate_only=validate_only)

    def get_definition(self, name: str) -> PatternDefinition:
        """The registered definition named ``name``.

        Raises:
            NotFoundError: No definition has that name.
        """
        definition = self.registry.get(name)
        if definition is None:
            raise NotFoundError("PatternDefinition", name)
        return definition

    def validate_definitions(self, definitions: Sequence[PatternDefinition]) -> list[FieldViolation]:
        """Every problem of a batch as field violations ``pattern_definitions[i].<field>`` (changes nothing)."""
        return self.registry.validate(definitions)

    def list_definitions(self, pattern_type: PatternType | None = None) -> list[PatternDefinition]:
        """Registered definitions (optionally of one type), priority descending then name."""
        return self.registry.definitions(pattern_type)

    async def close(self) -> None:
        """Release the result cache (the stores belong to the caller)."""
        await self.cache.close()

    # ------------------------------------------------------------------ stats

    def get_stats(self, tenant_id: str | None = None) -> dict[str, Any]:
        """``{"engine": {...}, "registry": {...}, "router": {...}, "cache": {...}}``; rates are fractions 0-1.

        engine: total_executions, successful_executions, failed_executions,
        cache_hits, avg_execution_time_ms, total_tokens_used, success_rate,
        cache_hit_rate, baseline_tokens, tokens_saved, token_reduction_rate
        (:mod:`.stats`). registry: total_patterns, patterns_by_type, cache_hits,
        cache_misses, cache_hit_rate, cache_size, registry_version. router:
        total_routes, routes_by_type, route_distribution. cache: hits, misses,
        local_hits, redis_hits, evictions, invalidations, hit_rate,
        local_cache_size, redis_available.

        Args:
            tenant_id: ``None`` for the process totals; a tenant for that
                tenant's own numbers: ``engine`` and ``router`` are the
                tenant's, and in ``cache`` the ``hits``, ``misses``,
                ``local_hits``, ``redis_hits`` and ``hit_rate`` are the tenant's
                lookups. In either view ``local_hits + redis_hits == hits``:
                a hit is answered by the in-process layer or, when that missed,
                by Redis. Shared facts stay global: the ``registry`` section
                (definitions are shared by all tenants) and the cache's
                ``evictions``, ``invalidations``, ``local_cache_size`` and
                ``redis_available``.
        """
        cache = dict(self.cache.stats())
        if tenant_id is None:
            return {
                "engine": self.stats.as_dict(),
                "registry": self.registry.stats(),
                "router": self.router.stats(),
                "cache": cache,
            }
        counts = self.tenant_stats.cache_counts(tenant_id)
        lookups = counts["hits"] + counts["misses"]
        cache.update(counts, hit_rate=counts["hits"] / lookups if lookups else 0.0)
        return {
            "engine": self.tenant_stats.engine(tenant_id),
            "registry": self.registry.stats(),
            "router": self.tenant_stats.router(tenant_id),
            "cache": cache,
        }

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


async def build_engine(
    *,
    definition_store: PatternDefinitionStore,
    memory_store: MemoryStore,
    embedder: Embedder,
    health_probe: HealthProbe | None = None,
    semantic_threshold: float = 0.3,
    trigger_threshold: float = 0.2,
    keyword_fallback: bool = False,
    cache_max_size: int = DEFAULT_MAX_SIZE,
    match_cache_size: int = 4096,
    load_defaults: bool = True,
    default_cache_ttl: int = 300,
    default_patterns_path: Path | None = None,
    load_entry_point_tools: bool = True,
    tools: ToolRegistry | None = None,
    cache: ResultCache | None = None,
    generations: GenerationStore | None = None,
    refresh_interval: float = 5.0,
    max_query_length: int = DEFAULT_MAX_QUERY_CHARS,
    cache_timer: Callable[[], float] = time.monotonic,
    recall_min_score: float = DEFAULT_RECALL_MIN_SCORE,
) -> PatternExecutionEngine:
    """Build a ready engine: tools registered, registry loaded (and seeded once).

    Args:
        definition_store: Persistent pattern definitions (e.g. ``SqlPatternDefinitionStore``).
        memory_store: Memories (e.g. ``SqlMemoryStore``).
        embedder: Embeds examples, queries and compared texts.
        health_probe: ``async () -> {component: {"healthy": bool, ...}}`` for the
            ``health_check`` tool; default: the engine's own probe.
        semantic_threshold: Global minimum hybrid similarity of a match by meaning
            (settings ``semantic_match_threshold``; a pattern's own threshold wins).
        trigger_threshold: Minimum hybrid similarity that confirms a trigger match
            (settings ``trigger_min_similarity``).
        keyword_fallback: Whether the seed's keyword guess runs when nothing
            matched and the request does not say (settings ``keyword_fallback``).
        cache_max_size: Entries of the local result cache (``TMWS_CACHE_MAX_SIZE``).
        match_cache_size: Entries of the registry's match cache.
        load_defaults: Seed the bundled default set into a never-seeded store
            (settings ``load_default_patterns``).
        default_cache_ttl: Cache TTL (seconds) of default-set entries that give
            none (``TMWS_CACHE_TTL``).
        default_patterns_path: Another default set to seed (YAML, same layout as ``patterns.yaml``).
        load_entry_point_tools: Load third-party tools from the ``tmws.tools`` entry-point group.
        tools: A tool registry to use (built-ins are added to it); default: a new one.
        cache: Result cache; default: ``LocalResultCache(cache_max_size, timer=cache_timer)``.
        generations: Tenant generation store; default: in-process.
        refresh_interval: Seconds between checks for registry changes by other replicas (0 = never).
        max_query_length: Maximum query characters.
        cache_timer: Clock of the default local cache (seconds, monotonic).
        recall_min_score: Default relevance floor of ``recall`` in [0, 1]
            (``TMWS_RECALL_MIN_SCORE``; a context's ``min_score`` overrides it).

    Returns:
        The engine.

    Raises:
        InvalidArgumentError: The default pattern set is invalid (e.g. names an unregistered tool).
    """
    registry_tools = tools if tools is not None else ToolRegistry()
    register_builtin_tools(registry_tools)
    if load_entry_point_tools:
        registry_tools.load_entry_points()
    registry = PatternRegistry(
        definition_store,
        embedder,
        registry_tools,
        semantic_threshold=semantic_threshold,
        match_cache_size=match_cache_size,
        load_defaults=load_defaults,
        default_cache_ttl=default_cache_ttl,
        defaults_path=default_patterns_path,
    )
    await registry.load()
    router = HybridDecisionRouter(
        registry, memory_store, trigger_threshold=trigger_threshold, keyword_fallback=keyword_fallback
    )
    return PatternExecutionEngine(
        registry,
        router,
        registry_tools,
        memory_store,
        embedder,
        health_probe=health_probe,
        cache=cache if cache is not None else LocalResultCache(cache_max_size, timer=cache_timer),
        generations=generations,
        refresh_interval=refresh_interval,
        max_query_length=max_query_length,
        recall_min_score=recall_min_score,
    )
