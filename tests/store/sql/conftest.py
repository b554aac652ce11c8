"""Fixtures of the SQL learning-store tests (all prefixed ``sql_``).

Every test runs twice, on each backend of :data:`SQL_BACKENDS`: on a fresh
SQLite file migrated by Alembic, and on a fresh PostgreSQL database copied from
the session's migrated template (``pg_template_url`` in ``tests/conftest.py``;
server from ``TMWS_TEST_POSTGRES_URL``, default
``postgresql+asyncpg://postgres@127.0.0.1:5432/test``), dropped after the test.
Both use a real embedded qdrant-edge index and the deterministic hashing embedder.
"""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest
from server_helpers import create_database, drop_database

from pattern_service.store.db import Database, aupgrade_to_head
from pattern_service.store.definitions import SqlPatternDefinitionStore
from pattern_service.store.embeddings import HashingEmbedder
from pattern_service.store.learning import SqlLearningStore
from pattern_service.store.memories import SqlMemoryStore
from pattern_service.store.outbox import VectorSync
from pattern_service.store.vector_bindings import VECTOR_BINDINGS
from pattern_service.store.vectors.edge import EdgeVectorIndex

#: The SQL backends every store test runs on.
SQL_BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=SQL_BACKENDS)
def sql_backend(request: pytest.FixtureRequest) -> str:
    """The backend of this run of the test (``sqlite`` or ``postgresql``)."""
    return str(request.param)


@pytest.fixture
async def sql_url(sql_backend: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """URL of the test's database.

    SQLite: a not-yet-created file in a not-yet-created directory. PostgreSQL: a
    fresh database already migrated to head (a copy of the session template),
    dropped after the test.
    """
    if sql_backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'db' / 'patterns.db'}"
        return
    maintenance_url, template = request.getfixturevalue("pg_template_url")
    url = await create_database(maintenance_url, template=template)
    try:
        yield url
    finally:
        await drop_database(maintenance_url, url)


@pytest.fixture
def sql_vector_root(tmp_path: pathlib.Path) -> pathlib.Path:
    """Root directory of the test's edge vector index."""
    return tmp_path / "vectors"


@pytest.fixture
async def sql_db(sql_backend: str, sql_url: str) -> AsyncIterator[Database]:
    """The test's database, migrated to head."""
    if sql_backend == "sqlite":
        await aupgrade_to_head(sql_url)  # the PostgreSQL copy of the template is at head already
    db = Database(sql_url)
    yield db
    await db.dispose()


@pytest.fixture
def sql_embedder() -> HashingEmbedder:
    """The deterministic hashing embedder (384-d)."""
    return HashingEmbedder()


@pytest.fixture
async def sql_index(sql_vector_root: pathlib.Path) -> AsyncIterator[EdgeVectorIndex]:
    """A real embedded qdrant-edge index, closed after the test."""
    index = EdgeVectorIndex(sql_vector_root)
    yield index
    await index.close()


@pytest.fixture
async def sql_sync(
    sql_db: Database, sql_index: EdgeVectorIndex, sql_embedder: HashingEmbedder
) -> AsyncIterator[VectorSync]:
    """A VectorSync with both collections ensured (background task not started)."""
    sync = VectorSync(sql_db, sql_index, sql_embedder, VECTOR_BINDINGS, interval=0.05)
    await sync.ensure_collections()
    yield sync
    await sync.stop()


@pytest.fixture
def sql_memories(
    sql_db: Database, sql_index: EdgeVectorIndex, sql_embedder: HashingEmbedder, sql_sync: VectorSync
) -> SqlMemoryStore:
    """The memory store under test."""
    return SqlMemoryStore(sql_db, sql_index, sql_embedder, sql_sync)


@pytest.fixture
def sql_learning(
    sql_db: Database, sql_index: EdgeVectorIndex, sql_embedder: HashingEmbedder, sql_sync: VectorSync
) -> SqlLearningStore:
    """The learning store under test."""
    return SqlLearningStore(sql_db, sql_index, sql_embedder, sql_sync)


@pytest.fixture
def sql_definitions(sql_db: Database) -> SqlPatternDefinitionStore:
    """The pattern-definition store under test."""
    return SqlPatternDefinitionStore(sql_db)
