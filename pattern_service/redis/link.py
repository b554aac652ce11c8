"""The connection to Redis: a self-reconnecting client, availability and the key layout of a namespace.

Every Redis call of the cache layer goes through :meth:`RedisLink.call`:
bounded by a short timeout, a failure is counted, marks Redis unavailable and
raises :class:`RedisUnavailable` (which the cache catches: callers never see
a Redis error). While unavailable no call reaches the network; the backend's
monitor calls :meth:`RedisLink.probe` until Redis answers, runs the recovery
hook, and only then marks it available again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_NAMESPACE = "pattern"
DEFAULT_TIMEOUT = 0.5
_NAMESPACE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class RedisUnavailable(Exception):
    """Redis is marked unavailable, or the call failed or timed out (never reaches a caller of the cache)."""


def make_client(url: str, *, timeout: float = DEFAULT_TIMEOUT) -> Redis:
    """A redis-py asyncio client that reconnects by itself.

    Args:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://``).
        timeout: Socket connect and read timeout, seconds.

    Returns:
        The client (connections are opened lazily).
    """
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), retries=1),
        health_check_interval=5,
        decode_responses=False,
    )


class RedisLink:
    """A Redis client, its availability and the key layout of one namespace.

    Every call goes through :meth:`call`: bounded by ``timeout`` seconds, a
    failure is counted, marks Redis unavailable and raises
    :class:`RedisUnavailable`; while unavailable no call reaches the network.
    :meth:`probe` (run by :class:`~pattern_service.redis.sync.RedisCacheBackend`)
    runs the recovery hook and marks Redis available again.

    Args:
        client: The redis-py asyncio client (see :func:`make_client`).
        namespace: Key namespace (letters, digits, ``_.-``); keys are ``tmws:<namespace>:…``.
        timeout: Upper bound of one call, seconds.

    Raises:
        ValueError: Empty namespace or one with other characters (it is used in SCAN patterns).
    """

    def __init__(self, client: Redis, *, namespace: str = DEFAULT_NAMESPACE, timeout: float = DEFAULT_TIMEOUT) -> None:
        if not namespace or not set(namespace) <= _NAMESPACE_CHARS:
            raise ValueError(f"redis namespace must be letters, digits, '_', '.' or '-', got {namespace!r}")
        self.client = client
        self.namespace = namespace
        self.prefix = f"tmws:{namespace}:"
        self.channel = f"{self.prefix}events"
        self.epoch_key = f"{self.prefix}epoch"
        self.timeout = timeout
        self.available = False
        self.errors = 0
        self.last_error = "not connected yet"
        self.on_recover: Callable[[], Awaitable[None]] | None = None
        self._recovering = asyncio.Lock()

    def result_key(self, key: str) -> str:
        """Redis key of a result cache key."""
        return f"{self.prefix}result:{key}"

    def generation_key(self, tenant_id: str) -> str:
        """Redis key of a tenant's generation."""
        return f"{self.prefix}gen:{tenant_id}"

    async def call(self, op: Callable[[Redis], Awaitable[T]]) -> T:
        """Run ``op(client)`` within the timeout.

        Raises:
            RedisUnavailable: Redis is marked unavailable, or the call failed (then it is marked so).
        """
        if not self.available:
            raise RedisUnavailable(self.last_error)
        try:
            async with asyncio.timeout(self.timeout):
                return await op(self.client)
        except Exception as exc:
            self.mark_unavailable(exc)
            raise RedisUnavailable(self.last_error) from exc

    def mark_unavailable(self, exc: BaseException) -> None:
        """Count a failure and stop using Redis until :meth:`probe` succeeds."""
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self.available:
            logger.warning("redis unavailable (%s); serving from the local cache layer", self.last_error)
        self.available = False

    async def probe(self) -> bool:
        """PING; when Redis answers after being unavailable, run the recovery hook, then mark it available.

        Returns:
            Whether Redis is available now.
        """
        try:
            async with asyncio.timeout(self.timeout):
                await self.client.ping()
        except Exception as exc:
            self.mark_unavailable(exc)
            return False
        if self.available:
            return True
        async with self._recovering:
            if self.available:
                return True
            try:
                if self.on_recover is not None:
                    await self.on_recover()
            except Exception as exc:
                self.mark_unavailable(exc)
                return False
            self.available = True
            logger.info("redis available again (namespace %s)", self.namespace)
        return True

    async def call_raw(self, op: Callable[[Redis], Awaitable[T]]) -> T:
        """Run ``op(client)`` within the timeout even while unavailable (recovery only).

        Raises:
            RedisUnavailable: The call failed or timed out.
        """
        try:
            async with asyncio.timeout(self.timeout):
                return await op(self.client)
        except Exception as exc:
            raise RedisUnavailable(f"{type(exc).__name__}: {exc}") from exc
