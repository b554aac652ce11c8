"""Helpers to run a real server in a test: settings on port 0 and a started server.

Also the tests' PostgreSQL databases: every test that runs on PostgreSQL gets a
database of its own on the server named by a *maintenance URL* (a database the
tests only CREATE/DROP from), and drops it afterwards.

* ``TMWS_TEST_POSTGRES_URL`` (default ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``):
  the SQL store and engine tests run on SQLite and on this server. With the
  default, an unreachable server skips the PostgreSQL variants; set explicitly,
  an unreachable server fails them.
* ``TMWS_TEST_DATABASE_URL`` (unset by default): :func:`make_settings` gives each
  server a fresh database on this PostgreSQL server (one per data directory, so
  a restarted server finds its data again); :func:`drop_server_database` drops it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import pathlib
import threading
import uuid
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from pattern_service.config import Settings
from pattern_service.store.db import aupgrade_to_head

if TYPE_CHECKING:
    from pattern_service.server import PatternServer

T = TypeVar("T")

#: Maintenance database the SQL/engine tests create and drop their PostgreSQL databases from.
DEFAULT_TEST_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"

#: Seconds to wait for PostgreSQL when checking whether it is reachable.
POSTGRES_CONNECT_TIMEOUT_S = 5.0

#: data directory -> (maintenance URL, database URL) of the servers' databases not dropped yet.
_server_databases: dict[pathlib.Path, tuple[str, str]] = {}
_server_databases_lock = threading.Lock()
#: data directory -> (Redis URL, namespace) of the servers' Redis keys not deleted yet.
_redis_namespaces: dict[pathlib.Path, tuple[str, str]] = {}


def make_settings(data_dir: pathlib.Path, **overrides: object) -> Settings:
    """Settings for a test server: port 0, no metrics endpoint, data under ``data_dir``.

    With ``TMWS_TEST_DATABASE_URL`` set (and no ``database_url`` override) the
    server's SQL store is a fresh database on that PostgreSQL server, one per
    ``data_dir``; drop it with :func:`drop_server_database` (or
    :func:`drop_all_server_databases` at the end of the session).

    With ``TMWS_TEST_REDIS_URL`` set, the server uses that Redis as its second
    cache layer under a namespace of its own (deleted by :func:`drop_server_database`).

    ``TMWS_TEST_VECTOR_BACKEND`` picks the vector index: ``edge`` (default, the
    embedded qdrant-edge index) or ``qdrant_local`` (``QdrantVectorIndex`` in
    qdrant-client local mode under ``data_dir/qdrant``: the Qdrant-server code path).

    Raises:
        ValueError: ``TMWS_TEST_DATABASE_URL`` is not a PostgreSQL URL, or
            ``TMWS_TEST_VECTOR_BACKEND`` names an unknown backend.
    """
    values: dict[str, object] = {
        "grpc_address": "127.0.0.1:0",
        "metrics_address": "",
        "data_dir": data_dir,
        "embedder": os.environ.get("TMWS_TEST_EMBEDDER", "onnx"),
        "grace_period": 1.0,
    }
    backend = os.environ.get("TMWS_TEST_VECTOR_BACKEND", "edge") or "edge"
    if backend == "qdrant_local":
        values["qdrant_path"] = str(data_dir / "qdrant")
    elif backend != "edge":
        raise ValueError(f"TMWS_TEST_VECTOR_BACKEND must be 'edge' or 'qdrant_local', got {backend!r}")
    maintenance_url = os.environ.get("TMWS_TEST_DATABASE_URL", "")
    if maintenance_url and "database_url" not in overrides:
        values["database_url"] = _server_database(data_dir, maintenance_url)
    redis_url = os.environ.get("TMWS_TEST_REDIS_URL", "")
    if redis_url and "redis_url" not in overrides:
        # One namespace per data directory: a restarted server finds its keys; no two tests share one.
        namespace = "test-" + hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
        # A loaded CI machine can take longer than the production default (0.5 s) for one Redis call;
        # a stopped Redis refuses connections at once whatever the timeout.
        values.update(redis_url=redis_url, redis_namespace=namespace, redis_timeout=5.0)
        _redis_namespaces[data_dir.resolve()] = (redis_url, namespace)
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


async def start_server(settings: Settings) -> PatternServer:
    """Build the application and start a server on it."""
    from pattern_service.app import Application
    from pattern_service.metrics import Metrics
    from pattern_service.server import PatternServer

    app = await Application.create(settings, Metrics())
    server = PatternServer(settings, app)
    await server.start()
    return server


def _server_database(data_dir: pathlib.Path, maintenance_url: str) -> str:
    if make_url(maintenance_url).get_backend_name() != "postgresql":
        raise ValueError(f"TMWS_TEST_DATABASE_URL must be a postgresql+asyncpg:// URL, got {maintenance_url!r}")
    key = data_dir.resolve()
    with _server_databases_lock:
        if key not in _server_databases:
            url = run_blocking(functools.partial(create_database, maintenance_url, prefix="tmws_srv"))
            _server_databases[key] = (maintenance_url, url)
        return _server_databases[key][1]


async def _delete_redis_namespace(redis_url: str, namespace: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"tmws:{namespace}:*", count=500)]
        if keys:
            await client.unlink(*keys)
    finally:
        await client.aclose()


async def drop_server_database(settings: Settings) -> None:
    """Drop the database (and Redis keys) :func:`make_settings` created for ``settings``, if any."""
    key = settings.data_dir.resolve()
    redis_entry = _redis_namespaces.pop(key, None)
    if redis_entry is not None:
        await _delete_redis_namespace(*redis_entry)
    with _server_databases_lock:
        entry = _server_databases.pop(key, None)
    if entry is not None:
        await drop_database(*entry)


def drop_all_server_databases() -> None:
    """Drop every database and Redis namespace :func:`make_settings` created and no test dropped (blocking)."""
    with _server_databases_lock:
        entries = list(_server_databases.values())
        _server_databases.clear()
    for maintenance_url, url in entries:
        run_blocking(functools.partial(drop_database, maintenance_url, url))
    namespaces = list(_redis_namespaces.values())
    _redis_namespaces.clear()
    for redis_url, namespace in namespaces:
        run_blocking(functools.partial(_delete_redis_namespace, redis_url, namespace))


def run_blocking(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine ``factory()`` makes on a fresh event loop in a worker thread, and return its result.

    Usable from synchronous code whether or not the calling thread runs an event
    loop (which is blocked meanwhile: keep the work short).

    Raises:
        BaseException: Whatever the coroutine raised.
    """
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(factory()))
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    worker = threading.Thread(target=target, name="test-db-admin")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    return result[0]


def postgres_maintenance_url() -> tuple[str, bool]:
    """The maintenance URL of the SQL tests' PostgreSQL server, and whether it was set explicitly.

    Returns:
        ``(url, explicit)``: ``TMWS_TEST_POSTGRES_URL`` if set, else :data:`DEFAULT_TEST_POSTGRES_URL`.
    """
    explicit = os.environ.get("TMWS_TEST_POSTGRES_URL", "")
    return (explicit or DEFAULT_TEST_POSTGRES_URL), bool(explicit)


@functools.cache
def postgres_unreachable(maintenance_url: str) -> str | None:
    """Why the PostgreSQL server of ``maintenance_url`` cannot be used (``None`` if it can); checked once."""

    async def probe() -> None:
        engine = create_async_engine(maintenance_url, connect_args={"timeout": POSTGRES_CONNECT_TIMEOUT_S})
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        finally:
            await engine.dispose()

    try:
        run_blocking(probe)
    except Exception as exc:
        shown = make_url(maintenance_url).render_as_string(hide_password=True)
        return f"PostgreSQL at {shown} is unreachable ({type(exc).__name__}: {exc})"
    return None


async def _admin(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def create_database(maintenance_url: str, *, prefix: str = "tmws_test", template: str | None = None) -> str:
    """Create a uniquely named database on the server of ``maintenance_url``.

    Args:
        maintenance_url: URL of an existing database to issue ``CREATE DATABASE`` from.
        prefix: Start of the new database's name (a random suffix follows).
        template: URL of a database to copy (``CREATE DATABASE … TEMPLATE``); it
            must have no open connections. ``None`` = an empty database.

    Returns:
        The new database's URL (the maintenance URL with the database name replaced).

    Raises:
        sqlalchemy.exc.DBAPIError: The server refused.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    statement = f'CREATE DATABASE "{name}"'
    if template is not None:
        statement += f' TEMPLATE "{make_url(template).database}"'
    await _admin(maintenance_url, statement)
    return make_url(maintenance_url).set(database=name).render_as_string(hide_password=False)


async def create_migrated_template(maintenance_url: str) -> str:
    """Create a database migrated to Alembic head, to copy per test; returns its URL.

    Raises:
        sqlalchemy.exc.DBAPIError: The server refused.
    """
    url = await create_database(maintenance_url, prefix="tmws_tpl")
    await aupgrade_to_head(url)
    return url


async def drop_database(maintenance_url: str, url: str) -> None:
    """Drop the database of ``url`` (if it exists), closing its remaining connections (``WITH (FORCE)``).

    Args:
        maintenance_url: URL of another database on the same server to issue ``DROP DATABASE`` from.
        url: URL of the database to drop.

    Raises:
        sqlalchemy.exc.DBAPIError: The server refused.
    """
    await _admin(maintenance_url, f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
