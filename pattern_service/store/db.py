"""Database engine, unit-of-work sessions and programmatic Alembic migrations.

SQLite (``sqlite+aiosqlite:///path``) is the embedded default, PostgreSQL
(``postgresql+asyncpg://...``) the production backend. SQLite connections run
in WAL mode with foreign keys on and a busy timeout. SQLite has one writer at a
time: units of work that write (``session(write=True)``) queue on an asyncio
lock in FIFO order instead of meeting in SQLite's busy handler, whose
sleep-and-retry backoff turned a steady 15 writes/s into multi-second write
latencies in the soak (``scripts/load.py``). Reads never wait for the lock.

Hot-path reads (memory recall's primary-key read) go through :meth:`Database.read`:
one SQLAlchemy Core function on a plain connection, no ORM session. On a SQLite
file it runs on a small pool of ``sql-read`` threads with their own pysqlite
connections, one thread hop per read; through aiosqlite every statement (cursor,
execute, fetch, commit) was its own hop and event-loop wake-up, and the ORM
session's begin/commit bookkeeping cost more than the ≤ 10-row read itself.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic.command import upgrade as alembic_upgrade
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool

from pattern_service.errors import FailedPreconditionError, UnavailableError
from pattern_service.tracing import span

log = logging.getLogger(__name__)

#: Milliseconds a SQLite connection waits for another writer before failing.
SQLITE_BUSY_TIMEOUT_MS = 10_000

#: Most pooled SQLite connections: each has its own thread and page cache, and 2 cores gain
#: nothing from more concurrent readers (reads are short; writes are serialized anyway).
SQLITE_MAX_POOL = 4

#: Seconds a unit of work waits for a pooled connection before failing with UNAVAILABLE.
POOL_TIMEOUT_S = 30.0

#: Seconds to establish one PostgreSQL connection (asyncpg's own default is 60 s: a database that
#: accepts TCP but never answers would hold every call until its deadline instead of failing fast).
CONNECT_TIMEOUT_S = 2.0

#: Threads (and pysqlite connections) serving :meth:`Database.read` on a SQLite file.
SQLITE_READ_THREADS = 2

T = TypeVar("T")

_CONNECTION_ERRORS = (OperationalError, InterfaceError, PoolTimeoutError, ConnectionError, TimeoutError, OSError)


def _is_sqlite_memory(database: str | None) -> bool:
    return not database or database == ":memory:" or database.startswith("file::memory:")


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


class Database:
    """An async SQLAlchemy engine and its session factory.

    Args:
        url: SQLAlchemy async URL, e.g. ``sqlite+aiosqlite:///./var/pattern_service.db``
            or ``postgresql+asyncpg://user:pass@host:5432/db``.
        pool_size: Connections kept open. On PostgreSQL this is the hard maximum
            (``TMWS_DB_MAX_CONNECTIONS``: no overflow connections); a unit of work that finds
            every connection busy waits up to ``pool_timeout`` seconds. SQLite files use at
            most :data:`SQLITE_MAX_POOL` (in-memory SQLite: one shared connection).
        pool_pre_ping: Test a pooled connection before use (drops dead ones, e.g. after a
            server restart; PostgreSQL only: a SQLite file connection cannot go away).
        pool_timeout: Seconds a unit of work waits for a free pooled connection (PostgreSQL).
        connect_timeout: Seconds to establish one new connection (PostgreSQL,
            ``TMWS_DB_CONNECT_TIMEOUT``); a slower connect fails the unit of work with ``UNAVAILABLE``.
        echo: Log every SQL statement.
        before_write: Called before each unit of work that writes; what it raises refuses the write
            before anything is written (the free-space check, :mod:`pattern_service.store.disk`).

    Attributes:
        url: The URL given.
        engine: The :class:`AsyncEngine`.
        dialect: ``"sqlite"`` or ``"postgresql"``.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 5,
        pool_pre_ping: bool = True,
        pool_timeout: float = POOL_TIMEOUT_S,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        echo: bool = False,
        before_write: Callable[[], None] | None = None,
    ):
        self.url = url
        self._before_write = before_write
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": pool_pre_ping and self.dialect != "sqlite"}
        self._write_lock: asyncio.Lock | None = None
        if self.dialect == "sqlite":
            self._write_lock = asyncio.Lock()
            if _is_sqlite_memory(parsed.database):
                kwargs["poolclass"] = StaticPool
                kwargs["connect_args"] = {"check_same_thread": False}
            else:
                Path(str(parsed.database)).expanduser().parent.mkdir(parents=True, exist_ok=True)
                kwargs.update(pool_size=min(pool_size, SQLITE_MAX_POOL), max_overflow=0, pool_timeout=pool_timeout)
        else:
            kwargs.update(pool_size=pool_size, max_overflow=0, pool_timeout=pool_timeout)
            if parsed.get_driver_name() == "asyncpg":
                kwargs["connect_args"] = {"timeout": connect_timeout}  # asyncpg.connect(timeout=...)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_on_connect)
        self._sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self._read_engine: Engine | None = None
        self._read_executor: ThreadPoolExecutor | None = None
        self._inline_conn: Connection | None = None
        if self.dialect == "sqlite" and not _is_sqlite_memory(parsed.database):
            # Same file through the stdlib driver, on threads of its own (in-memory SQLite lives
            # on the async engine's one connection, so it reads through that; see read()).
            self._read_engine = create_engine(
                parsed.set(drivername="sqlite"),
                pool_size=SQLITE_READ_THREADS + 1,  # + the event loop's own (read(inline=True))
                max_overflow=0,
                connect_args={"check_same_thread": False},
            )
            event.listen(self._read_engine, "connect", _sqlite_on_connect)
            self._read_executor = ThreadPoolExecutor(SQLITE_READ_THREADS, thread_name_prefix="sql-read")

    @asynccontextmanager
    async def session(self, *, write: bool = False) -> AsyncIterator[AsyncSession]:
        """One unit of work: a new session inside a transaction, committed on normal exit.

        Never share the yielded session between concurrent tasks.

        Args:
            write: The unit of work writes. On SQLite it then waits for the
                process's write lock first (FIFO; the caller's deadline bounds
                the wait), so writers never contend inside SQLite.

        Yields:
            The session; the transaction is rolled back if the block raises.

        Raises:
            UnavailableError: The database could not be reached or is locked, or no pooled
                connection became free within the pool timeout.
            DiskFullError: ``write`` and the data directory's filesystem is nearly full.
        """
        if write and self._before_write is not None:
            self._before_write()
        if write and self._write_lock is not None:
            async with self._write_lock, self._unit() as session:
                yield session
        else:
            async with self._unit() as session:
                yield session

    @asynccontextmanager
    async def _unit(self) -> AsyncIterator[AsyncSession]:
        try:
            with span("sql", **{"db.system": self.dialect}):
                async with self._sessionmaker.begin() as session:
                    yield session
        except _CONNECTION_ERRORS as exc:
            raise UnavailableError(f"database unavailable: {exc}") from exc

    async def read(self, fn: Callable[[Connection], T], *, inline: bool = False) -> T:
        """Run a read-only function of SQLAlchemy Core statements on one connection, in one go.

        No ORM session and no write lock: ``fn`` gets a plain (synchronous)
        :class:`~sqlalchemy.Connection`, whose transaction is rolled back when
        it returns, so it must only read. On a SQLite file ``fn`` runs on a
        ``sql-read`` thread (one hop for the whole read), or with ``inline`` on
        the calling thread; on PostgreSQL and in-memory SQLite it runs through
        the async engine's :meth:`~sqlalchemy.ext.asyncio.AsyncConnection.run_sync`.

        Args:
            fn: The read.
            inline: ``fn`` is a short primary-key read (tens of rows): on a SQLite
                file run it on the event loop's own connection instead of a thread.
                Measured on the recall path (10 rows): the read costs ≈ 0.25 ms, the
                hop to a thread and back ≈ 0.4 ms of CPU under load (GIL hand-offs
                and wake-ups), so the hop cost more than it kept off the loop. In WAL
                mode a reader never waits for the writer, so the loop does not block
                on a write in progress.

        Returns:
            What ``fn`` returns.

        Raises:
            UnavailableError: The database could not be reached or is locked.
        """
        try:
            with span("sql", **{"db.system": self.dialect}):
                executor = self._read_executor
                if executor is not None and inline:
                    return self._read_inline(fn)
                if executor is not None:
                    return await asyncio.get_running_loop().run_in_executor(executor, self._read_sync, fn)
                async with self.engine.connect() as conn:
                    return await conn.run_sync(fn)
        except _CONNECTION_ERRORS as exc:
            raise UnavailableError(f"database unavailable: {exc}") from exc

    def _read_sync(self, fn: Callable[[Connection], T]) -> T:
        assert self._read_engine is not None
        with self._read_engine.connect() as conn:
            return fn(conn)

    def _read_inline(self, fn: Callable[[Connection], T]) -> T:
        assert self._read_engine is not None
        conn = self._inline_conn
        if conn is None or conn.closed:
            conn = self._inline_conn = self._read_engine.connect()
        try:
            return fn(conn)
        finally:
            conn.rollback()  # never hold a read transaction (it would hold back WAL checkpoints)

    async def ping(self) -> None:
        """Run ``SELECT 1``.

        Raises:
            UnavailableError: The database does not answer.
        """
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            raise UnavailableError(f"database unavailable: {exc}") from exc

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
        executor, self._read_executor = self._read_executor, None  # later reads go through the async engine
        conn, self._inline_conn = self._inline_conn, None
        if conn is not None:
            conn.close()
        if executor is not None and self._read_engine is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)
            self._read_engine.dispose()


def _alembic_ini() -> Path:
    """The repository's ``alembic.ini`` (found relative to this package, then the cwd)."""
    here = Path(__file__).resolve()
    candidates = [parent / "alembic.ini" for parent in here.parents[:4]] + [Path.cwd() / "alembic.ini"]
    for candidate in candidates:
        if candidate.is_file() and (candidate.parent / "alembic" / "env.py").is_file():
            return candidate
    raise FailedPreconditionError(
        "alembic.ini with an alembic/ script directory not found next to the package or in the cwd",
        reason="MIGRATIONS_NOT_FOUND",
    )


def alembic_config(url: str) -> Config:
    """An Alembic :class:`~alembic.config.Config` for ``url`` on the repository's migration scripts.

    The URL is passed through ``config.attributes`` (never through the ini
    parser, so ``%`` in passwords is safe) and Alembic leaves logging alone.

    Raises:
        FailedPreconditionError: The migration scripts cannot be found.
    """
    ini = _alembic_ini()
    cfg = Config(str(ini))
    cfg.set_main_option("script_location", str(ini.parent / "alembic"))
    cfg.attributes["url"] = url
    cfg.attributes["skip_logging_config"] = True
    return cfg


def _run_upgrade(url: str, revision: str) -> None:
    alembic_upgrade(alembic_config(url), revision)


def upgrade_to_head(url: str) -> None:
    """Run ``alembic upgrade head`` on ``url`` (blocking).

    Safe from any synchronous context; if called from a thread that runs an
    event loop, the migration runs in a helper thread (Alembic's ``env.py``
    starts its own loop) and this call blocks until it is done — prefer
    :func:`aupgrade_to_head` there.

    Args:
        url: SQLAlchemy async URL.

    Raises:
        FailedPreconditionError: The migration scripts cannot be found.
        UnavailableError: The database cannot be reached.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        in_loop = False
    else:
        in_loop = True
    if not in_loop:
        _upgrade_or_unavailable(url)
        return
    errors: list[BaseException] = []

    def target() -> None:
        try:
            _upgrade_or_unavailable(url)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    worker = threading.Thread(target=target, name="alembic-upgrade")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]


def _upgrade_or_unavailable(url: str) -> None:
    try:
        _run_upgrade(url, "head")
    except _CONNECTION_ERRORS as exc:
        raise UnavailableError(f"database unavailable during migration: {exc}") from exc
    log.info("database schema at head", extra={"url": make_url(url).render_as_string(hide_password=True)})


async def aupgrade_to_head(url: str) -> None:
    """Run ``alembic upgrade head`` on ``url`` in a worker thread without blocking the event loop.

    Raises:
        FailedPreconditionError: The migration scripts cannot be found.
        UnavailableError: The database cannot be reached.
    """
    await asyncio.to_thread(upgrade_to_head, url)


__all__ = ["Database", "alembic_config", "aupgrade_to_head", "upgrade_to_head"]
