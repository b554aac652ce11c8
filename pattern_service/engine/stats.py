"""Engine execution statistics (seed ``get_stats()`` fields; rates are fractions 0-1).

Every execution that was routed counts, cache hits included (the seed's
defect: hits were not counted as executions, so the hit rate exceeded 100%).
``tokens_used`` is the cost of the path executed (0 on a hit); the baseline is
what an all-hybrid, uncached run of the same pattern would have cost (its
COMPREHENSIVE path), so ``tokens_saved = baseline_tokens - total_tokens_used``
counts what routing and caching saved (README, "How it works").

:class:`TenantStats` keeps these counters per tenant (plus route counts and
result-cache lookups) beside the process totals, so ``GetStats`` reports a
caller's own numbers only (see :meth:`PatternExecutionEngine.get_stats`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pattern_service.domain import PatternType

#: Tenants whose counters are kept; the least recently active one is dropped beyond this.
DEFAULT_MAX_TENANTS = 10_000


# The snapshots below are what ``GetStats`` reports: one frozen dataclass per
# section, whose fields are exactly those of the message of the same name in
# ``pattern_execution_service.proto`` (``tests/api/test_stats_convert.py`` keeps
# them equal). A subclass may add counters that stay off the wire (they show
# in the ``service_stats`` tool, which reports :meth:`StatsSnapshot.as_dict`).


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    """The ``engine`` section: executions (cache hits included), tokens and their rates (fractions 0-1)."""

    total_executions: int = 0
    successful_executions: int = 0
    failed_executions: int = 0
    cache_hits: int = 0
    avg_execution_time_ms: float = 0.0
    total_tokens_used: int = 0
    success_rate: float = 0.0
    cache_hit_rate: float = 0.0
    baseline_tokens: int = 0
    tokens_saved: int = 0
    token_reduction_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    """The ``registry`` section: definitions (per type) and the match cache (``cache_hit_rate`` 0-1)."""

    total_patterns: int = 0
    patterns_by_type: dict[str, int] = field(default_factory=dict)
    cache_hits: int = 0
    cache_misses: int = 0
    cache_hit_rate: float = 0.0
    cache_size: int = 0
    registry_version: int = 0


@dataclass(frozen=True, slots=True)
class RouterSnapshot:
    """The ``router`` section: decisions, per chosen type as counts and as fractions 0-1."""

    total_routes: int = 0
    routes_by_type: dict[str, int] = field(default_factory=dict)
    route_distribution: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RouterTotals(RouterSnapshot):
    """The process's ``router`` section: also ``no_match_count`` (queries refused with ``NO_PATTERN_MATCHED``)."""

    no_match_count: int = 0


@dataclass(frozen=True, slots=True)
class CacheSnapshot:
    """The ``cache`` section: result-cache lookups (``local_hits + redis_hits == hits``), size, Redis state."""

    hits: int = 0
    misses: int = 0
    local_hits: int = 0
    redis_hits: int = 0
    evictions: int = 0
    invalidations: int = 0
    hit_rate: float = 0.0
    local_cache_size: int = 0
    redis_available: bool = False


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """What ``GetStats`` reports (see :meth:`PatternExecutionEngine.get_stats`)."""

    engine: EngineSnapshot
    registry: RegistrySnapshot
    router: RouterSnapshot
    cache: CacheSnapshot

    def as_dict(self) -> dict[str, Any]:
        """``{"engine": {...}, "registry": {...}, "router": {...}, "cache": {...}}``, subclass counters included."""
        return asdict(self)


@dataclass(slots=True)
class EngineStats:
    """Counters of the engine; :meth:`snapshot` gives the ``engine`` section of ``get_stats``."""

    total_executions: int = 0
    successful_executions: int = 0
    failed_executions: int = 0
    cache_hits: int = 0
    total_time_ms: float = 0.0
    total_tokens_used: int = 0
    baseline_tokens: int = 0

    def record(self, *, success: bool, cache_hit: bool, time_ms: float, tokens: int, baseline: int) -> None:
        """Count one execution.

        Args:
            success: Whether every part succeeded.
            cache_hit: Served from cache.
            time_ms: Wall time, milliseconds.
            tokens: Tokens of the path executed (0 on a hit).
            baseline: Tokens an all-hybrid uncached run would have used.
        """
        self.total_executions += 1
        if success:
            self.successful_executions += 1
        else:
            self.failed_executions += 1
        if cache_hit:
            self.cache_hits += 1
        self.total_time_ms += time_ms
        self.total_tokens_used += tokens
        self.baseline_tokens += baseline

    def snapshot(self) -> EngineSnapshot:
        """The counters now, with their averages and rates."""
        n = self.total_executions
        saved = self.baseline_tokens - self.total_tokens_used
        return EngineSnapshot(
            total_executions=n,
            successful_executions=self.successful_executions,
            failed_executions=self.failed_executions,
            cache_hits=self.cache_hits,
            avg_execution_time_ms=self.total_time_ms / n if n else 0.0,
            total_tokens_used=self.total_tokens_used,
            success_rate=self.successful_executions / n if n else 0.0,
            cache_hit_rate=self.cache_hits / n if n else 0.0,
            baseline_tokens=self.baseline_tokens,
            tokens_saved=saved,
            token_reduction_rate=saved / self.baseline_tokens if self.baseline_tokens else 0.0,
        )


@dataclass(slots=True)
class RouteStats:
    """Routing decisions of one tenant; :meth:`snapshot` gives that tenant's ``router`` section."""

    total_routes: int = 0
    by_type: dict[str, int] = field(default_factory=lambda: {t.value: 0 for t in PatternType})

    def record(self, pattern_type: PatternType) -> None:
        """Count one decision for ``pattern_type``."""
        self.total_routes += 1
        self.by_type[pattern_type.value] += 1

    def snapshot(self) -> RouterSnapshot:
        """``total_routes``, ``routes_by_type`` (counts), ``route_distribution`` (fractions 0-1)."""
        n = self.total_routes
        return RouterSnapshot(
            total_routes=n,
            routes_by_type=dict(self.by_type),
            route_distribution={t: (c / n if n else 0.0) for t, c in self.by_type.items()},
        )


@dataclass(slots=True)
class _Tenant:
    engine: EngineStats = field(default_factory=EngineStats)
    routes: RouteStats = field(default_factory=RouteStats)
    cache_lookups: int = 0
    redis_hits: int = 0


class TenantStats:
    """Per-tenant engine, route and cache-lookup counters, and the process totals.

    Args:
        total: The process-wide counters (also updated by :meth:`record`).
        max_tenants: Tenants kept; beyond it the least recently active tenant's
            counters are dropped (an open server accepts any ``x-tenant-id``, so
            this bounds memory).
    """

    def __init__(self, total: EngineStats | None = None, max_tenants: int = DEFAULT_MAX_TENANTS):
        self.total = total if total is not None else EngineStats()
        self._max = max_tenants
        self._tenants: OrderedDict[str, _Tenant] = OrderedDict()

    def _of(self, tenant_id: str) -> _Tenant:
        entry = self._tenants.get(tenant_id)
        if entry is None:
            entry = self._tenants[tenant_id] = _Tenant()
            while len(self._tenants) > self._max:
                self._tenants.popitem(last=False)
        else:
            self._tenants.move_to_end(tenant_id)
        return entry

    def record(
        self,
        tenant_id: str,
        *,
        success: bool,
        cache_hit: bool,
        cache_lookup: bool,
        time_ms: float,
        tokens: int,
        baseline: int,
        cache_layer: str | None = None,
    ) -> None:
        """Count one execution of ``tenant_id`` (see :meth:`EngineStats.record`).

        Args:
            tenant_id: Caller tenant.
            success: Whether every part succeeded.
            cache_hit: Served from cache.
            cache_lookup: The result cache was consulted (hit or miss).
            time_ms: Wall time, milliseconds.
            tokens: Tokens of the path executed (0 on a hit).
            baseline: Tokens an all-hybrid uncached run would have used.
            cache_layer: On a hit, the layer that answered (``"local"`` or ``"redis"``).
        """
        entry = self._of(tenant_id)
        for counters in (self.total, entry.engine):
            counters.record(success=success, cache_hit=cache_hit, time_ms=time_ms, tokens=tokens, baseline=baseline)
        if cache_lookup:
            entry.cache_lookups += 1
        if cache_hit and cache_layer == "redis":
            entry.redis_hits += 1

    def record_route(self, tenant_id: str, pattern_type: PatternType) -> None:
        """Count one routing decision of ``tenant_id``."""
        self._of(tenant_id).routes.record(pattern_type)

    def _peek(self, tenant_id: str) -> _Tenant:
        return self._tenants.get(tenant_id) or _Tenant()

    def engine(self, tenant_id: str) -> EngineSnapshot:
        """The ``engine`` section for one tenant (zeros for an unknown tenant)."""
        return self._peek(tenant_id).engine.snapshot()

    def router(self, tenant_id: str) -> RouterSnapshot:
        """The ``router`` section for one tenant."""
        return self._peek(tenant_id).routes.snapshot()

    def cache(self, tenant_id: str, shared: CacheSnapshot) -> CacheSnapshot:
        """``shared`` (the cache's own snapshot) with the lookups of one tenant.

        ``hits``, ``misses``, ``local_hits``, ``redis_hits`` and ``hit_rate`` become
        the tenant's (every hit is either local or Redis: ``local_hits + redis_hits
        == hits``); the shared facts (evictions, invalidations, size, Redis state
        and any counters of a subclass) stay as they are.
        """
        entry = self._peek(tenant_id)
        hits = entry.engine.cache_hits
        misses = max(0, entry.cache_lookups - hits)
        lookups = hits + misses
        return replace(
            shared,
            hits=hits,
            misses=misses,
            local_hits=hits - entry.redis_hits,
            redis_hits=entry.redis_hits,
            hit_rate=hits / lookups if lookups else 0.0,
        )

    def tenants(self) -> list[str]:
        """Tenants with counters, least recently active first."""
        return list(self._tenants)
