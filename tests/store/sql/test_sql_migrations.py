"""Alembic migrations and the Database wrapper."""

from __future__ import annotations

import pathlib
import sqlite3

import pytest
from alembic.command import check, downgrade
from sqlalchemy import text

from pattern_service.errors import UnavailableError
from pattern_service.store.db import Database, alembic_config, aupgrade_to_head, upgrade_to_head

TABLES = {"success_patterns", "memories", "memory_tags", "pattern_definitions", "registry_state", "vector_outbox"}


def _tables(path: pathlib.Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _indexes(path: pathlib.Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}


def test_upgrade_creates_schema_and_downgrade_drops_it(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "nested" / "dir" / "p.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade_to_head(url)
    assert _tables(path) >= TABLES
    assert {
        "ix_success_patterns_context_hash",
        "ix_success_patterns_status",
        "ix_success_patterns_created_at",
        "ix_success_patterns_last_matched_at",
        "ix_success_patterns_type_status",
        "ix_memories_tenant_created",
        "ix_memories_tenant_agent",
        "ix_memories_tenant_importance",
        "ix_memory_tags_tenant_tag",
    } <= _indexes(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT id, version, seeded FROM registry_state").fetchall() == [(1, 0, 0)]
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0006",)]

    upgrade_to_head(url)  # idempotent
    check(alembic_config(url))  # the ORM models match the migrated schema

    downgrade(alembic_config(url), "base")
    assert _tables(path) & TABLES == set()
    upgrade_to_head(url)
    assert _tables(path) >= TABLES


async def test_upgrade_from_a_running_event_loop(tmp_path: pathlib.Path) -> None:
    url_a = f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"
    url_b = f"sqlite+aiosqlite:///{tmp_path / 'b.db'}"
    upgrade_to_head(url_a)  # blocks, but runs in a helper thread: no nested event loop
    await aupgrade_to_head(url_b)
    assert _tables(tmp_path / "a.db") >= TABLES
    assert _tables(tmp_path / "b.db") >= TABLES


async def test_sqlite_connection_settings(sql_db: Database) -> None:
    if sql_db.dialect != "sqlite":
        pytest.skip("SQLite pragmas")
    async with sql_db.session() as session:
        assert (await session.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await session.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        assert (await session.execute(text("PRAGMA busy_timeout"))).scalar_one() >= 1000
    await sql_db.ping()


async def test_ping_of_unreachable_database_raises_unavailable() -> None:
    db = Database("postgresql+asyncpg://user:pw@127.0.0.1:1/nothing", pool_pre_ping=False)
    try:
        with pytest.raises(UnavailableError):
            await db.ping()
    finally:
        await db.dispose()


async def test_session_rolls_back_on_error(sql_db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with sql_db.session() as session:
            await session.execute(text("UPDATE registry_state SET version = 99"))
            raise RuntimeError("boom")
    async with sql_db.session() as session:
        assert (await session.execute(text("SELECT version FROM registry_state"))).scalar() == 0
