"""Fixtures of the engine tests (all prefixed ``eng_``).

Every engine test runs on the real stores, twice: on a fresh SQLite file
migrated by Alembic and on a fresh PostgreSQL database copied from the
session's migrated template (``pg_template_url`` in ``tests/conftest.py``;
skipped when the default server is unreachable), with a real embedded
qdrant-edge index, the outbox sync, and the deterministic hashing embedder.
The result cache runs on an injected clock so TTLs are driven, never slept.
"""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest
from eng_helpers import ENG_THRESHOLD, EngBuilder, EngClock, eng_explode
from server_helpers import create_database, drop_database

from pattern_service.app import build_engine
from pattern_service.engine import PatternExecutionEngine, ToolRegistry
from pattern_service.store.db import Database, aupgrade_to_head
from pattern_service.store.definitions import SqlPatternDefinitionStore
from pattern_service.store.embeddings import HashingEmbedder
from pattern_service.store.memories import SqlMemoryStore
from pattern_service.store.outbox import VectorSync
from pattern_service.store.vector_bindings import VECTOR_BINDINGS
from pattern_service.store.vectors.edge import EdgeVectorIndex


@pytest.fixture(params=["sqlite", "postgresql"])
def eng_backend(request: pytest.FixtureRequest) -> str:
    """The SQL backend of this run of the test."""
    return str(request.param)


@pytest.fixture
async def eng_url(eng_backend: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """URL of the test's SQLite file (not yet created), or of its PostgreSQL database (at head; dropped after)."""
    if eng_backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'db' / 'engine.db'}"
        return
    maintenance_url, template = request.getfixturevalue("pg_template_url")
    url = await create_database(maintenance_url, template=template)
    try:
        yield url
    finally:
        await drop_database(maintenance_url, url)


@pytest.fixture
async def eng_db(eng_backend: str, eng_url: str) -> AsyncIterator[Database]:
    """The test's database, migrated to head."""
    if eng_backend == "sqlite":
        await aupgrade_to_head(eng_url)
    db = Database(eng_url)
    yield db
    await db.dispose()


@pytest.fixture
def eng_embedder() -> HashingEmbedder:
    """The deterministic hashing embedder (384-d)."""
    return HashingEmbedder()


@pytest.fixture
async def eng_index(tmp_path: pathlib.Path) -> AsyncIterator[EdgeVectorIndex]:
    """A real embedded qdrant-edge index."""
    index = EdgeVectorIndex(tmp_path / "vectors")
    yield index
    await index.close()


@pytest.fixture
async def eng_memories(
    eng_db: Database, eng_index: EdgeVectorIndex, eng_embedder: HashingEmbedder
) -> AsyncIterator[SqlMemoryStore]:
    """The real memory store (SQL + vectors through the outbox)."""
    sync = VectorSync(eng_db, eng_index, eng_embedder, VECTOR_BINDINGS, interval=0.05)
    await sync.ensure_collections()
    yield SqlMemoryStore(eng_db, eng_index, eng_embedder, sync)
    await sync.stop()


@pytest.fixture
def eng_definitions(eng_db: Database) -> SqlPatternDefinitionStore:
    """The real pattern-definition store."""
    return SqlPatternDefinitionStore(eng_db)


@pytest.fixture
def eng_clock() -> EngClock:
    """The result cache's clock."""
    return EngClock()


@pytest.fixture
def eng_build(
    eng_definitions: SqlPatternDefinitionStore,
    eng_memories: SqlMemoryStore,
    eng_embedder: HashingEmbedder,
    eng_clock: EngClock,
) -> EngBuilder:
    """Builds an engine on the test's stores (keyword overrides go to ``build_engine``).

    The tool registry also holds ``explode``, a tool that always fails.
    """

    async def build(**overrides: object) -> PatternExecutionEngine:
        tools = ToolRegistry()
        tools.register("explode", eng_explode)
        kwargs: dict[str, object] = {
            "definition_store": eng_definitions,
            "memory_store": eng_memories,
            "embedder": eng_embedder,
            "semantic_threshold": ENG_THRESHOLD,
            "trigger_threshold": 0.0,  # the hashing embedder's cosines are lexical: a trigger is enough here
            "load_entry_point_tools": False,
            "tools": tools,
            "cache_timer": eng_clock,
            "refresh_interval": 0,
        }
        kwargs.update(overrides)
        return await build_engine(**kwargs)  # type: ignore[arg-type]

    return build


@pytest.fixture
async def eng_engine(eng_build: EngBuilder) -> PatternExecutionEngine:
    """An engine seeded with the default pattern set."""
    return await eng_build()
