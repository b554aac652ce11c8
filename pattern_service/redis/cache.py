"""Redis as the second result-cache layer, with per-tenant generations shared by every replica.

Layers: a :class:`~pattern_service.engine.cache.LocalResultCache` in front
(entries live ``min(pattern ttl, local_ttl)``, default 60 s), Redis behind it
(entries live the pattern's own ``cache_ttl``; a TTL of 0 is cached nowhere).
Keys: ``tmws:<namespace>:result:<sha256 cache key>`` (values:
:mod:`.codec`), ``tmws:<namespace>:gen:<tenant>`` (the tenant's data
generation counter) and ``tmws:<namespace>:epoch`` (random, set once per
Redis data set). Invalidation messages travel on ``tmws:<namespace>:events``
(:mod:`.sync`).

Correctness rules:

- Redis up: a memory-reading key includes the tenant's generation, read from
  Redis on every such request; a write INCRs it (and publishes, so other
  replicas drop that tenant's local entries), so every stale entry in every
  layer of every replica is unreachable at once. The generation in a key is
  ``epoch << 64 | counter``: a Redis that lost its data (restart without
  persistence, failover to an empty replica) gets a new random epoch, so no
  replica's old local entry becomes reachable again even if it never noticed
  the restart; a counter that expired (30 idle days) restarts at the current
  time in microseconds, above any value it had.
- Redis down (any failed call marks it unavailable; :class:`RedisLink` then
  stops calling it and probes in the background): generations come from a
  per-process *outage* space (negative, with a random process nonce), so no
  key cached before the outage is served during it and no key of the outage
  is ever served after it. A write bumps the tenant's outage generation and is
  remembered. Cross-replica invalidation is impossible while Redis is down;
  the staleness another replica can see is bounded by the local TTL.
- Redis back: before the layer is used again the replica INCRs (and
  publishes) the generation of every tenant it wrote during the outage, and
  drops all its local memory-reading entries. Only then is it marked available.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from redis.asyncio import Redis

from pattern_service.domain import ExecutionResult
from pattern_service.engine.cache import DEFAULT_MAX_SIZE, LocalResultCache
from pattern_service.engine.stats import CacheSnapshot
from pattern_service.redis.codec import decode_result, encode_result
from pattern_service.redis.link import RedisLink, RedisUnavailable

logger = logging.getLogger(__name__)

DEFAULT_LOCAL_TTL = 60.0
GENERATION_IDLE_TTL = 30 * 86_400
SCAN_BATCH = 500


class RedisGenerationStore:
    """:class:`~pattern_service.engine.ports.GenerationStore` in Redis, with a local outage space.

    Args:
        link: The Redis link.
        clock: Wall clock in seconds (initial generations are its microseconds).

    Attributes:
        pending: Tenants written while Redis was down (replayed by :meth:`replay_pending`).
        publish: ``async (tenant_id) -> None`` telling the other replicas to drop the tenant's
            local entries after a bump (set by the backend; must not raise).
    """

    def __init__(self, link: RedisLink, *, clock: Callable[[], float] = time.time) -> None:
        self._link = link
        self._clock = clock
        self._nonce = secrets.randbits(31) | 1
        self._seq = itertools.count(1)
        self._outage: dict[str, int] = {}
        self.pending: set[str] = set()
        self.publish: Callable[[str], Awaitable[None]] | None = None

    def _fresh_outage_generation(self) -> int:
        return -((self._nonce << 40) | next(self._seq))

    async def get(self, tenant_id: str) -> int:
        """The tenant's generation (Redis; while Redis is down, the tenant's outage generation).

        From Redis it is ``epoch << 64 | counter``: the namespace's epoch (random, set once
        per Redis data set, so a Redis that lost its data never gives a value seen before) and
        the tenant's counter.
        """
        keys = (self._link.generation_key(tenant_id), self._link.epoch_key)
        try:
            values: Any = await self._link.call(lambda r: r.mget(keys))
            if None in values:
                values = await self._link.call(lambda r: self._init(r, *keys))
            return _combine(values)
        except (RedisUnavailable, ValueError, TypeError):
            return self._outage.setdefault(tenant_id, self._fresh_outage_generation())

    async def _init(self, r: Redis, key: str, epoch_key: str) -> Any:
        async with r.pipeline(transaction=True) as pipe:
            pipe.set(epoch_key, secrets.randbits(62) + 1, nx=True)
            pipe.set(key, int(self._clock() * 1_000_000), nx=True, ex=GENERATION_IDLE_TTL)
            pipe.mget([key, epoch_key])
            *_, values = await pipe.execute()
        return values

    async def bump(self, tenant_id: str) -> int:
        """Advance the tenant's generation (INCR in Redis; while Redis is down: a new outage
        generation, and the tenant is replayed when Redis is back)."""
        try:
            value = await self._incr(tenant_id, self._link.call)
        except (RedisUnavailable, ValueError, TypeError):
            self.pending.add(tenant_id)
            value = self._outage[tenant_id] = self._fresh_outage_generation()
            return value
        if self.publish is not None:
            await self.publish(tenant_id)
        return value

    async def _incr(self, tenant_id: str, call: Callable[[Callable[[Redis], Awaitable[Any]]], Awaitable[Any]]) -> int:
        key, epoch_key = self._link.generation_key(tenant_id), self._link.epoch_key
        start = int(self._clock() * 1_000_000)

        async def op(r: Redis) -> Any:
            async with r.pipeline(transaction=True) as pipe:
                pipe.set(epoch_key, secrets.randbits(62) + 1, nx=True)
                pipe.set(key, start, nx=True)
                pipe.incr(key)
                pipe.expire(key, GENERATION_IDLE_TTL)
                pipe.get(epoch_key)
                _, _, counter, _, epoch = await pipe.execute()
            return [counter, epoch]

        return _combine(await call(op))

    async def replay_pending(self) -> None:
        """INCR (and publish) every tenant written while Redis was down; forget the outage space.

        Raises:
            RedisUnavailable: A call failed (the remaining tenants stay pending).
        """
        for tenant_id in list(self.pending):
            await self._incr(tenant_id, self._link.call_raw)
            self.pending.discard(tenant_id)
            if self.publish is not None:
                await self.publish(tenant_id)
        self._outage.clear()


def _combine(values: Any) -> int:
    counter, epoch = values
    return (int(epoch) << 64) | int(counter)


class RedisResultCache:
    """:class:`~pattern_service.engine.ports.ResultCache` with a local layer in front of Redis.

    Args:
        link: The Redis link.
        local_max_size: Entries of the local layer (``TMWS_CACHE_MAX_SIZE``).
        local_ttl: Upper bound of a local entry's life, seconds (``TMWS_REDIS_LOCAL_TTL``).
        timer: Monotonic clock of the local layer, seconds.
    """

    def __init__(
        self,
        link: RedisLink,
        *,
        local_max_size: int = DEFAULT_MAX_SIZE,
        local_ttl: float = DEFAULT_LOCAL_TTL,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._link = link
        self._local = LocalResultCache(local_max_size, timer=timer)
        self._local_ttl = local_ttl
        self._memory_tenants: set[str] = set()
        self.redis_hits = 0
        self.misses = 0
        self.invalidations = 0
        self.remote_invalidations = 0
        self.decode_errors = 0

    async def get(self, key: str) -> ExecutionResult | None:
        """See :meth:`ResultCache.get`: the local layer, then Redis (a Redis hit is copied to the local layer)."""
        hit = await self._local.get(key)
        if hit is not None:
            return hit
        rkey = self._link.result_key(key)

        async def op(r: Redis) -> Any:
            async with r.pipeline(transaction=False) as pipe:
                pipe.get(rkey)
                pipe.pttl(rkey)
                return await pipe.execute()

        try:
            data, pttl = await self._link.call(op)
        except RedisUnavailable:
            data, pttl = None, 0
        if data is not None:
            try:
                cached = decode_result(data)
            except ValueError:
                self.decode_errors += 1
                logger.warning("dropping undecodable cache value %s", rkey)
            else:
                self.redis_hits += 1
                ttl = min(self._local_ttl, pttl / 1000) if pttl and pttl > 0 else self._local_ttl
                await self._set_local(key, cached.tenant_id, cached.result, ttl, cached.reads_memory)
                return replace(cached.result, cache_hit=True, cache_layer="redis")
        self.misses += 1
        return None

    async def _set_local(self, key: str, tenant_id: str, value: ExecutionResult, ttl: float, reads: bool) -> None:
        await self._local.set(key, tenant_id, value, ttl, reads_memory=reads)
        if reads:
            self._memory_tenants.add(tenant_id)

    async def set(self, key: str, tenant_id: str, value: ExecutionResult, ttl: float, *, reads_memory: bool) -> None:
        """See :meth:`ResultCache.set`: local for ``min(ttl, local_ttl)``, Redis for ``ttl`` (``ttl <= 0``: nowhere)."""
        if ttl <= 0:
            return
        await self._set_local(key, tenant_id, value, min(ttl, self._local_ttl), reads_memory)
        if not self._link.available:
            return
        try:
            payload = encode_result(value, tenant_id=tenant_id, reads_memory=reads_memory)
        except (TypeError, ValueError):
            return
        rkey = self._link.result_key(key)
        with contextlib.suppress(RedisUnavailable):
            await self._link.call(lambda r: r.set(rkey, payload, px=max(1, int(ttl * 1000))))

    async def invalidate_tenant(self, tenant_id: str) -> int:
        """See :meth:`ResultCache.invalidate_tenant` (local layer; Redis entries are unreachable by generation)."""
        self.invalidations += 1
        self._memory_tenants.discard(tenant_id)
        return await self._local.invalidate_tenant(tenant_id)

    async def drop_remote(self, tenant_id: str) -> int:
        """Drop the tenant's local memory-reading entries because another replica wrote (pub/sub)."""
        self.remote_invalidations += 1
        self._memory_tenants.discard(tenant_id)
        return await self._local.invalidate_tenant(tenant_id)

    async def drop_memory_entries(self) -> int:
        """Drop every local memory-reading entry (Redis came back after an outage); returns how many."""
        dropped = 0
        tenants, self._memory_tenants = self._memory_tenants, set()
        for tenant_id in tenants:
            dropped += await self._local.invalidate_tenant(tenant_id)
        return dropped

    def drop_local(self) -> int:
        """See :meth:`ResultCache.drop_local`: the local layer only; Redis entries expire by TTL."""
        return self._local.drop_local()

    async def clear(self) -> int:
        """See :meth:`ResultCache.clear`: the local layer and this namespace's result keys (SCAN + UNLINK).

        Never FLUSHDB: other namespaces and other data in the same database are untouched.
        """
        dropped = await self._local.clear()
        self._memory_tenants.clear()
        self.invalidations += 1
        pattern = self._link.result_key("*")
        cursor = 0

        def page(r: Redis) -> Awaitable[tuple[int, int]]:
            return self._unlink_page(r, cursor, pattern)

        try:
            while True:
                cursor, dropped_now = await self._link.call(page)
                dropped += dropped_now
                if not cursor:
                    break
        except RedisUnavailable:
            logger.warning("redis clear incomplete: %s", self._link.last_error)
        return dropped

    @staticmethod
    async def _unlink_page(r: Redis, cursor: int, pattern: str) -> tuple[int, int]:
        """One SCAN page of ``pattern`` and UNLINK of what it found; returns (next cursor, keys unlinked)."""
        next_cursor, keys = await r.scan(cursor=cursor, match=pattern, count=SCAN_BATCH)
        unlinked = int(await r.unlink(*keys)) if keys else 0
        return int(next_cursor), unlinked

    async def close(self) -> None:
        """See :meth:`ResultCache.close`: drops the local layer (Redis keys stay; the link is closed by its owner)."""
        await self._local.close()
        self._memory_tenants.clear()

    def stats(self) -> RedisCacheSnapshot:
        """See :meth:`ResultCache.stats`; also ``remote_invalidations``, ``redis_errors``, ``decode_errors``."""
        local = self._local.stats()
        hits = local.local_hits + self.redis_hits
        lookups = hits + self.misses
        return RedisCacheSnapshot(
            hits=hits,
            misses=self.misses,
            local_hits=local.local_hits,
            redis_hits=self.redis_hits,
            evictions=local.evictions,
            invalidations=self.invalidations,
            hit_rate=hits / lookups if lookups else 0.0,
            local_cache_size=local.local_cache_size,
            redis_available=self._link.available,
            remote_invalidations=self.remote_invalidations,
            redis_errors=self._link.errors,
            decode_errors=self.decode_errors,
        )


@dataclass(frozen=True, slots=True)
class RedisCacheSnapshot(CacheSnapshot):
    """The cache section of a two-layer cache: also the Redis layer's own counters (not on the wire).

    Attributes:
        remote_invalidations: Invalidations announced by other replicas and applied here.
        redis_errors: Redis calls that failed (the cache then served from its local layer).
        decode_errors: Redis entries that could not be decoded (treated as misses).
    """

    remote_invalidations: int = 0
    redis_errors: int = 0
    decode_errors: int = 0
