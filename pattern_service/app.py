"""Wiring: builds the stores, the vector index, the embedder, Redis and the engine from settings.

All wiring lives here: the engine knows only its ports (:mod:`pattern_service.engine.ports`),
:func:`build_engine` assembles it, :class:`Application` connects it to the infrastructure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pattern_service.config import Settings
from pattern_service.engine.builtin_tools import register_builtin_tools
from pattern_service.engine.cache import DEFAULT_MAX_SIZE, LocalResultCache
from pattern_service.engine.engine import PatternExecutionEngine
from pattern_service.engine.executors import DEFAULT_RECALL_MIN_SCORE
from pattern_service.engine.ports import Embedder, GenerationStore, MemoryStore, PatternDefinitionStore, ResultCache
from pattern_service.engine.registries import TenantRegistries
from pattern_service.engine.registry import PatternRegistry
from pattern_service.engine.router import HybridDecisionRouter
from pattern_service.engine.tools import HealthProbe, ToolRegistry
from pattern_service.health import TOOL_MAX_AGE, ProbeCache
from pattern_service.metrics import Metrics
from pattern_service.redis.sync import RedisCacheBackend
from pattern_service.redis.vectors import follow_vector_changes
from pattern_service.store.db import Database, aupgrade_to_head
from pattern_service.store.definitions import SqlPatternDefinitionStore
from pattern_service.store.disk import MIB, FreeSpace
from pattern_service.store.embeddings import OnnxEmbedder, create_embedder
from pattern_service.store.emptied import check_not_emptied
from pattern_service.store.learning import SqlLearningStore
from pattern_service.store.memories import SqlMemoryStore
from pattern_service.store.memory_admin import SqlMemoryAdmin, sweep_periodically
from pattern_service.store.outbox import VectorSync
from pattern_service.store.vector_bindings import VECTOR_BINDINGS
from pattern_service.store.vectors.base import VectorIndex

log = logging.getLogger(__name__)

METRICS_REFRESH_SECONDS = 5.0
#: Seconds between reconciliations of a replica's own index with the shared SQL store.
RECONCILE_SECONDS = 30.0


def vector_index(settings: Settings) -> VectorIndex:
    """The vector index ``settings`` name (Qdrant server, qdrant-client local mode or embedded qdrant-edge)."""
    if settings.qdrant_url:
        from pattern_service.store.vectors.qdrant import QdrantVectorIndex

        return QdrantVectorIndex(url=settings.qdrant_url, api_key=settings.qdrant_api_key or None)
    if settings.qdrant_path:
        from pattern_service.store.vectors.qdrant import QdrantVectorIndex

        return QdrantVectorIndex(path=settings.qdrant_path)
    from pattern_service.store.vectors.edge import EdgeVectorIndex

    return EdgeVectorIndex(
        settings.vector_dir,
        index_threshold=settings.vector_index_threshold,
        hnsw_ef=settings.vector_hnsw_ef,
        min_free_bytes=settings.min_free_disk_mb * MIB,
        search_threads=settings.vector_search_threads,
    )


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
    registries = TenantRegistries(registry, definition_store)
    await registries.load()
    router = HybridDecisionRouter(
        registry,
        memory_store,
        trigger_threshold=trigger_threshold,
        keyword_fallback=keyword_fallback,
        registries=registries.for_tenant,
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
        recall_min_score=recall_min_score,
        registries=registries,
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
        memory_admin: Resource-style memory operations of ``MemoryService``.
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
    memory_admin: SqlMemoryAdmin | None = None
    started_at: float = field(default_factory=time.time)
    probes: ProbeCache = field(init=False)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def create(cls, settings: Settings, metrics: Metrics | None = None) -> Application:
        """Migrate (if enabled), open every backend, reconcile the index and load the registry.

        Raises:
            UnavailableError: A backend cannot be reached.
            DiskFullError: A local store's filesystem has less than ``TMWS_MIN_FREE_DISK_MB`` free.
            FailedPreconditionError: The index holds vectors of another embedding model, or the
                database is empty beside a populated index (:mod:`pattern_service.store.emptied`).
        """
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        url = settings.resolved_database_url
        space = FreeSpace(settings.local_store_paths, settings.min_free_disk_mb * MIB)
        space.check("open the stores")  # before the migrations write and the index maps its files
        if settings.run_migrations:
            await aupgrade_to_head(url)
        db = Database(
            url,
            pool_size=settings.db_max_connections,
            pool_pre_ping=settings.db_pool_pre_ping,
            connect_timeout=settings.db_connect_timeout,
            # Every write needs room in the data directory: for SQLite, and for the embedded index that grows after it.
            before_write=space.check,
        )
        embedder = create_embedder(settings.embedder, model_cache_dir=settings.model_cache_dir)
        if isinstance(embedder, OnnxEmbedder):
            await embedder.aload()  # 0.3-0.7 s, off the event loop, before the first request
        index = vector_index(settings)
        sync = VectorSync(db, index, embedder, VECTOR_BINDINGS)
        try:
            await sync.ensure_collections()
            await check_not_emptied(
                db,
                index,
                database=url,
                index_location=settings.vector_location,
                accept=settings.accept_empty_database,
            )
        except BaseException:
            await index.close()  # released, so the refused start leaves the index as it found it
            await db.dispose()
            raise
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
        memory_admin = SqlMemoryAdmin(db, sync)
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
            memory_admin=memory_admin,
        )
        app_ref["app"] = app
        app.metrics.watch_cache(engine.cache.stats, redis=redis is not None)
        if isinstance(embedder, OnnxEmbedder):
            embedder.on_batch = app.metrics.observe_embed_batch
        if redis is not None:
            if not settings.qdrant_url:
                app._follow_other_replicas(redis)
            await redis.start(engine.registries.refresh_if_changed)
        sync.start()
        app._tasks.append(asyncio.create_task(app._refresh_metrics(), name="metrics-refresh"))
        app._tasks.append(
            asyncio.create_task(
                sweep_periodically(memory_admin, engine.memories_changed, settings.memory_sweep_interval),
                name="memory-expiry-sweep",
            )
        )
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
            for collection in self.sync.bindings:
                await self.index.count(collection)
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
        follow_vector_changes(redis, self.sync)
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
