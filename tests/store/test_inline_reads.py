"""The two reads the recall path runs on the event loop instead of a worker thread.

``Database.read(inline=True)`` (a primary-key read on a SQLite file) and a short search of the
embedded index (``EdgeVectorIndex``, small collection, index thread idle) skip the thread hop, which
cost more CPU than the work under load. These tests pin what that must not change: the same answers,
no read transaction left open (it would hold back WAL checkpoints), and a search that meets a write
in progress still goes through the index thread, so the shard is never used by two threads at once.
"""

from __future__ import annotations

import asyncio
import pathlib
import threading
import uuid

import numpy as np
import pytest
import qdrant_edge as qe
from sqlalchemy import Connection, text

from pattern_service.store.db import Database
from pattern_service.store.vectors import edge
from pattern_service.store.vectors.base import CollectionSpec, VectorPoint
from pattern_service.store.vectors.edge import EdgeVectorIndex

DIM = 16
SPEC = CollectionSpec(name="inline_test", dimension=DIM, model_id="test-model")


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def test_an_inline_read_answers_like_a_thread_read_and_leaves_no_transaction_open(
    tmp_path: pathlib.Path,
) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'inline.db'}")
    try:
        async with db.session(write=True) as session:
            await session.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)"))
            await session.execute(text("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')"))

        def rows(conn: Connection) -> list[tuple[int, str]]:
            return [(r.k, r.v) for r in conn.execute(text("SELECT k, v FROM t WHERE k IN (1, 3) ORDER BY k"))]

        caller = threading.get_ident()
        seen: list[int] = []

        def where(conn: Connection) -> int:
            seen.append(threading.get_ident())
            return 0

        assert await db.read(rows, inline=True) == await db.read(rows) == [(1, "a"), (3, "c")]
        await db.read(where, inline=True)
        await db.read(where)
        assert seen[0] == caller and seen[1] != caller  # inline ran here, the other on a sql-read thread

        # A write after the inline read, then a full checkpoint: a read transaction left open on the
        # loop's connection would make the checkpoint report busy and keep the WAL.
        async with db.session(write=True) as session:
            await session.execute(text("INSERT INTO t VALUES (4, 'd')"))
        assert await db.read(lambda c: c.execute(text("SELECT count(*) FROM t")).scalar_one(), inline=True) == 4
        async with db.session(write=True) as session:
            busy, _, _ = (await session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))).one()
        assert busy == 0
    finally:
        await db.dispose()


async def test_a_short_search_runs_inline_and_finds_what_the_index_thread_finds(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(7)
    vecs = _unit(rng, 200)
    ids = [str(uuid.uuid4()) for _ in range(200)]
    index = EdgeVectorIndex(tmp_path)
    try:
        await index.ensure_collection(SPEC)
        await index.upsert(
            SPEC.name, [VectorPoint(i, v, {"n": k}) for k, (i, v) in enumerate(zip(ids, vecs, strict=True))]
        )
        shard_threads = _watch(index, monkeypatch)
        inline = await index.search(SPEC.name, vecs[5], limit=5, with_payload=False)
        assert shard_threads == {threading.get_ident()}  # on the loop: the index thread was idle
        threaded = await index._run(
            lambda: [str(h.id) for h in index._get(SPEC.name).shard.query(_request(index, vecs[5]))]
        )
        assert [h.id for h in inline] == threaded and inline[0].id == ids[5]
        assert inline[0].payload == {}
        assert (await index.search(SPEC.name, vecs[5], limit=1))[0].payload == {"n": 5}
    finally:
        await index.close()


def _watch(index: EdgeVectorIndex, monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """Record the thread of every call on the test collection's shard (returned set)."""
    coll = index._get(SPEC.name)
    threads: set[int] = set()
    real = coll.shard

    class _Watch:
        def __getattr__(self, name: str) -> object:
            attr = getattr(real, name)

            def call(*args: object) -> object:
                threads.add(threading.get_ident())
                return attr(*args)

            return call

    monkeypatch.setattr(coll, "shard", _Watch())
    return threads


def _request(index: EdgeVectorIndex, vector: np.ndarray) -> object:
    return qe.QueryRequest(limit=5, query=qe.Query.Nearest(vector), params=index._search_params, with_payload=False)


async def test_a_search_during_a_write_goes_through_the_index_thread(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(8)
    index = EdgeVectorIndex(tmp_path)
    try:
        await index.ensure_collection(SPEC)
        coll = index._get(SPEC.name)
        shard_threads = _watch(index, monkeypatch)
        vecs = _unit(rng, 3000)
        points = [VectorPoint(str(uuid.uuid4()), v, {}) for v in vecs]
        write = asyncio.ensure_future(index.upsert(SPEC.name, points))
        await asyncio.sleep(0)  # the upsert is on the index thread now
        assert index._in_flight == 1
        await index.search(SPEC.name, vecs[0], limit=3)
        await write
        assert threading.get_ident() not in shard_threads  # the search waited for the thread, not beside it
        # 3,000 points outside the graph: above the inline bound, so searches keep using the thread.
        assert coll.outside_graph_bound > edge.INLINE_SEARCH_EXACT_POINTS
        hits = await index.search(SPEC.name, vecs[0], limit=3)
        assert hits[0].id == points[0].id and threading.get_ident() not in shard_threads
    finally:
        await index.close()
