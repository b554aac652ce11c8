"""Wiring: builds the stores, the vector index, the embedder and the engine from settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pattern_service.config import Settings
from pattern_service.engine.engine import PatternExecutionEngine, build_engine
from pattern_service.engine.redis_sync import RedisCacheBackend
from pattern_service.health import TOOL_MAX_AGE, ProbeCache
from pattern_service.metrics import Metrics
from pattern_service.store.base import PatternDefinitionStore
from pattern_service.store.db import Database, aupgrade_to_head
from pattern_service.store.definitions import SqlPatternDefinitionStore
from pattern_service.store.embeddings import Embedder, OnnxEmbedder, create_embedder
from pattern_service.store.learning import SqlLearningStore
from pattern_service.store.memories import SqlMemoryStore
from pattern_service.store.outbox import VectorSync
from pattern_service.store.vectors.base import VectorIndex

log = logging.getLogger(__name__)

METRICS_REFRESH_SECONDS = 5.0
#: Seconds between reconciliations of a replica's own index with the shared SQL store.
RECONCILE_SECONDS = 30.0


def _vector_index(settings: Settings) -> VectorIndex:
    if settings.qdrant_url:
        from pattern_service.store.vectors.qdrant import QdrantVectorIndex

        return QdrantVectorIndex(url=settings.qdrant_url, api_key=settings.qdrant_api_key or None)
    if settings.qdrant_path:
        from pattern_service.store.vectors.qdrant import QdrantVectorIndex

        return QdrantVectorIndex(path=settings.qdrant_path)
    from pattern_service.store.vectors.edge import EdgeVectorIndex

    return EdgeVectorIndex(
        settings.vector_dir, index_threshold=settings.vector_index_threshold, hnsw_ef=settings.vector_hnsw_ef
    )


@dataclass
class Application:
    """Everything a server serves, built by :meth:`create` and released by :meth:`close`.

    Attributes:
        settings: The settings it was built from.
        metrics: Prometheus metrics.
        db: The SQL database (source of truth).
        index: The vector index.
        embedder: The text embedder.
        sync: The outbox syncer keeping the index in step with SQL.
        memory_store: Agent memories.
        learning_store: Success patterns.
        engine: The execution engine.
        redis: The Redis cache layer (``TMWS_REDIS_URL``), or ``None``.
        probes: The last :meth:`health` report, shared by the health monitor (which
            refreshes it) and the ``health_check`` tool (which reads it).
    """

    settings: Settings
    metrics: Metrics
    db: Database
    index: VectorIndex
    embedder: Embedder
    sync: VectorSync
    memory_store: SqlMemoryStore
    learning_store: SqlLearningStore
    engine: PatternExecutionEngine
    redis: RedisCacheBackend | None = None
    started_at: float = field(default_factory=time.time)
    probes: ProbeCache = field(init=False)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def create(cls, settings: Settings, metrics: Metrics | None = None) -> Application:
        """Migrate (if enabled), open every backend, reconcile the index and load the registry.

        Raises:
            UnavailableError: A backend cannot be reached.
            FailedPreconditionError: The index holds vectors of another embedding model.
        """
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        url = settings.resolved_database_url
        if settings.run_migrations:
            await aupgrade_to_head(url)
        db = Database(
            url,
            pool_size=settings.db_max_connections,
            pool_pre_ping=settings.db_pool_pre_ping,
            connect_timeout=settings.db_connect_timeout,
        )
        embedder = create_embedder(settings.embedder, model_cache_dir=settings.model_cache_dir)
        if isinstance(embedder, OnnxEmbedder):
            await embedder.aload()  # 0.3-0.7 s, off the event loop, before the first request
        index = _vector_index(settings)
        sync = VectorSync(db, index, embedder)
        await sync.ensure_collections()
        repaired = await sync.reconcile_all()
        log.info("vector index reconciled: %s", repaired)
        memory_store = SqlMemoryStore(db, index, embedder, sync)
        learning_store = SqlLearningStore(db, index, embedder, sync)
        app_ref: dict[str, Application] = {}

        async def health_probe() -> dict[str, Any]:
            return await app_ref["app"].probes.get(TOOL_MAX_AGE)

        definition_store: PatternDefinitionStore = SqlPatternDefinitionStore(db)
        redis = None
        if settings.redis_url:
            redis = RedisCacheBackend.from_url(
                settings.redis_url,
                namespace=settings.redis_namespace,
                timeout=settings.redis_timeout,
                local_max_size=settings.cache_max_size,
                local_ttl=settings.redis_local_ttl,
            )
        engine = await build_engine(
            definition_store=redis.definition_store(definition_store) if redis else definition_store,
            cache=redis.cache if redis else None,
            generations=redis.generations if redis else None,
            memory_store=memory_store,
            embedder=embedder,
            health_probe=health_probe,
            semantic_threshold=settings.semantic_match_threshold,
            trigger_threshold=settings.resolved_trigger_min_similarity,
            keyword_fallback=settings.keyword_fallback,
            cache_max_size=settings.cache_max_size,
            default_cache_ttl=settings.cache_ttl,
            load_defaults=settings.load_default_patterns,
            default_patterns_path=settings.patterns_file,
            recall_min_score=settings.recall_min_score,
        )
        app = cls(
            settings=settings,
            metrics=metrics or Metrics(),
            db=db,
            index=index,
            embedder=embedder,
            sync=sync,
            memory_store=memory_store,
            learning_store=learning_store,
            engine=engine,
            redis=redis,
        )
        app_ref["app"] = app
        app.metrics.watch_cache(engine.cache.stats, redis=redis is not None)
        if isinstance(embedder, OnnxEmbedder):
            embedder.on_batch = app.metrics.observe_embed_batch
        if redis is not None:
            if not settings.qdrant_url:
                app._follow_other_replicas(redis)
            await redis.start(engine.registry.refresh_if_changed)
        sync.start()
        app._tasks.append(asyncio.create_task(app._refresh_metrics(), name="metrics-refresh"))
        return app

    def __post_init__(self) -> None:
        self.probes = ProbeCache(self.health)

    async def health(self) -> dict[str, Any]:
        """Per-component health (seed: postgresql/sql, qdrant/index, sync, embedding).

        Returns:
            ``{"sql": bool, "vector_index": bool, "sync": {...}, "embedding": bool, "uptime_seconds": float}``.
        """
        report: dict[str, Any] = {"uptime_seconds": round(time.time() - self.started_at, 3)}
        try:
            await self.db.ping()
            report["sql"] = True
        except Exception as exc:
            report["sql"] = False
            report["sql_error"] = str(exc)
        try:
            await self.index.count("memory_embeddings")
            report["vector_index"] = True
        except Exception as exc:
            report["vector_index"] = False
            report["vector_index_error"] = str(exc)
        try:
            report["sync"] = {
                "pending": await self.sync.pending_count(),
                "lag_seconds": round(await self.sync.lag_seconds(), 3),
            }
        except Exception as exc:
            report["sync"] = {"error": str(exc)}
        try:
            vec = await self.embedder.embed(["health check"])
            report["embedding"] = bool(vec.shape == (1, self.embedder.dimension))
            report["embedding_model"] = self.embedder.model_id
        except Exception as exc:
            report["embedding"] = False
            report["embedding_error"] = str(exc)
        if self.redis is not None:
            report["redis"] = await self.redis.health()
        return report

    def _follow_other_replicas(self, redis: RedisCacheBackend) -> None:
        """Keep this replica's own (unshared) vector index in step with the others' writes.

        SQL is shared; the embedded index is not. Every change applied here is
        announced on Redis, and the others re-read those rows and apply them to
        their own index; a periodic reconciliation repairs lost messages.
        """
        sync = self.sync

        async def announce(collection: str, ids: list[str]) -> None:
            await redis.publish("vectors", collection=collection, ids=ids)

        async def follow(message: dict[str, Any]) -> None:
            ids = message.get("ids")
            if isinstance(ids, list):
                await sync.follow(str(message.get("collection")), [str(i) for i in ids])

        sync.on_applied = announce
        redis.add_handler("vectors", follow)
        self._tasks.append(asyncio.create_task(self._reconcile_periodically(), name="vector-reconcile"))

    async def _reconcile_periodically(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_SECONDS)
            try:
                await self.sync.reconcile_all()
            except Exception:
                log.warning("periodic vector reconciliation failed", exc_info=True)

    async def _refresh_metrics(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                self.metrics.outbox_depth.set(await self.sync.pending_count())
                self.metrics.sync_lag.set(await self.sync.lag_seconds())
            await asyncio.sleep(METRICS_REFRESH_SECONDS)

    async def close(self) -> None:
        """Stop background work and release every backend."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.sync.stop()
        await self.engine.close()
        if self.redis is not None:
            await self.redis.close()
        await self.index.close()
        await self.db.dispose()
        if isinstance(self.embedder, OnnxEmbedder):
            self.embedder.close()
