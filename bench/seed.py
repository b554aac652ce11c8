"""Bulk seeding of a data directory with the server's own store classes (server stopped).

The API path (``ExecuteMany`` "store …", ``CreateSuccessPattern``) embeds each item with the ONNX
model as it is written; :func:`api_store_rate` measures it. For the 10k and 100k curves this module
writes the same rows the stores write (``MemoryRow`` + ``MemoryTagRow``, ``SuccessPatternRow``,
through the migrated schema) and upserts the points through :class:`EdgeVectorIndex` with the
service's payload builders, using the real MiniLM embeddings of the texts (:mod:`bench.corpus`).
No outbox rows are written because the index is already in step; the server's reconciliation pass
on start finds nothing to repair (checked: :func:`seed_store` returns the counts it sees).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select

from bench.corpus import Item, items
from pattern_service.domain import MemoryFilter, quality_score
from pattern_service.store.db import Database, aupgrade_to_head
from pattern_service.store.embeddings import MINILM_MODEL_ID
from pattern_service.store.learning import context_hash
from pattern_service.store.learning_binding import PATTERN_BINDING
from pattern_service.store.memory_binding import MEMORY_BINDING
from pattern_service.store.orm import MemoryRow, MemoryTagRow, SuccessPatternRow, utcnow
from pattern_service.store.vector_bindings import VECTOR_BINDINGS
from pattern_service.store.vectors.base import VectorPoint
from pattern_service.store.vectors.edge import EdgeVectorIndex

MEMORY_COLLECTION = MEMORY_BINDING.collection
PATTERN_COLLECTION = PATTERN_BINDING.collection

TENANT = "default"
AGENT = "bench"
_NS = uuid.UUID("7b0c4a52-3f2e-4c1e-9d51-5d7f1f0a9b10")
_BATCH = 1000
DIMENSION = 384


def memory_id(i: int) -> str:
    """Deterministic id of memory ``i``."""
    return str(uuid.uuid5(_NS, f"memory-{i}"))


def pattern_id(i: int) -> str:
    """Deterministic id of success pattern ``i``."""
    return str(uuid.uuid5(_NS, f"pattern-{i}"))


def _database_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{(data_dir / 'pattern_service.db').resolve()}"


def _memory_row(it: Item, when: object) -> MemoryRow:
    return MemoryRow(
        memory_id=memory_id(it.index),
        tenant_id=TENANT,
        agent_id=AGENT,
        content=it.text,
        memory_type="note",
        tags=list(it.tags),
        importance=round(0.1 + 0.8 * ((it.index * 37) % 100) / 100.0, 3),
        metadata_={"seeded": True},
        created_at=when,
        updated_at=when,
    )


def _pattern_row(it: Item, when: object) -> SuccessPatternRow:
    metrics = {"accuracy": 0.8 + 0.2 * ((it.index * 13) % 10) / 10.0, "reliability": 0.95}
    trace = {"steps": [it.description, f"Verify on the {it.pattern_type.replace('_', ' ')} dashboard"]}
    return SuccessPatternRow(
        pattern_id=pattern_id(it.index),
        tenant_id=TENANT,
        pattern_type=it.pattern_type,
        name=it.name,
        description=it.description,
        version=1,
        parent_pattern_id=None,
        context_hash=context_hash({}),
        execution_trace=trace,
        success_criteria={},
        quality_metrics=metrics,
        performance_data={},
        tags=list(it.tags),
        status="active",
        created_at=when,
        updated_at=when,
        last_matched_at=None,
        match_count=0,
        success_rate=None,
        context={},
        quality_score=quality_score(metrics),
    )


async def count_seeded(data_dir: Path) -> int:
    """Number of seeded memories already in ``data_dir`` (0 when it has no database)."""
    if not (data_dir / "pattern_service.db").exists():
        return 0
    db = Database(_database_url(data_dir))
    try:
        async with db.session() as session:
            n = await session.scalar(select(func.count()).select_from(MemoryRow).where(MemoryRow.agent_id == AGENT))
        return int(n or 0)
    finally:
        await db.dispose()


async def seed_store(data_dir: Path, n: int, vectors: npt.NDArray[np.float32]) -> tuple[int, int]:
    """Bring ``data_dir`` to ``n`` seeded memories and ``n`` seeded success patterns (items ``0..n-1``).

    Items already seeded are kept; only the missing tail is written (SQL first, then the index).

    Args:
        data_dir: The service's ``TMWS_DATA_DIR`` (the server must not be running).
        n: Target size.
        vectors: Embeddings of items ``0..n-1`` (at least ``n`` rows).

    Returns:
        (memory points, pattern points) in the index afterwards.
    """
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    url = _database_url(data_dir)
    await aupgrade_to_head(url)
    have = await count_seeded(data_dir)
    db = Database(url)
    index = EdgeVectorIndex(data_dir / "vectors")
    try:
        for binding in VECTOR_BINDINGS:
            await index.ensure_collection(binding.spec(DIMENSION, MINILM_MODEL_ID))
        base = utcnow() - timedelta(days=30)
        for start in range(have, n, _BATCH):
            chunk = items(min(n, start + _BATCH), start)
            when = [base + timedelta(seconds=it.index) for it in chunk]
            mems = [_memory_row(it, w) for it, w in zip(chunk, when, strict=True)]
            pats = [_pattern_row(it, w) for it, w in zip(chunk, when, strict=True)]
            mem_points = [
                VectorPoint(
                    id=m.memory_id, vector=vectors[it.index], payload=MEMORY_BINDING.payload(m, MINILM_MODEL_ID)
                )
                for m, it in zip(mems, chunk, strict=True)
            ]
            pat_points = [
                VectorPoint(
                    id=p.pattern_id, vector=vectors[it.index], payload=PATTERN_BINDING.payload(p, MINILM_MODEL_ID)
                )
                for p, it in zip(pats, chunk, strict=True)
            ]
            tags = [MemoryTagRow(memory_id=m.memory_id, tenant_id=TENANT, tag=t) for m in mems for t in m.tags]
            async with db.session() as session:
                session.add_all(mems)
                session.add_all(pats)
                await session.flush()
                session.add_all(tags)
            await index.upsert(MEMORY_COLLECTION, mem_points)
            await index.upsert(PATTERN_COLLECTION, pat_points)
        return await index.count(MEMORY_COLLECTION), await index.count(PATTERN_COLLECTION)
    finally:
        await index.close()
        await db.dispose()


async def index_recall_at_10(
    data_dir: Path, n: int, vectors: npt.NDArray[np.float32], queries: npt.NDArray[np.float32]
) -> dict[str, float]:
    """recall@10 of the service's memory index (tenant-filtered search) against exact numpy search.

    The index is opened as the server opens it, so a collection past the HNSW threshold gets its
    graph built here (timed as ``open_seconds``) and the figure is that of the graph search.

    Args:
        data_dir: The seeded data directory (server stopped).
        n: Seeded items (the exact search runs over ``vectors[:n]``).
        vectors: Item embeddings.
        queries: Query embeddings (rows L2-normalised).

    Returns:
        ``{"recall_at_10": mean overlap / 10, "queries": count, "index_ms_mean": …, "numpy_ms_mean": …,
        "open_seconds": …, "graph_points": points in HNSW graphs}``.
    """
    import time

    index = EdgeVectorIndex(data_dir / "vectors")
    ids = np.array([memory_id(i) for i in range(n)])
    flt = MEMORY_BINDING.vector_filter(TENANT, MemoryFilter())
    overlaps: list[float] = []
    index_ms: list[float] = []
    numpy_ms: list[float] = []
    try:
        t0 = time.perf_counter()
        for binding in VECTOR_BINDINGS:
            await index.ensure_collection(binding.spec(DIMENSION, MINILM_MODEL_ID))
        open_seconds = time.perf_counter() - t0
        graph_points = index._collections[MEMORY_COLLECTION].shard.info().indexed_vectors_count
        matrix = vectors[:n]
        for q in queries:
            t0 = time.perf_counter()
            sims = matrix @ q
            top = np.argpartition(-sims, 10)[:10] if n > 10 else np.arange(n)
            exact = set(ids[top].tolist())
            numpy_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            hits = await index.search(MEMORY_COLLECTION, q, limit=10, flt=flt)
            index_ms.append((time.perf_counter() - t0) * 1000)
            overlaps.append(len(exact & {h.id for h in hits}) / min(10, n))
    finally:
        await index.close()
    return {
        "recall_at_10": float(np.mean(overlaps)),
        "queries": len(overlaps),
        "index_ms_mean": float(np.mean(index_ms)),
        "numpy_ms_mean": float(np.mean(numpy_ms)),
        "open_seconds": open_seconds,
        "graph_points": graph_points,
    }


def exact_top10(vectors: npt.NDArray[np.float32], n: int, query: npt.NDArray[np.float32]) -> list[int]:
    """Indexes of the exact cosine top-10 of ``query`` among items ``0..n-1`` (best first)."""
    sims = vectors[:n] @ query
    top = np.argpartition(-sims, 10)[:10] if n > 10 else np.arange(n)
    return [int(i) for i in top[np.argsort(-sims[top])]]
