"""The Redis cache backend: the two-layer cache, shared generations and cross-replica messages.

:class:`RedisCacheBackend` builds the :class:`~.cache.RedisResultCache`
and :class:`~.cache.RedisGenerationStore` the engine is given, and runs
two background tasks:

- a monitor that PINGs Redis (every ``probe_interval`` seconds while it is
  down, every ``health_interval`` while it is up) and runs the recovery rule
  of :mod:`.cache` when it comes back;
- a pub/sub listener on ``tmws:<namespace>:events`` that drops a tenant's
  local entries when another replica wrote for it, and reloads the registry
  when another replica changed it. After every (re)subscription it reloads the
  registry once (messages may have been missed); the engine's version polling
  stays as the fallback while Redis is down.

Registry changes are published by wrapping the definition store
(:meth:`RedisCacheBackend.definition_store`): after ``apply_batch`` or
``delete`` committed, the new version is published with the layer it changed
(``"tenant"``: the tenant id, or ``null`` for the global layer), so a
replica reloads only that tenant's registry (every registry for the global
layer). Messages are JSON ``{"src": replica id, "kind": "tenant" |
"registry", ...}``; a replica ignores its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from pattern_service.domain import PatternDefinition
from pattern_service.engine.cache import DEFAULT_MAX_SIZE
from pattern_service.engine.ports import PatternDefinitionStore, ReplicaHandler
from pattern_service.redis.cache import DEFAULT_LOCAL_TTL, RedisGenerationStore, RedisResultCache
from pattern_service.redis.link import (
    DEFAULT_NAMESPACE,
    DEFAULT_TIMEOUT,
    RedisLink,
    RedisUnavailable,
    make_client,
)

logger = logging.getLogger(__name__)

LISTEN_POLL_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 2.0


class PublishingDefinitionStore:
    """A :class:`~pattern_service.engine.ports.PatternDefinitionStore` that publishes each committed change.

    Args:
        inner: The real store (of the global layer, or of ``tenant_id``'s layer).
        publish: ``async (new layer version, tenant id or None) -> None`` (must not raise).
        tenant_id: The tenant whose layer ``inner`` serves; ``None`` = the global layer.
    """

    def __init__(
        self,
        inner: Any,
        publish: Callable[[int, str | None], Awaitable[None]],
        tenant_id: str | None = None,
    ) -> None:
        self._inner = inner
        self._publish = publish
        self._tenant_id = tenant_id

    def for_layer(self, tenant_id: str) -> PublishingDefinitionStore:
        """The publishing store of ``tenant_id``'s layer (its changes are announced with the tenant)."""
        return PublishingDefinitionStore(self._inner.for_layer(tenant_id), self._publish, tenant_id)

    async def layer_versions(self) -> dict[str, int]:
        """Every tenant layer's version, by tenant."""
        versions: dict[str, int] = await self._inner.layer_versions()
        return versions

    async def load_layer(self) -> Any:
        """The tenant layer as stored (see ``SqlPatternDefinitionStore.load_layer``)."""
        return await self._inner.load_layer()

    async def load(self) -> tuple[list[PatternDefinition], int]:
        """See :meth:`PatternDefinitionStore.load`."""
        loaded: tuple[list[PatternDefinition], int] = await self._inner.load()
        return loaded

    async def load_state(self) -> tuple[list[PatternDefinition], int, dict[str, Any] | None]:
        """See :meth:`PatternDefinitionStore.load_state`."""
        state: tuple[list[PatternDefinition], int, dict[str, Any] | None] = await self._inner.load_state()
        return state

    async def is_seeded(self) -> bool:
        """See :meth:`PatternDefinitionStore.is_seeded`."""
        return bool(await self._inner.is_seeded())

    async def apply_batch(
        self,
        definitions: Sequence[PatternDefinition],
        *,
        mark_seeded: bool = False,
        calibration: Mapping[str, Any] | None = None,
        thresholds: Mapping[str, float] | None = None,
    ) -> tuple[list[PatternDefinition], int, int, int]:
        """See :meth:`PatternDefinitionStore.apply_batch`; publishes the new version after the commit."""
        extra = {} if thresholds is None else {"thresholds": thresholds}  # only tenant layers take thresholds
        result: tuple[list[PatternDefinition], int, int, int] = await self._inner.apply_batch(
            definitions, mark_seeded=mark_seeded, calibration=calibration, **extra
        )
        await self._publish(result[3], self._tenant_id)
        return result

    async def delete(self, name: str) -> int:
        """See :meth:`PatternDefinitionStore.delete`; publishes the new version after the commit.

        Raises:
            NotFoundError: No definition has that name.
        """
        version: int = await self._inner.delete(name)
        await self._publish(version, self._tenant_id)
        return version

    async def version(self) -> int:
        """See :meth:`PatternDefinitionStore.version`."""
        version: int = await self._inner.version()
        return version


class RedisCacheBackend:
    """Redis second cache layer with cross-replica invalidation (``TMWS_REDIS_URL``).

    It is also the deployment's :class:`~pattern_service.engine.ports.ReplicaBus`
    (:meth:`publish`, :meth:`add_handler`) on the same channel.

    Args:
        link: The Redis link (see :meth:`from_url`).
        local_max_size: Entries of the local layer.
        local_ttl: Upper bound of a local entry's life, seconds.
        probe_interval: Seconds between reconnection attempts while Redis is down.
        health_interval: Seconds between PINGs while Redis is up.
        cache_timer: Monotonic clock of the local layer, seconds.

    Attributes:
        link: The Redis link (availability, error count).
        cache: The result cache to give ``build_engine(cache=...)`` (:mod:`pattern_service.app`).
        generations: The generation store to give ``build_engine(generations=...)``.
        replica_id: This process's id in messages.
    """

    def __init__(
        self,
        link: RedisLink,
        *,
        local_max_size: int = DEFAULT_MAX_SIZE,
        local_ttl: float = DEFAULT_LOCAL_TTL,
        probe_interval: float = 0.5,
        health_interval: float = 2.0,
        cache_timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.link = link
        self.cache = RedisResultCache(link, local_max_size=local_max_size, local_ttl=local_ttl, timer=cache_timer)
        self.generations = RedisGenerationStore(link)
        self.generations.publish = self._publish_tenant
        self.replica_id = uuid.uuid4().hex
        self.subscribed = False
        self.messages_received = 0
        self._probe_interval = probe_interval
        self._health_interval = health_interval
        self._on_registry_change: Callable[[str | None], Awaitable[object]] | None = None
        self._handlers: dict[str, ReplicaHandler] = {}
        self._recovering = False
        self._tasks: list[asyncio.Task[None]] = []
        link.on_recover = self._recover

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout: float = DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> RedisCacheBackend:
        """A backend on a new client for ``url`` (nothing is connected before :meth:`start`).

        Args:
            url: ``redis://…``.
            namespace: Key namespace (``TMWS_REDIS_NAMESPACE``).
            timeout: Upper bound of one Redis call, seconds (``TMWS_REDIS_TIMEOUT``).
            **kwargs: The other arguments of :class:`RedisCacheBackend`.

        Raises:
            ValueError: Invalid namespace or URL.
        """
        return cls(RedisLink(make_client(url, timeout=timeout), namespace=namespace, timeout=timeout), **kwargs)

    def add_handler(self, kind: str, handler: ReplicaHandler) -> None:
        """See :meth:`ReplicaBus.add_handler <pattern_service.engine.ports.ReplicaBus.add_handler>`."""
        self._handlers[kind] = handler

    async def publish(self, kind: str, **fields: Any) -> None:
        """See :meth:`ReplicaBus.publish <pattern_service.engine.ports.ReplicaBus.publish>`.

        Dropped while Redis is down.
        """
        await self._publish({"kind": kind, **fields})

    def definition_store(self, inner: PatternDefinitionStore) -> PatternDefinitionStore:
        """Wrap the definition store so every committed registry change is published."""
        return PublishingDefinitionStore(inner, self._publish_registry)

    async def start(self, on_registry_change: Callable[[str | None], Awaitable[object]] | None = None) -> None:
        """Connect (a Redis that is down is not an error: the monitor keeps trying) and start the tasks.

        Args:
            on_registry_change: Called with the tenant whose layer another replica
                changed, or ``None`` (the global layer, or messages may have been
                missed): ``engine.registries.refresh_if_changed``.
        """
        self._on_registry_change = on_registry_change
        await self.link.probe()
        self._tasks = [
            asyncio.create_task(self._monitor(), name="redis-monitor"),
            asyncio.create_task(self._listen(), name="redis-listener"),
        ]

    async def close(self) -> None:
        """Stop the tasks and close the client (keys stay in Redis; nothing is flushed)."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a task stuck in a Redis call that ignores cancellation must not hold up shutdown.
            _, stuck = await asyncio.wait(self._tasks, timeout=2 * self.link.timeout + 1.0)
            for task in stuck:
                logger.warning("redis task %s did not stop within the timeout; left behind", task.get_name())
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await self.link.client.aclose()
        self.link.available = False

    async def health(self) -> dict[str, Any]:
        """Redis health for ``Application.health`` (``healthy`` false = degraded to the local layer).

        Returns:
            ``{"healthy", "status": "ok"|"degraded", "namespace", "subscribed", "errors",
            "pending_replays", "latency_ms" | "error"}``.
        """
        report: dict[str, Any] = {
            "namespace": self.link.namespace,
            "subscribed": self.subscribed,
            "errors": self.link.errors,
            "pending_replays": len(self.generations.pending),
        }
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.link.timeout):
                await self.link.client.ping()
        except Exception as exc:
            report.update(healthy=False, status="degraded", error=f"degraded, local cache layer only: {exc!r}")
            return report
        report["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
        if not self.link.available:
            report.update(healthy=False, status="degraded", error="degraded: reconnecting after an outage")
            return report
        report.update(healthy=True, status="ok")
        return report

    # ------------------------------------------------------------ internals

    async def _recover(self) -> None:
        self._recovering = True
        try:
            await self.generations.replay_pending()
        finally:
            self._recovering = False
        dropped = await self.cache.drop_memory_entries()
        logger.info("redis recovery: replayed writes, dropped %d local memory-reading entries", dropped)
        await self._refresh_registry()

    async def _publish(self, message: dict[str, Any]) -> None:
        if not (self.link.available or self._recovering):
            return
        data = json.dumps({"src": self.replica_id, **message}, separators=(",", ":"))
        try:
            await self.link.call_raw(lambda r: r.publish(self.link.channel, data))
        except RedisUnavailable as exc:
            self.link.errors += 1
            logger.warning("redis publish failed: %s", exc)

    async def _publish_tenant(self, tenant_id: str) -> None:
        await self._publish({"kind": "tenant", "tenant": tenant_id})

    async def _publish_registry(self, version: int, tenant_id: str | None = None) -> None:
        await self._publish({"kind": "registry", "version": version, "tenant": tenant_id})

    async def _refresh_registry(self, tenant_id: str | None = None) -> None:
        if self._on_registry_change is None:
            return
        try:
            await self._on_registry_change(tenant_id)
        except Exception:
            logger.warning("registry refresh after a redis message failed", exc_info=True)

    async def _handle(self, data: bytes) -> None:
        try:
            message = json.loads(data)
            if message.get("src") == self.replica_id:
                return
            kind = message.get("kind")
        except (ValueError, AttributeError):
            logger.warning("ignoring malformed message on %s", self.link.channel)
            return
        self.messages_received += 1
        if kind == "tenant":
            await self.cache.drop_remote(str(message.get("tenant")))
        elif kind == "registry":
            tenant = message.get("tenant")
            await self._refresh_registry(tenant if isinstance(tenant, str) else None)
        elif isinstance(kind, str) and (handler := self._handlers.get(kind)) is not None:
            try:
                await handler(message)
            except Exception:
                logger.warning("handling a %r message failed", kind, exc_info=True)

    async def _monitor(self) -> None:
        while True:
            available = await self.link.probe()
            await asyncio.sleep(self._health_interval if available else self._probe_interval)

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            pubsub = self.link.client.pubsub(ignore_subscribe_messages=True)
            try:
                async with asyncio.timeout(self.link.timeout):
                    await pubsub.subscribe(self.link.channel)
                self.subscribed = True
                backoff = 0.1
                await self._refresh_registry()  # changes published while we were not subscribed
                while True:
                    message = await pubsub.get_message(timeout=LISTEN_POLL_SECONDS)
                    if message is not None and message.get("type") == "message":
                        await self._handle(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.subscribed:
                    logger.warning("redis subscription lost (%r); resubscribing", exc)
                self.subscribed = False
            finally:
                self.subscribed = False
                await _close_pubsub(pubsub, self.link.timeout)
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF_SECONDS, backoff * 2)


async def _close_pubsub(pubsub: Any, within: float) -> None:
    """Close a pub/sub connection within ``within`` seconds, else drop it without waiting.

    redis-py's ``PubSub.aclose()`` can wait forever in ``StreamWriter.wait_closed()``
    (redis/redis-py#3941, open); the listener runs it in a ``finally`` after a
    cancellation, so an unbounded wait hung ``close()`` (seen once in the test suite
    under load). The close is shielded from the listener's own cancellation and, when
    it does not finish in time, the connection is disconnected with ``nowait=True``
    (the workaround named in the issue).
    """
    closing = asyncio.ensure_future(pubsub.aclose())
    try:
        await asyncio.wait_for(asyncio.shield(closing), within)
    except Exception:  # TimeoutError, or the close failed: the connection goes either way
        connection = getattr(pubsub, "connection", None)
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.disconnect(nowait=True)
