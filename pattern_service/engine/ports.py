"""The interfaces the engine uses: its ports. Infrastructure implements them.

The engine (registry, router, executors, cache) depends only on these
protocols; SQL stores (:mod:`pattern_service.store`), embedders
(:mod:`pattern_service.store.embeddings`) and Redis (:mod:`pattern_service.redis`)
implement them, and :mod:`pattern_service.app` wires the implementations in.

Every method is scoped by ``tenant_id`` where data belongs to a tenant: no
call ever reads or changes another tenant's rows or vectors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from pattern_service.domain import (
    ExecutionResult,
    Memory,
    MemoryAggregate,
    MemoryFilter,
    NewMemory,
    PatternDefinition,
)
from pattern_service.engine.stats import CacheSnapshot


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors.

    Attributes:
        model_id: Identifies the vector space; stored with every vector.
        dimension: Vector size.
    """

    model_id: str
    dimension: int

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed ``texts``.

        Returns:
            Array of shape ``(len(texts), dimension)``, rows L2-normalised.
        """
        ...


class PatternDefinitionStore(Protocol):
    """Persistent pattern definitions (global, shared by all tenants) and the registry version."""

    async def load(self) -> tuple[list[PatternDefinition], int]:
        """All stored definitions and the current registry version."""
        ...

    async def load_state(self) -> tuple[list[PatternDefinition], int, dict[str, Any] | None]:
        """All stored definitions, the registry version and the stored confidence calibration (one read)."""
        ...

    async def is_seeded(self) -> bool:
        """Whether the default set was ever loaded (so a deleted default stays deleted)."""
        ...

    async def apply_batch(
        self,
        definitions: Sequence[PatternDefinition],
        *,
        mark_seeded: bool = False,
        calibration: Mapping[str, Any] | None = None,
    ) -> tuple[list[PatternDefinition], int, int, int]:
        """Insert or replace definitions by name in one transaction.

        Args:
            definitions: Already validated, unique names.
            mark_seeded: Also record that the default set has been loaded.
            calibration: Also replace the stored confidence calibration (same transaction).

        Returns:
            (stored definitions with timestamps, created count, replaced count,
            new registry version).
        """
        ...

    async def delete(self, name: str) -> int:
        """Delete one definition; returns the new registry version.

        Raises:
            NotFoundError: No definition has that name.
        """
        ...

    async def version(self) -> int:
        """The current registry version (for replicas to notice changes)."""
        ...


class MemoryStore(Protocol):
    """Agent memories (the SQL store embeds them through its vector binding, ``store.memory_binding``)."""

    async def store(self, memory: NewMemory) -> Memory:
        """Store a memory; returns it once SQL has committed (the vector follows via the outbox)."""
        ...

    async def recall(self, tenant_id: str, query: str, flt: MemoryFilter, limit: int) -> list[Memory]:
        """Memories closest in meaning to ``query`` (``Memory.score`` set), best first."""
        ...

    async def search_by_tag(self, tenant_id: str, tags: Sequence[str], flt: MemoryFilter, limit: int) -> list[Memory]:
        """Memories carrying any of ``tags``, newest first."""
        ...

    async def filter_by_importance(
        self, tenant_id: str, min_importance: float, flt: MemoryFilter, limit: int
    ) -> list[Memory]:
        """Memories with importance >= ``min_importance``, most important first."""
        ...

    async def recent(self, tenant_id: str, flt: MemoryFilter, limit: int) -> list[Memory]:
        """Memories newest first (``flt.since``/``until`` bound the window)."""
        ...

    async def aggregate(self, tenant_id: str, flt: MemoryFilter) -> MemoryAggregate:
        """Counts over the memories passing ``flt``."""
        ...

    async def count(self, tenant_id: str) -> int:
        """Number of memories of the tenant."""
        ...


class GenerationStore(Protocol):
    """Per-tenant data generation counters (start at 0)."""

    async def get(self, tenant_id: str) -> int:
        """The tenant's current generation."""
        ...

    async def bump(self, tenant_id: str) -> int:
        """Advance the tenant's generation; returns the new value."""
        ...


class ResultCache(Protocol):
    """A cache of execution results by content-addressed key."""

    async def get(self, key: str) -> ExecutionResult | None:
        """A fresh copy of the cached result (``cache_hit`` set), or ``None``."""
        ...

    async def set(self, key: str, tenant_id: str, value: ExecutionResult, ttl: float, *, reads_memory: bool) -> None:
        """Cache ``value`` for ``ttl`` seconds (``ttl <= 0``: not cached).

        Args:
            key: From :func:`cache_key`.
            tenant_id: Owner tenant (for :meth:`invalidate_tenant`).
            value: The result.
            ttl: Seconds.
            reads_memory: The result depends on the tenant's memories.
        """
        ...

    async def invalidate_tenant(self, tenant_id: str) -> int:
        """Drop the tenant's cached memory-reading results; returns how many were dropped."""
        ...

    async def clear(self) -> int:
        """Drop this cache's own entries (never a global flush of a shared store); returns how many."""
        ...

    def drop_local(self) -> int:
        """Drop the in-process entries only (e.g. every key of an old registry version); returns how many.

        Keys include the registry version, so after a registry change the old
        entries can never be hit again; dropping them frees their memory at once
        instead of when their TTL runs out. A shared layer keeps its entries
        (they expire there by TTL).
        """
        ...

    async def close(self) -> None:
        """Release connections and local memory (never flushes a shared store)."""
        ...

    def stats(self) -> CacheSnapshot:
        """``hits, misses, local_hits, redis_hits, evictions, invalidations, hit_rate (0-1),
        local_cache_size, redis_available`` (a subclass may add counters of its own layer)."""
        ...


#: ``async (message) -> None``: handles a message another replica published.
ReplicaHandler = Callable[[dict[str, Any]], Awaitable[object]]


class ReplicaBus(Protocol):
    """Best-effort messages between the replicas of one deployment (e.g. Redis pub/sub).

    Messages are JSON objects with a ``kind``; a replica never receives its own.
    Delivery is not guaranteed (a replica that was disconnected misses messages),
    so every user keeps a fallback: the registry polls its version, the vector
    index is reconciled periodically.
    """

    async def publish(self, kind: str, **fields: Any) -> None:
        """Publish ``{"kind": kind, **fields}`` to the other replicas (dropped while the bus is down).

        Never raises for an unreachable bus.
        """
        ...

    def add_handler(self, kind: str, handler: ReplicaHandler) -> None:
        """Call ``handler(message)`` for every message of ``kind`` another replica publishes."""
        ...


__all__ = [
    "Embedder",
    "GenerationStore",
    "MemoryStore",
    "PatternDefinitionStore",
    "ReplicaBus",
    "ReplicaHandler",
    "ResultCache",
]
