"""Result cache and per-tenant data generations.

Keys are content-addressed: SHA-256 over the tenant, the
normalized query (lower-case, collapsed whitespace), the execution mode, the
canonical JSON of the context (sorted keys), the registry version and — for
paths that read memories — the tenant's data generation. A write bumps the
tenant's generation, so every cached memory-reading result of that tenant
becomes unreachable at once, in this process and (through a shared
:class:`GenerationStore`) in every replica; other tenants are untouched.

:class:`LocalResultCache` is the in-process layer: a cachetools ``TLRUCache``
(least recently used eviction, each entry expiring after its pattern's own
``cache_ttl``; defects of the original seed implementation: FIFO "LRU" caches, per-pattern TTLs
ignored, a TTL of 0 becoming 300). Values are immutable: result and metadata
are kept as JSON text and decoded into fresh objects on every hit. A Redis
layer (:mod:`pattern_service.redis`) plugs in behind the same two ports
(:mod:`pattern_service.engine.ports`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from cachetools import TLRUCache

from pattern_service.domain import ExecutionMode, ExecutionResult
from pattern_service.engine.stats import CacheSnapshot
from pattern_service.engine.text import normalize_query

DEFAULT_MAX_SIZE = 10_000


class LocalGenerationStore:
    """In-process :class:`GenerationStore` (one replica)."""

    def __init__(self) -> None:
        self._generations: dict[str, int] = {}

    async def get(self, tenant_id: str) -> int:
        """See :meth:`GenerationStore.get`."""
        return self._generations.get(tenant_id, 0)

    async def bump(self, tenant_id: str) -> int:
        """See :meth:`GenerationStore.bump`."""
        value = self._generations.get(tenant_id, 0) + 1
        self._generations[tenant_id] = value
        return value


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no insignificant whitespace.

    Raises:
        TypeError, ValueError: ``value`` is not JSON-compatible.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def cache_key(
    tenant_id: str,
    query: str,
    mode: ExecutionMode,
    context: Mapping[str, Any],
    registry_version: int,
    generation: int | None,
) -> str:
    """The SHA-256 hex cache key of one request.

    A key costs a canonical JSON dump and a SHA-256 (about 10 µs); the keys of
    requests without context, the common case and every repeated cache hit,
    are memoized (``functools.lru_cache`` of 4,096, keyed by every input).

    Args:
        tenant_id: Caller tenant.
        query: The query (normalized here).
        mode: Execution mode.
        context: Caller context (canonical JSON).
        registry_version: Registry version.
        generation: The tenant's data generation for memory-reading paths, else ``None``.

    Raises:
        TypeError, ValueError: ``context`` is not JSON-compatible (the caller then does not cache).
    """
    if not context:
        return _context_free_key(tenant_id, query, mode, registry_version, generation)
    return _digest([tenant_id, normalize_query(query), mode.value, dict(context), registry_version, generation])


@functools.lru_cache(maxsize=4096)
def _context_free_key(
    tenant_id: str, query: str, mode: ExecutionMode, registry_version: int, generation: int | None
) -> str:
    return _digest([tenant_id, normalize_query(query), mode.value, {}, registry_version, generation])


def _digest(material: list[Any]) -> str:
    return hashlib.sha256(canonical_json(material).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class _Entry:
    tenant_id: str
    expires_in: float
    reads_memory: bool
    template: ExecutionResult
    payload: str


class _Cache(TLRUCache[str, _Entry]):
    """TLRUCache that counts capacity evictions (``popitem``); expirations are not evictions."""

    evictions = 0

    def popitem(self) -> tuple[str, _Entry]:
        item = super().popitem()
        self.evictions += 1
        return item


def _ttu(_key: str, entry: _Entry, now: float) -> float:
    return now + entry.expires_in


class LocalResultCache:
    """In-process :class:`ResultCache`.

    Args:
        max_size: Maximum entries (default 10,000); least recently used are evicted first.
        timer: Monotonic clock in seconds (injectable for tests).
    """

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE, *, timer: Callable[[], float] = time.monotonic) -> None:
        self._cache = _Cache(maxsize=max(1, max_size), ttu=_ttu, timer=timer)
        self._max_size = max_size
        self._by_tenant: dict[str, set[str]] = {}
        self._indexed = 0
        self.hits = 0
        self.misses = 0
        self.invalidations = 0

    async def get(self, key: str) -> ExecutionResult | None:
        """See :meth:`ResultCache.get`."""
        entry = self._cache.get(key) if self._max_size > 0 else None
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        data = json.loads(entry.payload)
        t = entry.template
        return ExecutionResult(  # not dataclasses.replace: this is the cache-hit hot path
            pattern_name=t.pattern_name,
            pattern_type=t.pattern_type,
            success=t.success,
            result=data["result"],
            execution_time_ms=t.execution_time_ms,
            tokens_used=t.tokens_used,
            cache_hit=True,
            error=t.error,
            metadata=data["metadata"],
            routing=t.routing,
            cache_entry=entry,
            cache_layer="local",
        )

    async def set(self, key: str, tenant_id: str, value: ExecutionResult, ttl: float, *, reads_memory: bool) -> None:
        """See :meth:`ResultCache.set`; results that are not JSON-compatible are not cached."""
        if ttl <= 0 or self._max_size <= 0:
            return
        try:
            payload = canonical_json({"result": value.result, "metadata": value.metadata})
        except (TypeError, ValueError):
            return
        template = replace(value, result={}, metadata={}, cache_entry=None)
        self._cache[key] = _Entry(tenant_id, float(ttl), reads_memory, template, payload)
        if reads_memory:
            self._by_tenant.setdefault(tenant_id, set()).add(key)
            self._indexed += 1
            if self._indexed > 2 * self._cache.maxsize:
                self._prune_index()

    def _prune_index(self) -> None:
        live = set(self._cache.keys())
        self._by_tenant = {t: keys & live for t, keys in self._by_tenant.items() if keys & live}
        self._indexed = sum(len(k) for k in self._by_tenant.values())

    async def invalidate_tenant(self, tenant_id: str) -> int:
        """See :meth:`ResultCache.invalidate_tenant`."""
        dropped = 0
        for key in self._by_tenant.pop(tenant_id, set()):
            if self._cache.pop(key, None) is not None:
                dropped += 1
        self.invalidations += 1
        return dropped

    async def clear(self) -> int:
        """See :meth:`ResultCache.clear` (this process only)."""
        return self.drop_local()

    def drop_local(self) -> int:
        """See :meth:`ResultCache.drop_local`."""
        self._cache.expire()
        size = len(self._cache)
        self._cache.clear()
        self._by_tenant.clear()
        self._indexed = 0
        self.invalidations += 1
        return size

    async def close(self) -> None:
        """See :meth:`ResultCache.close` (drops the local entries)."""
        self._cache.clear()
        self._by_tenant.clear()
        self._indexed = 0

    def stats(self) -> CacheSnapshot:
        """See :meth:`ResultCache.stats` (no Redis layer: ``redis_hits`` 0, ``redis_available`` false)."""
        self._cache.expire()
        lookups = self.hits + self.misses
        return CacheSnapshot(
            hits=self.hits,
            misses=self.misses,
            local_hits=self.hits,
            redis_hits=0,
            evictions=self._cache.evictions,
            invalidations=self.invalidations,
            hit_rate=self.hits / lookups if lookups else 0.0,
            local_cache_size=len(self._cache),
            redis_available=False,
        )
