"""Alembic environment of the Pattern Service learning store (async engine).

The database URL is taken, in order, from ``config.attributes["url"]`` (set by
:func:`pattern_service.store.db.upgrade_to_head`), the ``-x url=...`` argument,
the ``TMWS_DATABASE_URL`` environment variable, and finally the embedded default
``sqlite+aiosqlite:///./var/pattern_service.db``. SQLite runs in batch mode
(``render_as_batch``) so that ALTERs work there too.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig
from pathlib import Path

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import async_engine_from_config

from pattern_service.store.orm import Base

DEFAULT_URL = "sqlite+aiosqlite:///./var/pattern_service.db"

config = context.config

if config.config_file_name is not None and not config.attributes.get("skip_logging_config", False):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata

#: Indexes revision 0002 creates on PostgreSQL only (GIN on the jsonb columns); the ORM does not declare them.
POSTGRESQL_ONLY_INDEXES = frozenset(
    {
        "ix_success_patterns_tags_gin",
        "ix_success_patterns_execution_trace_gin",
        "ix_success_patterns_success_criteria_gin",
        "ix_success_patterns_quality_metrics_gin",
        "ix_success_patterns_performance_data_gin",
        "ix_success_patterns_context_gin",
        "ix_memories_tags_gin",
        "ix_memories_metadata_gin",
    }
)


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Keep the PostgreSQL-only GIN indexes of revision 0002 out of autogenerate (``alembic check``)."""
    return not (type_ == "index" and reflected and name in POSTGRESQL_ONLY_INDEXES)


def database_url() -> str:
    """The URL to migrate (see the module docstring for the order of sources)."""
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    return str(url or os.environ.get("TMWS_DATABASE_URL") or DEFAULT_URL)


def _prepare_sqlite_dir(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def run_migrations_offline() -> None:
    """Emit the SQL of the migrations without a database connection (``--sql``)."""
    url = database_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=make_url(url).get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    """Run the migrations on an open (sync-facade) connection."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    """Open an async engine and run the migrations through ``run_sync``."""
    url = database_url()
    _prepare_sqlite_dir(url)
    engine = async_engine_from_config({"sqlalchemy.url": url}, prefix="sqlalchemy.", poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    """Run the migrations against the database (a fresh event loop in this thread)."""
    asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
