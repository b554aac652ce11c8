"""Prometheus metrics, exposed over HTTP on ``TMWS_METRICS_ADDRESS``.

Names come from the seeds: ``tmws_pattern_executions_total`` and
``tmws_pattern_execution_duration_seconds`` (``PATTERN_SERVICE_API.md``,
"Prometheus Metrics"), ``pattern_match_latency_seconds`` and
``pattern_sync_lag_seconds`` (``PATTERN_LEARNING_QUICK_START.md``,
"Monitoring"). Each server owns its own registry, so several servers can run
in one process (tests) without clashing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from pattern_service.api.rpc_metrics import RpcMetrics
from pattern_service.domain import ExecutionResult, PatternType
from pattern_service.engine.stats import CacheSnapshot

log = logging.getLogger(__name__)

_EXEC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5)
_MATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_QUEUE_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class CacheCollector(Collector):
    """Result-cache counters read from the cache's own tallies at scrape time (nothing on the hot path).

    Exports ``tmws_cache_hits_total``, ``tmws_cache_misses_total`` and
    ``tmws_cache_evictions_total`` by ``layer`` (``local``: the in-process LRU;
    ``redis``: the shared layer, present with ``TMWS_REDIS_URL``), plus
    ``tmws_cache_invalidations_total`` and the ``tmws_cache_entries`` gauge of the local layer.
    A lookup the local layer misses goes to Redis when it is configured: local misses =
    Redis hits + Redis misses. Redis expires its entries by TTL itself (no eviction count).

    Args:
        stats: Returns the cache's ``stats()`` snapshot (``local_hits``, ``redis_hits``, ``misses``, …).
        redis: Whether the Redis layer is configured.
    """

    def __init__(self, stats: Callable[[], CacheSnapshot], *, redis: bool):
        self._stats = stats
        self._redis = redis

    def collect(self) -> Iterator[Any]:
        """The families, from one ``stats()`` snapshot."""
        s = self._stats()
        hits = CounterMetricFamily("tmws_cache_hits", "Result-cache hits by layer.", labels=["layer"])
        misses = CounterMetricFamily("tmws_cache_misses", "Result-cache misses by layer.", labels=["layer"])
        evictions = CounterMetricFamily(
            "tmws_cache_evictions", "Entries evicted for capacity (LRU) by layer.", labels=["layer"]
        )
        hits.add_metric(["local"], s.local_hits)
        evictions.add_metric(["local"], s.evictions)
        if self._redis:
            misses.add_metric(["local"], s.misses + s.redis_hits)
            hits.add_metric(["redis"], s.redis_hits)
            misses.add_metric(["redis"], s.misses)
        else:
            misses.add_metric(["local"], s.misses)
        yield hits
        yield misses
        yield evictions
        yield CounterMetricFamily(
            "tmws_cache_invalidations",
            "Tenant-wide cache invalidations (writes that change what cached results depend on).",
            value=s.invalidations,
        )
        yield GaugeMetricFamily("tmws_cache_entries", "Entries in the local result cache.", value=s.local_cache_size)


class Metrics:
    """The service's metrics on a private registry.

    Attributes:
        registry: The ``CollectorRegistry`` the HTTP endpoint serves.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.executions = Counter(
            "tmws_pattern_executions_total",
            "Pattern executions by executed path, outcome and cache hit.",
            ["pattern_type", "success", "cache_hit"],
            registry=self.registry,
        )
        self.execution_duration = Histogram(
            "tmws_pattern_execution_duration_seconds",
            "Server-side execution time by executed path, seconds.",
            ["pattern_type"],
            buckets=_EXEC_BUCKETS,
            registry=self.registry,
        )
        self.match_latency = Histogram(
            "pattern_match_latency_seconds",
            "MatchPatterns latency, seconds.",
            buckets=_MATCH_BUCKETS,
            registry=self.registry,
        )
        self.rpc_errors = Counter(
            "tmws_grpc_errors_total",
            "RPCs and ExecuteMany items that ended in an error, by method and status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self.sync_lag = Gauge(
            "pattern_sync_lag_seconds",
            "Age of the oldest vector-index change not yet applied (0 when in sync), seconds.",
            registry=self.registry,
        )
        self.outbox_depth = Gauge(
            "tmws_vector_outbox_depth", "Vector-index changes waiting in the outbox.", registry=self.registry
        )
        self.embed_batch_size = Histogram(
            "tmws_embedder_batch_size",
            "Texts per embedding inference job (ONNX embedder).",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.embed_queue_wait = Histogram(
            "tmws_embedder_queue_wait_seconds",
            "Time the oldest text of an inference job waited in the embedder's queue, seconds.",
            buckets=_QUEUE_BUCKETS,
            registry=self.registry,
        )
        #: Per-RPC ``grpc_server_*`` metrics, recorded by the call guard.
        self.rpc = RpcMetrics(self.registry)
        self._execution_children: dict[tuple[PatternType, bool, bool], tuple[Any, Any]] = {}
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def observe_execution(self, result: ExecutionResult) -> None:
        """Record one execution (its ``execution_time_ms`` as seconds).

        The labelled children are resolved once per label combination and kept:
        ``labels()`` validates and locks on every call, a measurable share of a
        cache hit's CPU.
        """
        key = (result.pattern_type, result.success, result.cache_hit)
        children = self._execution_children.get(key)
        if children is None:
            kind = result.pattern_type.value
            children = self._execution_children[key] = (
                self.executions.labels(
                    kind, "true" if result.success else "false", "true" if result.cache_hit else "false"
                ),
                self.execution_duration.labels(kind),
            )
        children[0].inc()
        children[1].observe(result.execution_time_ms / 1000.0)

    def observe_embed_batch(self, texts: int, queue_wait: float) -> None:
        """Record one embedding inference job: its texts and its oldest text's queue wait (seconds)."""
        self.embed_batch_size.observe(texts)
        self.embed_queue_wait.observe(queue_wait)

    def watch_cache(self, stats: Callable[[], CacheSnapshot], *, redis: bool) -> None:
        """Export the result cache's counters (see :class:`CacheCollector`); call once."""
        self.registry.register(CacheCollector(stats, redis=redis))

    def observe_error(self, method: str, code: str) -> None:
        """Record an RPC (or stream item) that failed with status ``code``."""
        self.rpc_errors.labels(method, code).inc()

    def serve(self, address: str) -> int:
        """Start the HTTP endpoint on ``host:port`` (port 0 picks one).

        Returns:
            The port bound.
        """
        host, _, port = address.rpartition(":")
        self._server, self._thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=self.registry)
        bound = int(self._server.server_port)
        log.info("metrics on http://%s:%d/metrics", host or "127.0.0.1", bound)
        return bound

    def close(self) -> None:
        """Stop the HTTP endpoint if it runs."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
