"""Service settings, read from ``TMWS_*`` environment variables (pydantic-settings).

Names keep the seeds' variables (``TMWS_DATABASE_URL``, ``TMWS_REDIS_URL``,
``TMWS_CACHE_TTL``, ``TMWS_CACHE_MAX_SIZE``, ``TMWS_DB_MAX_CONNECTIONS``,
``TMWS_DB_POOL_PRE_PING``; seed ``PATTERN_SERVICE_API.md``, "Environment
Configuration"). Every setting has a default that runs the embedded backends
(SQLite file, qdrant-edge index, in-process cache) under ``TMWS_DATA_DIR``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All settings of the service.

    Attributes:
        grpc_address: ``host:port`` the gRPC server listens on (``TMWS_GRPC_ADDRESS``).
        metrics_address: ``host:port`` of the Prometheus endpoint; empty disables it.
        data_dir: Directory for the embedded SQLite file and vector index.
        database_url: SQLAlchemy async URL; empty = SQLite file under ``data_dir``.
        db_max_connections: Connection pool size (PostgreSQL).
        db_pool_pre_ping: Check pooled connections before use.
        db_connect_timeout: Seconds to establish one database connection (PostgreSQL) before the
            unit of work fails with ``UNAVAILABLE`` (so calls fail fast while the database is down).
        run_migrations: Run ``alembic upgrade head`` on start.
        min_free_disk_mb: MiB that must stay free on the filesystem of each local store (SQLite file,
            embedded vector index) before it is opened and before each write; below it writes fail
            ``RESOURCE_EXHAUSTED`` ``INSUFFICIENT_DISK_SPACE`` and a start exits (instead of the embedded
            index dying of ``SIGBUS``; :mod:`pattern_service.store.disk`). 0 = no check.
        accept_empty_database: Start even when the SQL database is empty beside a vector index that
            holds points (start-up reconciliation then deletes them); without it such a start is refused
            (:mod:`pattern_service.store.emptied`). Also ``serve --accept-empty-database``.
        redis_url: Redis URL of the second cache layer (a later issue); empty = none.
        redis_namespace: Redis keys are ``tmws:<namespace>:…`` (letters, digits, ``_.-``).
        redis_timeout: Upper bound of one Redis call, seconds (a slower call counts as Redis down).
        redis_local_ttl: Upper bound of a local-layer entry's life when Redis is the second layer, seconds.
        qdrant_url: Qdrant server URL; empty = embedded qdrant-edge index.
        qdrant_api_key: API key for the Qdrant server.
        qdrant_path: Directory of a qdrant-client local-mode store (``QdrantVectorIndex(path=...)``):
            the stand-in that tests the Qdrant-server code path where no server runs;
            ignored when ``qdrant_url`` is set. Empty = embedded qdrant-edge index.
        vector_index_threshold: Embedded index: a collection with this many points outside its HNSW
            graph builds it when opened at start (before serving); below it search is exact. 0 = never.
        vector_hnsw_ef: Embedded index: candidates kept by an HNSW search.
        vector_search_threads: Embedded index: threads that search one query's segments in
            parallel (qdrant-edge's ``max_search_threads``); 0 = one per CPU.
        embedder: ``onnx`` (all-MiniLM-L6-v2, int8 weights and activations), ``onnx-fp32``
            (the same model in fp32 arithmetic: the model of stores written before 1.1) or
            ``hashing`` (fallback).
        model_cache_dir: Where the ``onnx`` embedder keeps the int8 model it derives once from
            the shipped one (≈ 6 s); empty = ``$XDG_CACHE_HOME/pattern-service``.
        cache_ttl: Default result TTL in seconds for patterns that give none.
        cache_max_size: Entries of the in-process result cache.
        semantic_match_threshold: Global minimum hybrid similarity (dense cosine blended
            with BM25, ONNX model scale) at which a pattern is chosen by meaning; a
            pattern's own ``similarity_threshold`` (set by ``FitRouting``) wins.
        trigger_min_similarity: Minimum hybrid similarity that confirms a trigger match
            of a pattern that has examples (a regex firing on an unrelated request is
            not enough). Unset: 0.2 with the MiniLM embedders (chosen on the routing
            evaluation data), 0 with ``hashing`` (its cosines are lexical overlaps).
        keyword_fallback: Let the seed router's keyword guess choose a (read) pattern
            when nothing matched; off = such queries get ``NOT_FOUND``
            ``NO_PATTERN_MATCHED``. Requests can override it (``keyword_fallback``).
        recall_min_score: Relevance floor of memory recall (and of the memory
            part of hybrid patterns): hits with a lower cosine similarity are
            dropped (ONNX model scale); a request's context ``min_score`` overrides it.
        memory_sweep_interval: Seconds between sweeps deleting expired memories (SQL rows and,
            through the outbox, their vectors); expired memories are never returned meanwhile.
        stream_window: Results in flight per ``ExecuteMany`` stream (read ahead,
            running or not yet written).
        stream_concurrency: Items of one ``ExecuteMany`` stream executing at once;
            the others of the window wait for a slot (``queue_time_ms``).
        grace_period: Seconds in-flight calls get to finish on shutdown.
        shutdown_drain: Seconds the server keeps serving after health turns
            NOT_SERVING (so load balancers move away) before it refuses new calls.
        max_query_length: Characters of a query after trimming.
        max_context_bytes: Serialized size of a request's context.
        load_default_patterns: Load the bundled default pattern set on first start.
        patterns_file: A pattern file (YAML, the layout of the bundled ``patterns.yaml`` and of
            ``tmws-pattern patterns apply``) loaded instead of the bundled set on first start.
        log_level: Python logging level name.
        api_keys_file: JSON or YAML file of hashed API keys (``pattern_service.api.keys``); empty = none.
        api_keys: The same list as inline JSON; with neither, the server runs open (loopback only).
        allow_unauthenticated: Allow running open on a non-loopback address.
        tls_cert_file: Server certificate chain (PEM); with ``tls_key_file`` the server speaks TLS.
        tls_key_file: Private key of ``tls_cert_file`` (PEM).
        tls_client_ca_file: CA (PEM) client certificates must chain to; set = mutual TLS required.
        max_concurrent_rpcs: Calls running at once before new ones get ``RESOURCE_EXHAUSTED``.
        stream_max_items: Requests one ``ExecuteMany`` stream may carry.
        event_loop: ``uvloop`` (libuv, the default) or ``asyncio`` (the standard library's loop)
            for the server process(es); see :func:`pattern_service.server.run` for the measured difference.
        workers: Server processes sharing the port with ``SO_REUSEPORT``
            (> 1 needs a Qdrant server and should use PostgreSQL and Redis).
        keepalive_time: Seconds of quiet on a connection after which the server pings it
            (finds dead peers); see :mod:`pattern_service.api.transport`.
        keepalive_timeout: Seconds the server waits for the ack of its ping before closing the connection.
        keepalive_min_ping_interval: Shortest interval between client pings the server accepts, seconds
            (a client pinging more often gets ``GOAWAY too_many_pings``).
        keepalive_permit_without_calls: Accept client pings (and send server pings) on a connection
            with no call in flight.
        max_message_bytes: Largest request message, bytes; larger ones get ``RESOURCE_EXHAUSTED``
            with reason ``MESSAGE_TOO_LARGE``. Also the largest response.
        response_compression: ``none``, ``low``, ``medium`` or ``high``: compression level of the
            responses of ``List*`` and ``MatchPatterns`` (gzip or deflate, whichever
            the client accepts; identity for a client that accepts neither).
        log_format: ``text`` (human-readable lines) or ``json`` (one JSON object per line, with
            ``trace_id``/``span_id`` inside a traced call).
        otel_enabled: Turn OpenTelemetry tracing on (also on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set).
        otel_endpoint: OTLP/gRPC endpoint of the span exporter; empty = the standard ``OTEL_*`` variables.
        otel_service_name: ``service.name`` of the spans (``OTEL_SERVICE_NAME`` wins).
    """

    model_config = SettingsConfigDict(env_prefix="TMWS_", env_file=None, extra="ignore")

    grpc_address: str = "127.0.0.1:50051"
    metrics_address: str = "127.0.0.1:9464"
    data_dir: Path = Path("./var")
    database_url: str = ""
    db_max_connections: int = Field(default=20, ge=1, le=1000)
    db_pool_pre_ping: bool = True
    db_connect_timeout: float = Field(default=2.0, gt=0.0, le=300.0)
    run_migrations: bool = True
    accept_empty_database: bool = False
    min_free_disk_mb: int = Field(default=256, ge=0)
    redis_url: str = ""
    redis_namespace: str = Field(default="pattern", pattern=r"^[A-Za-z0-9_.-]+$")
    redis_timeout: float = Field(default=0.5, gt=0.0, le=30.0)
    redis_local_ttl: float = Field(default=60.0, gt=0.0)
    qdrant_url: str = ""
    qdrant_api_key: str = ""
    qdrant_path: str = ""
    vector_index_threshold: int = Field(default=5_000, ge=0)
    vector_hnsw_ef: int = Field(default=128, ge=1, le=10_000)
    vector_search_threads: int = Field(default=1, ge=0, le=256)
    embedder: Literal["onnx", "onnx-fp32", "hashing"] = "onnx"
    model_cache_dir: Path | None = None
    cache_ttl: int = Field(default=300, ge=0, le=86_400)
    cache_max_size: int = Field(default=10_000, ge=0)
    semantic_match_threshold: float = Field(default=0.3, ge=0.0, le=1.0)
    trigger_min_similarity: float | None = Field(default=None, ge=0.0, le=1.0)
    keyword_fallback: bool = False
    recall_min_score: float = Field(default=0.2, ge=0.0, le=1.0)
    memory_sweep_interval: float = Field(default=30.0, gt=0.0, le=86_400.0)
    stream_window: int = Field(default=64, ge=1, le=10_000)
    stream_concurrency: int = Field(default=4, ge=1, le=10_000)
    grace_period: float = Field(default=10.0, ge=0.0)
    shutdown_drain: float = Field(default=2.0, ge=0.0)
    max_query_length: int = Field(default=10_000, ge=1)
    max_context_bytes: int = Field(default=65_536, ge=1)
    load_default_patterns: bool = True
    patterns_file: Path | None = None
    log_level: str = "INFO"
    api_keys_file: str = ""
    api_keys: str = ""
    allow_unauthenticated: bool = False
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    max_concurrent_rpcs: int = Field(default=256, ge=1, le=100_000)
    stream_max_items: int = Field(default=100_000, ge=1)
    workers: int = Field(default=1, ge=1, le=64)
    event_loop: Literal["asyncio", "uvloop"] = "uvloop"
    keepalive_time: float = Field(default=60.0, ge=1.0)
    keepalive_timeout: float = Field(default=20.0, ge=1.0)
    keepalive_min_ping_interval: float = Field(default=5.0, ge=0.0)
    keepalive_permit_without_calls: bool = True
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=512 * 1024 * 1024)
    response_compression: Literal["none", "low", "medium", "high"] = "medium"
    log_format: Literal["text", "json"] = "text"
    otel_enabled: bool = False
    otel_endpoint: str = ""
    otel_service_name: str = "tmws-pattern-service"

    @property
    def resolved_trigger_min_similarity(self) -> float:
        """``trigger_min_similarity``, or its default for the embedder (see the class docstring)."""
        if self.trigger_min_similarity is not None:
            return self.trigger_min_similarity
        return 0.0 if self.embedder == "hashing" else 0.2

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``sqlite+aiosqlite:///<data_dir>/pattern_service.db``."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'pattern_service.db').resolve()}"

    @property
    def vector_dir(self) -> Path:
        """Directory of the embedded vector index."""
        return self.data_dir / "vectors"

    @property
    def local_store_paths(self) -> list[Path]:
        """Where the local stores live: the SQLite file's directory and the embedded index's (if used)."""
        from sqlalchemy.engine import make_url

        paths: list[Path] = []
        url = make_url(self.resolved_database_url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            paths.append(Path(url.database).parent)
        if not self.qdrant_url:
            paths.append(Path(self.qdrant_path) if self.qdrant_path else self.vector_dir)
        return paths

    @property
    def vector_location(self) -> str:
        """Where the vector index is, for messages: the Qdrant URL, the local-mode path or the embedded directory."""
        return self.qdrant_url or self.qdrant_path or str(self.vector_dir)
