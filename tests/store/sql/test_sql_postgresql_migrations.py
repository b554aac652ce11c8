"""Alembic migrations on the real PostgreSQL server: jsonb, GIN indexes, range checks, data kept both ways."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.command import downgrade, upgrade
from alembic.runtime.migration import MigrationContext
from server_helpers import create_database, drop_database
from sqlalchemy import select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from pattern_service.store.db import Database, alembic_config, aupgrade_to_head
from pattern_service.store.orm import Base, MemoryRow, PatternDefinitionRow, SuccessPatternRow, utcnow

JSON_COLUMNS = {
    ("success_patterns", "execution_trace"),
    ("success_patterns", "success_criteria"),
    ("success_patterns", "quality_metrics"),
    ("success_patterns", "performance_data"),
    ("success_patterns", "tags"),
    ("success_patterns", "context"),
    ("memories", "tags"),
    ("memories", "metadata"),
    ("pattern_definitions", "examples"),
    ("pattern_definitions", "metadata"),
    ("registry_state", "calibration"),
    ("registry_layers", "calibration"),
    ("registry_layers", "thresholds"),
}
#: The JSON columns revision 0001 has (0003 added the calibration, 0005 the tenant layers).
JSON_COLUMNS_0001 = JSON_COLUMNS - {
    ("registry_state", "calibration"),
    ("registry_layers", "calibration"),
    ("registry_layers", "thresholds"),
}
GIN_INDEXES = {
    "ix_success_patterns_tags_gin": "jsonb_ops",
    "ix_success_patterns_execution_trace_gin": "jsonb_path_ops",
    "ix_success_patterns_success_criteria_gin": "jsonb_path_ops",
    "ix_success_patterns_quality_metrics_gin": "jsonb_path_ops",
    "ix_success_patterns_performance_data_gin": "jsonb_path_ops",
    "ix_success_patterns_context_gin": "jsonb_path_ops",
    "ix_memories_tags_gin": "jsonb_ops",
    "ix_memories_metadata_gin": "jsonb_path_ops",
}
BTREE_INDEXES = {
    "ix_success_patterns_context_hash": "(context_hash)",
    "ix_success_patterns_status": "(status)",
    "ix_success_patterns_created_at": "(created_at)",
    "ix_success_patterns_last_matched_at": "(last_matched_at)",
    "ix_success_patterns_type_status": "(pattern_type, status)",
}
CHECKS = {
    "ck_success_patterns_version",
    "ck_success_patterns_match_count",
    "ck_success_patterns_success_rate",
    "ck_memories_importance",
    "ck_vector_outbox_op",
}
TABLES = {
    "success_patterns",
    "memories",
    "memory_tags",
    "pattern_definitions",
    "registry_state",
    "registry_layers",
    "vector_outbox",
}

TRACE = {"steps": ["Configure connection pool (min=10, max=50)", "Route read queries to replicas"], "n": 2}
CONTEXT = {"intent": "optimize API performance", "environment": {"db": "PostgreSQL", "replicas": 2}}
METADATA = {"plan": {"steps": [1, 2]}, "source": "ünïcode ✓"}


@pytest.fixture
async def pg_empty_url(pg_template_url: tuple[str, str]) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database (no tables), dropped after the test."""
    maintenance_url, _template = pg_template_url
    url = await create_database(maintenance_url)
    try:
        yield url
    finally:
        await drop_database(maintenance_url, url)


async def _migrate(url: str, revision: str) -> None:
    """``alembic upgrade/downgrade <revision>`` in a worker thread (env.py runs its own event loop)."""
    await asyncio.to_thread(upgrade, alembic_config(url), revision)


async def _downgrade(url: str, revision: str) -> None:
    await asyncio.to_thread(downgrade, alembic_config(url), revision)


async def _rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(text(sql))).all()]
    finally:
        await engine.dispose()


async def _json_types(url: str) -> dict[tuple[str, str], str]:
    rows = await _rows(
        url,
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'public' AND data_type IN ('json', 'jsonb')",
    )
    return {(t, c): d for t, c, d in rows}


async def _indexes(url: str) -> dict[str, str]:
    return dict(await _rows(url, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"))


async def _checks(url: str) -> set[str]:
    return {r[0] for r in await _rows(url, "SELECT conname FROM pg_constraint WHERE contype = 'c'")}


async def _tables(url: str) -> set[str]:
    return {r[0] for r in await _rows(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def _orm_diff(conn: Connection) -> list[Any]:
    """Differences between the ORM models and the database, ignoring the PostgreSQL-only GIN indexes."""

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        return not (type_ == "index" and name in GIN_INDEXES)

    context = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": include})
    return list(compare_metadata(context, Base.metadata))


async def test_upgrade_and_downgrade_on_an_empty_database(pg_empty_url: str) -> None:
    url = pg_empty_url
    await aupgrade_to_head(url)
    assert await _tables(url) >= TABLES
    assert await _rows(url, "SELECT version_num FROM alembic_version") == [("0006",)]
    assert await _json_types(url) == dict.fromkeys(JSON_COLUMNS, "jsonb")
    indexes = await _indexes(url)
    for name, opclass in GIN_INDEXES.items():
        assert "USING gin" in indexes[name], indexes[name]
        assert ("jsonb_path_ops" in indexes[name]) == (opclass == "jsonb_path_ops"), indexes[name]  # default: jsonb_ops
    for name, columns in BTREE_INDEXES.items():
        assert "USING btree" in indexes[name] and indexes[name].endswith(columns), indexes[name]
    assert await _checks(url) >= CHECKS
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_orm_diff) == []  # the ORM (JSONB variant) mirrors the schema
    finally:
        await engine.dispose()

    await aupgrade_to_head(url)  # idempotent
    await _downgrade(url, "0001")
    assert await _json_types(url) == dict.fromkeys(JSON_COLUMNS_0001, "json")
    assert not set(GIN_INDEXES) & set(await _indexes(url))
    assert "ck_memories_importance" not in await _checks(url)
    await _downgrade(url, "base")
    assert await _tables(url) & TABLES == set()
    await aupgrade_to_head(url)
    assert await _tables(url) >= TABLES


async def _insert_at_0001(url: str) -> None:
    """Rows written as revision 0001 stored them (``json`` columns), in plain SQL."""
    now = utcnow()
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO success_patterns (pattern_id, pattern_type, name, description, version,"
                    " context_hash, execution_trace, success_criteria, quality_metrics, performance_data, tags,"
                    " status, created_at, updated_at, match_count, success_rate, tenant_id, context, quality_score)"
                    " VALUES ('p1', 'api_optimization', 'Pooling', '', 1, 'h', :trace, '{}', '{\"accuracy\": 0.95}',"
                    " '{}', '[\"postgresql\", \"optimization\"]', 'active', :now, :now, 3, 0.5, 't', :ctx, 0.9)"
                ),
                {"trace": json.dumps(TRACE), "ctx": json.dumps(CONTEXT), "now": now},
            )
            await conn.execute(
                text(
                    "INSERT INTO memories (memory_id, tenant_id, agent_id, content, memory_type, tags, importance,"
                    " metadata, created_at, updated_at) VALUES ('m1', 't', 'artemis', 'pool sizes', 'decision',"
                    ' \'["db", "perf"]\', 0.7, :meta, :now, :now)'
                ),
                {"meta": json.dumps(METADATA), "now": now},
            )
            await conn.execute(
                text(
                    "INSERT INTO memory_tags (memory_id, tag, tenant_id) VALUES ('m1', 'db', 't'), ('m1', 'perf', 't')"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO pattern_definitions (name, pattern_type, trigger_pattern, cost_tokens, priority,"
                    " cache_ttl, description, examples, metadata, create_time, update_time) VALUES ('d1', 'memory',"
                    " 'optimize\\s+database', 100, 10, 300, '', '[\"tune the database\"]',"
                    ' \'{"operation": "recall"}\', :now, :now)'
                ),
                {"now": now},
            )
    finally:
        await engine.dispose()


async def _assert_data(url: str) -> None:
    db = Database(url)
    try:
        async with db.session() as session:
            pattern = await session.get(SuccessPatternRow, "p1")
            # Columns, not the entity: the columns added by revisions 0003 and 0005 do not exist at 0001.
            memory = (
                await session.execute(
                    select(MemoryRow.tags, MemoryRow.metadata_, MemoryRow.importance).where(MemoryRow.memory_id == "m1")
                )
            ).first()
            definition = (
                await session.execute(
                    select(PatternDefinitionRow.examples, PatternDefinitionRow.metadata_).where(
                        PatternDefinitionRow.name == "d1"
                    )
                )
            ).first()
            assert pattern is not None and memory is not None and definition is not None
            assert (pattern.execution_trace, pattern.context, pattern.tags) == (
                TRACE,
                CONTEXT,
                ["postgresql", "optimization"],
            )
            assert pattern.quality_metrics == {"accuracy": 0.95}
            assert (pattern.match_count, pattern.success_rate) == (3, 0.5)
            assert (memory.tags, memory.metadata_, memory.importance) == (["db", "perf"], METADATA, 0.7)
            assert (definition.examples, definition.metadata_) == (["tune the database"], {"operation": "recall"})
            # Revision 0004 queued the stored success pattern for re-embedding with the new text.
            assert await session.scalar(select(MemoryRow.memory_id).where(MemoryRow.tenant_id == "t")) == "m1"
    finally:
        await db.dispose()


async def test_migrations_keep_data_both_ways(pg_empty_url: str) -> None:
    url = pg_empty_url
    await _migrate(url, "0001")
    await _insert_at_0001(url)
    await _assert_data(url)

    await aupgrade_to_head(url)
    assert await _json_types(url) == dict.fromkeys(JSON_COLUMNS, "jsonb")
    await _assert_data(url)
    queued = "SELECT collection, point_id, op FROM vector_outbox"
    assert await _rows(url, queued) == [("pattern_embeddings", "p1", "upsert")]  # 0004: re-embed with the new text
    matched = await _rows(url, "SELECT pattern_id FROM success_patterns WHERE tags ?| array['optimization', 'x']")
    assert matched == [("p1",)]
    assert await _rows(url, 'SELECT memory_id FROM memories WHERE metadata @> \'{"plan": {"steps": [2]}}\'') == [
        ("m1",)
    ]

    await _downgrade(url, "0001")
    assert await _json_types(url) == dict.fromkeys(JSON_COLUMNS_0001, "json")
    await _assert_data(url)

    await aupgrade_to_head(url)
    await _assert_data(url)
    await _downgrade(url, "base")  # with data in every table
    assert await _tables(url) & TABLES == set()
    await aupgrade_to_head(url)
    assert await _rows(url, "SELECT count(*) FROM success_patterns") == [(0,)]


@pytest.mark.parametrize(
    ("table", "assignment"),
    [
        ("memories", "importance = 1.5"),
        ("memories", "importance = -0.1"),
        ("success_patterns", "success_rate = 1.01"),
        ("success_patterns", "success_rate = -0.5"),
        ("success_patterns", "version = 0"),
        ("success_patterns", "match_count = -1"),
    ],
)
async def test_range_checks_reject_out_of_range_values(pg_empty_url: str, table: str, assignment: str) -> None:
    url = pg_empty_url
    await _migrate(url, "0001")
    await _insert_at_0001(url)
    await aupgrade_to_head(url)
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            with pytest.raises(IntegrityError, match="check constraint"):
                await conn.execute(text(f"UPDATE {table} SET {assignment}"))
            await conn.rollback()
            await conn.execute(text("UPDATE memories SET importance = 1"))  # the bounds themselves are allowed
            await conn.execute(text("UPDATE success_patterns SET success_rate = 0, version = 1, match_count = 0"))
    finally:
        await engine.dispose()


async def _plan(conn: AsyncConnection, sql: str) -> str:
    await conn.execute(text("SET LOCAL enable_seqscan = off"))
    return "\n".join(str(r[0]) for r in (await conn.execute(text(f"EXPLAIN {sql}"))).all())


@pytest.mark.parametrize(
    ("sql", "index"),
    [
        ("SELECT pattern_id FROM success_patterns WHERE tags ?| array['db']", "ix_success_patterns_tags_gin"),
        ("SELECT pattern_id FROM success_patterns WHERE tags @> '[\"db\"]'", "ix_success_patterns_tags_gin"),
        ("SELECT memory_id FROM memories WHERE tags ?| array['db', 'perf']", "ix_memories_tags_gin"),
        (
            'SELECT pattern_id FROM success_patterns WHERE context @> \'{"intent": "x"}\'',
            "ix_success_patterns_context_gin",
        ),
        (
            "SELECT pattern_id FROM success_patterns WHERE execution_trace @> '{\"n\": 2}'",
            "ix_success_patterns_execution_trace_gin",
        ),
        ('SELECT memory_id FROM memories WHERE metadata @> \'{"source": "x"}\'', "ix_memories_metadata_gin"),
    ],
)
async def test_gin_indexes_serve_tag_and_containment_queries(pg_empty_url: str, sql: str, index: str) -> None:
    await aupgrade_to_head(pg_empty_url)
    engine = create_async_engine(pg_empty_url)
    try:
        async with engine.begin() as conn:
            plan = await _plan(conn, sql)
    finally:
        await engine.dispose()
    assert index in plan, plan
