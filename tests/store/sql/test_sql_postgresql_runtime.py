"""PostgreSQL at run time: the bounded pool under concurrent units of work, pre-ping, and the whole server."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from server_helpers import create_database, drop_database, make_settings, start_server
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from pattern_service.domain import MemoryFilter, NewMemory, SuccessPattern, SuccessPatternInput
from pattern_service.errors import AlreadyExistsError, UnavailableError
from pattern_service.store.db import Database
from pattern_service.store.embeddings import HashingEmbedder
from pattern_service.store.learning import SqlLearningStore
from pattern_service.store.memories import SqlMemoryStore
from pattern_service.store.orm import VectorOutboxRow
from pattern_service.store.outbox import VectorSync
from pattern_service.store.vector_bindings import VECTOR_BINDINGS
from pattern_service.store.vectors.edge import EdgeVectorIndex
from tmws.pattern.client import PatternClient
from tmws.pattern.v1 import pattern_learning_service_pb2 as pl

T = "tenant-pg"
POOL = 3
#: Generous: a slow machine must never turn waiting for a pooled connection into a failure here.
PATIENT_POOL_TIMEOUT_S = 600.0


@pytest.fixture
async def pg_maintenance(pg_template_url: tuple[str, str]) -> str:
    """The maintenance URL of the test PostgreSQL server (skips when it is unreachable)."""
    return pg_template_url[0]


@pytest.fixture
async def pg_url(pg_template_url: tuple[str, str]) -> AsyncIterator[str]:
    """A fresh PostgreSQL database at head (a copy of the session template), dropped after the test."""
    maintenance_url, template = pg_template_url
    url = await create_database(maintenance_url, template=template)
    try:
        yield url
    finally:
        await drop_database(maintenance_url, url)


async def test_many_concurrent_units_of_work_share_a_bounded_pool(
    pg_url: str, sql_index: EdgeVectorIndex, sql_embedder: HashingEmbedder
) -> None:
    db = Database(pg_url, pool_size=POOL, pool_timeout=PATIENT_POOL_TIMEOUT_S)
    in_use = peak = 0

    def checkout(*_: Any) -> None:
        nonlocal in_use, peak
        in_use += 1
        peak = max(peak, in_use)

    def checkin(*_: Any) -> None:
        nonlocal in_use
        in_use -= 1

    event.listen(db.engine.sync_engine.pool, "checkout", checkout)
    event.listen(db.engine.sync_engine.pool, "checkin", checkin)
    sync = VectorSync(db, sql_index, sql_embedder, VECTOR_BINDINGS, interval=0.05)
    await sync.ensure_collections()
    learning = SqlLearningStore(db, sql_index, sql_embedder, sync)
    memories = SqlMemoryStore(db, sql_index, sql_embedder, sync)
    try:
        target = await learning.create(T, SuccessPatternInput(pattern_type="ops", name="Blue-green deploy"))
        outcomes = [learning.record_outcome(T, target.pattern_id, i % 2 == 0) for i in range(40)]
        stores = [
            memories.store(NewMemory(T, f"note {i}", "artemis", "general", ("db",) if i % 2 else ("perf",), 0.5))
            for i in range(30)
        ]
        duplicates = [learning.create(T, SuccessPatternInput(pattern_type="ops", name="dup")) for _ in range(8)]
        reads = [memories.search_by_tag(T, ("db",), MemoryFilter(), 100) for _ in range(10)]
        reads += [learning.list(T, page_size=100) for _ in range(10)]
        results = await asyncio.gather(*outcomes, *stores, *duplicates, *reads, return_exceptions=True)

        dup_results = results[70:78]
        assert sum(isinstance(r, SuccessPattern) for r in dup_results) == 1
        assert sum(isinstance(r, AlreadyExistsError) for r in dup_results) == 7
        others = results[:70] + results[78:]
        assert [r for r in others if isinstance(r, BaseException)] == []

        final = await learning.get(T, target.pattern_id)
        assert final.match_count == 40  # one atomic UPDATE each: no lost increment
        assert final.success_rate == pytest.approx(0.5)
        assert await memories.count(T) == 30
        assert len(await memories.search_by_tag(T, ("db",), MemoryFilter(), 100)) == 15
        assert (await learning.list(T, page_size=100)).total_size == 2

        await sync.run_pending()
        async with db.session() as session:
            assert await session.scalar(select(func.count()).select_from(VectorOutboxRow)) == 0
        assert 2 <= peak <= POOL  # concurrent, never above TMWS_DB_MAX_CONNECTIONS (no overflow)
    finally:
        await sync.stop()
        await db.dispose()


async def test_an_exhausted_pool_is_unavailable_then_recovers(pg_url: str) -> None:
    db = Database(pg_url, pool_size=1, pool_timeout=0.05)
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with db.session() as session:
            await session.execute(text("SELECT 1"))
            holding.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    try:
        await holding.wait()
        with pytest.raises(UnavailableError):  # the only connection stays busy until this has failed
            async with db.session() as session:
                await session.execute(text("SELECT 1"))
    finally:
        release.set()
        await holder
    async with db.session() as session:
        assert (await session.execute(text("SELECT 1"))).scalar() == 1
    await db.dispose()


async def _terminate_connections(maintenance_url: str, url: str) -> int:
    engine = create_async_engine(maintenance_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            terminated = await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid, 60000) FROM pg_stat_activity"
                    " WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": make_url(url).database},
            )
            return sum(bool(r[0]) for r in terminated.all())
    finally:
        await engine.dispose()


@pytest.mark.parametrize("pre_ping", [True, False])
async def test_pre_ping_replaces_connections_the_server_closed(
    pg_url: str, pg_maintenance: str, pre_ping: bool
) -> None:
    db = Database(pg_url, pool_size=2, pool_pre_ping=pre_ping)
    try:
        async with db.session() as session:
            assert (await session.execute(text("SELECT 1"))).scalar() == 1  # the connection is pooled now
        assert await _terminate_connections(pg_maintenance, pg_url) == 1  # e.g. a database restart
        if pre_ping:
            async with db.session() as session:
                assert (await session.execute(text("SELECT 2"))).scalar() == 2
        else:
            with pytest.raises(UnavailableError):
                async with db.session() as session:
                    await session.execute(text("SELECT 2"))
            async with db.session() as session:  # the dead connection was discarded
                assert (await session.execute(text("SELECT 3"))).scalar() == 3
    finally:
        await db.dispose()


async def test_server_on_postgresql_keeps_its_data_across_restarts(pg_maintenance: str, tmp_path: pathlib.Path) -> None:
    url = await create_database(pg_maintenance)  # empty: the server's own migrations create the schema
    settings = make_settings(tmp_path / "data", database_url=url, embedder="hashing", db_max_connections=4)
    try:
        server = await start_server(settings)
        try:
            assert server.app.db.dialect == "postgresql"
            assert server.app.db.engine.pool.size() == 4  # type: ignore[attr-defined]
            async with PatternClient.connect(f"127.0.0.1:{server.port}") as c:
                await c.delete_pattern_definition("temporal_analysis")
                await c.execute("store the rollback plan for the billing migration", context={"agent": "artemis"})
                created = await c.create_success_pattern(
                    pl.SuccessPattern(pattern_type="ops", name="Blue-green deploy", tags=["deploy", "zero-downtime"])
                )
                await c.record_pattern_outcome(created.pattern_id, success=True)
        finally:
            await server.stop(0)

        server = await start_server(settings)
        try:
            async with PatternClient.connect(f"127.0.0.1:{server.port}") as c:
                names = {d.name for d in (await c.list_pattern_definitions(page_size=100)).pattern_definitions}
                assert "temporal_analysis" not in names and "health_check" in names  # seeded once, not again
                recalled = await c.execute("recall memories about the billing rollback", use_cache=False)
                assert recalled.result["memory"]["memories"][0]["content"].startswith("the rollback plan")
                got = await c.get_success_pattern(created.pattern_id)
                assert (got.name, list(got.tags), got.match_count, got.success_rate) == (
                    "Blue-green deploy",
                    ["deploy", "zero-downtime"],
                    1,
                    1.0,
                )
                matched = await c.match_patterns("deploy with zero downtime", min_confidence=0.0)
                assert matched.matched_patterns[0].pattern_id == created.pattern_id
        finally:
            await server.stop(0)
    finally:
        await drop_database(pg_maintenance, url)
