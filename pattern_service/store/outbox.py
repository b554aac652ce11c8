"""Transactional outbox that keeps the vector index in sync with SQL.

Every write that changes a vector adds a ``vector_outbox`` row (:func:`enqueue`)
in the same transaction as its SQL change. After commit the writer calls
:meth:`VectorSync.apply`; a background pass (:meth:`VectorSync.start`) retries
whatever failed. Applying a point never trusts the outbox row's content: it
re-reads the SQL source row and upserts its current state, or deletes the point
when the row is gone, so applying is idempotent and replays are harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pattern_service.domain import SuccessPattern
from pattern_service.store.db import Database
from pattern_service.store.embeddings import Embedder
from pattern_service.store.orm import MemoryRow, SuccessPatternRow, VectorOutboxRow, utcnow
from pattern_service.store.vectors.base import CollectionSpec, VectorIndex, VectorPoint

log = logging.getLogger(__name__)

MEMORY_COLLECTION = "memory_embeddings"
PATTERN_COLLECTION = "pattern_embeddings"

OutboxOp = Literal["upsert", "delete"]


def memory_collection_spec(dimension: int, model_id: str) -> CollectionSpec:
    """Spec of ``memory_embeddings`` with a payload index on every filtered field.

    Args:
        dimension: Vector size of the embedder.
        model_id: The embedder's model id.
    """
    return CollectionSpec(
        name=MEMORY_COLLECTION,
        dimension=dimension,
        model_id=model_id,
        payload_indexes={
            "tenant_id": "keyword",
            "agent_id": "keyword",
            "memory_type": "keyword",
            "tags": "keyword",
            "importance": "float",
            "created_at": "integer",
        },
    )


def pattern_collection_spec(dimension: int, model_id: str) -> CollectionSpec:
    """Spec of ``pattern_embeddings`` with a payload index on every filtered field.

    Args:
        dimension: Vector size of the embedder.
        model_id: The embedder's model id.
    """
    return CollectionSpec(
        name=PATTERN_COLLECTION,
        dimension=dimension,
        model_id=model_id,
        payload_indexes={
            "tenant_id": "keyword",
            "pattern_type": "keyword",
            "status": "keyword",
            "tags": "keyword",
            "quality_score": "float",
            "success_rate": "float",
            "match_count": "integer",
            "created_at": "integer",
            "last_matched_at": "integer",
        },
    )


def collection_specs(dimension: int, model_id: str) -> list[CollectionSpec]:
    """Both collection specs (memories, patterns)."""
    return [memory_collection_spec(dimension, model_id), pattern_collection_spec(dimension, model_id)]


def pattern_embedding_text(row: SuccessPatternRow | SuccessPattern) -> str:
    """The text embedded for a success pattern: what describes it, most telling first.

    Name, description, the intent (and environment) of its context, its tags,
    its type and its execution steps (the seed embedded only type, name,
    description and tags; the intent and the steps are what a caller's need
    is phrased like). MiniLM reads the first 256 word pieces, so the steps come
    last. Changing this text re-embeds every stored pattern: migration 0004
    queues them all in the outbox.
    """
    context = row.context or {}
    description = row.description.strip()
    if description and description[-1] not in ".!?":
        description += "."
    parts = [f"{row.name}.", description]
    for key in ("intent", "environment"):
        value = context.get(key)
        if isinstance(value, str) and value.strip():
            parts.append(f"{key.capitalize()}: {value.strip()}.")
    if row.tags:
        parts.append(f"Tags: {', '.join(row.tags)}.")
    parts.append(f"Type: {row.pattern_type.replace('_', ' ')}.")
    steps = recommendation_texts(row.execution_trace or {})
    if steps:
        parts.append("Steps: " + "; ".join(steps) + ".")
    return " ".join(p for p in parts if p)


def recommendation_texts(execution_trace: Mapping[str, Any]) -> tuple[str, ...]:
    """The steps of ``execution_trace["steps"]``: strings, or dicts' ``description`` / ``action``."""
    steps = execution_trace.get("steps")
    if not isinstance(steps, list):
        return ()
    out: list[str] = []
    for step in steps:
        if isinstance(step, str) and step.strip():
            out.append(step)
        elif isinstance(step, Mapping):
            text = step.get("description") or step.get("action")
            if isinstance(text, str) and text.strip():
                out.append(text)
    return tuple(out)


def memory_payload(row: MemoryRow, model_id: str) -> dict[str, Any]:
    """Index payload of a memory (``agent_id`` omitted when ``None``); ``created_at`` in epoch seconds."""
    payload: dict[str, Any] = {
        "tenant_id": row.tenant_id,
        "memory_type": row.memory_type,
        "tags": list(row.tags or []),
        "importance": float(row.importance),
        "created_at": int(row.created_at.timestamp()),
        "model_id": model_id,
    }
    if row.agent_id is not None:
        payload["agent_id"] = row.agent_id
    return payload


def pattern_payload(row: SuccessPatternRow, model_id: str) -> dict[str, Any]:
    """Index payload of a success pattern (the seed's ``create_pattern_payload`` fields).

    Nullable fields are omitted when null; times are epoch seconds.
    """
    payload: dict[str, Any] = {
        "pattern_id": row.pattern_id,
        "tenant_id": row.tenant_id,
        "pattern_type": row.pattern_type,
        "version": int(row.version),
        "status": row.status,
        "tags": list(row.tags or []),
        "quality_score": float(row.quality_score),
        "match_count": int(row.match_count),
        "created_at": int(row.created_at.timestamp()),
        "model_id": model_id,
    }
    if row.success_rate is not None:
        payload["success_rate"] = float(row.success_rate)
    if row.last_matched_at is not None:
        payload["last_matched_at"] = int(row.last_matched_at.timestamp())
    return payload


def enqueue(session: AsyncSession, collection: str, point_id: str, op: OutboxOp) -> None:
    """Add an outbox row to ``session`` (commit it with the SQL change it belongs to)."""
    session.add(VectorOutboxRow(collection=collection, point_id=point_id, op=op, created_at=utcnow(), attempts=0))


class VectorSync:
    """Applies outbox rows to the vector index, retries failures and reconciles drift.

    Args:
        db: The SQL database (source of truth).
        index: The vector index to keep in sync.
        embedder: Embeds memory contents and pattern texts.
        interval: Seconds between background retry passes.
        batch_size: Points embedded and written per index call.
    """

    def __init__(
        self, db: Database, index: VectorIndex, embedder: Embedder, *, interval: float = 1.0, batch_size: int = 128
    ):
        self.db = db
        self.index = index
        self.embedder = embedder
        self.interval = interval
        self.batch_size = batch_size
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._waiting: list[tuple[str, list[str], asyncio.Future[bool]]] = []
        self._applier: asyncio.Task[None] | None = None
        #: Called with (collection, point ids) after changes were applied to the index; the app
        #: uses it to tell other replicas whose indexes are their own (see :meth:`follow`).
        self.on_applied: Callable[[str, list[str]], Awaitable[None]] | None = None

    async def ensure_collections(self) -> None:
        """Create or check both collections for the embedder's dimension and model id.

        Raises:
            FailedPreconditionError: A collection holds vectors of another model (``EMBEDDING_MODEL_MISMATCH``).
            UnavailableError: The index cannot be reached.
        """
        for spec in collection_specs(self.embedder.dimension, self.embedder.model_id):
            await self.index.ensure_collection(spec)

    # -- applying -----------------------------------------------------------

    async def apply(self, collection: str, ids: Sequence[str]) -> bool:
        """Apply the pending outbox rows of ``ids`` in ``collection`` now.

        Writers that call this while an application is running are served
        together by the next one (group apply): one outbox read, one embedding
        batch, one index write and one outbox delete for all of them. Under a
        steady stream of writes this turns one embedding call per write into
        one per batch. The application runs in its own task: a caller that is
        cancelled (its deadline) stops waiting, the batch still completes.

        Never raises for index or embedder failures: the rows then stay pending
        with ``attempts`` + 1 and ``last_error`` set, for the background pass.

        Args:
            collection: Collection name.
            ids: Point ids (memory or pattern ids) just written.

        Returns:
            Whether everything pending for those ids was applied.
        """
        if not ids:
            return True
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((collection, list(ids), done))
        if self._applier is None or self._applier.done():
            self._applier = asyncio.create_task(self._apply_waiting(), name="vector-outbox-apply")
        return await asyncio.shield(done)

    async def _apply_waiting(self) -> None:
        """Apply every waiting writer's ids, batch after batch, until none is waiting."""
        batch: list[tuple[str, list[str], asyncio.Future[bool]]] = []
        try:
            async with self._lock:
                while self._waiting:
                    batch, self._waiting = self._waiting, []
                    by_collection: dict[str, list[str]] = {}
                    for collection, ids, _ in batch:
                        by_collection.setdefault(collection, []).extend(ids)
                    outcome = {c: await self._apply_ids(c, list(dict.fromkeys(i))) for c, i in by_collection.items()}
                    for collection, _, done in batch:
                        if not done.done():
                            done.set_result(outcome[collection])
                    batch = []
        finally:  # cancelled (shutdown): the rows stay pending for the next start
            for _, _, done in batch + self._waiting:
                if not done.done():
                    done.set_result(False)
            self._waiting = []

    async def _apply_ids(self, collection: str, ids: list[str]) -> bool:
        try:
            async with self.db.session() as session:
                result = await session.execute(
                    select(VectorOutboxRow.id).where(
                        VectorOutboxRow.collection == collection, VectorOutboxRow.point_id.in_(ids)
                    )
                )
                row_ids = list(result.scalars())
        except Exception:
            log.exception("reading the vector outbox failed")
            return False
        if not row_ids:
            return True
        return await self._apply_rows(collection, ids, row_ids)

    async def run_pending(self) -> int:
        """Apply every pending outbox row once, oldest first (one pass).

        Returns:
            Number of outbox rows applied and removed.

        Raises:
            UnavailableError: The database cannot be reached.
        """
        applied = 0
        cursor = 0
        async with self._lock:
            while True:
                async with self.db.session() as session:
                    result = await session.execute(
                        select(VectorOutboxRow.id, VectorOutboxRow.collection, VectorOutboxRow.point_id)
                        .where(VectorOutboxRow.id > cursor)
                        .order_by(VectorOutboxRow.id)
                        .limit(self.batch_size)
                    )
                    rows = result.all()
                if not rows:
                    return applied
                cursor = max(r.id for r in rows)
                groups: dict[str, tuple[list[str], list[int]]] = {}
                for row in rows:
                    points, row_ids = groups.setdefault(row.collection, ([], []))
                    points.append(row.point_id)
                    row_ids.append(row.id)
                for collection, (points, row_ids) in groups.items():
                    if await self._apply_rows(collection, list(dict.fromkeys(points)), row_ids):
                        applied += len(row_ids)

    async def _apply_rows(self, collection: str, point_ids: list[str], row_ids: list[int]) -> bool:
        """Sync ``point_ids`` from SQL, then drop outbox rows ``row_ids``; on failure mark them."""
        try:
            await self._sync_points(collection, point_ids)
        except Exception as exc:
            log.warning("vector sync of %d point(s) in %s failed: %s", len(point_ids), collection, exc)
            with contextlib.suppress(Exception):
                async with self.db.session(write=True) as session:
                    await session.execute(
                        update(VectorOutboxRow)
                        .where(VectorOutboxRow.id.in_(row_ids))
                        .values(attempts=VectorOutboxRow.attempts + 1, last_error=f"{type(exc).__name__}: {exc}"[:2000])
                    )
            return False
        try:
            async with self.db.session(write=True) as session:
                await session.execute(delete(VectorOutboxRow).where(VectorOutboxRow.id.in_(row_ids)))
        except Exception:
            log.exception("removing applied outbox rows failed (they will be re-applied, harmlessly)")
        if self.on_applied is not None:
            try:
                await self.on_applied(collection, point_ids)
            except Exception:
                log.warning("announcing applied vector changes failed", exc_info=True)
        return True

    async def follow(self, collection: str, point_ids: Sequence[str]) -> None:
        """Bring this process's own index up to date with changes another replica applied.

        For replicas whose vector index is not shared (the embedded index): SQL
        is shared, so the current rows are re-read, embedded and upserted (or
        deleted when gone). A failure is logged; the periodic reconciliation
        repairs what a lost message or a failure left behind.

        Args:
            collection: Collection name.
            point_ids: Ids another replica changed.
        """
        ids = list(dict.fromkeys(point_ids))
        if not ids:
            return
        async with self._lock:
            try:
                await self._sync_points(collection, ids)
            except Exception as exc:
                log.warning("following %d change(s) in %s failed: %s", len(ids), collection, exc)

    async def sync_points(self, collection: str, point_ids: Sequence[str]) -> None:
        """Upsert the current SQL state of ``point_ids`` (deleting points whose row is gone), now.

        Unlike :meth:`follow`, failures are raised (``reembed`` reports them).

        Raises:
            Exception: Whatever the database, embedder or index raised.
        """
        async with self._lock:
            await self._sync_points(collection, list(dict.fromkeys(point_ids)))

    async def _sync_points(self, collection: str, point_ids: Sequence[str]) -> None:
        """Upsert the current SQL state of ``point_ids``; delete the points whose row is gone.

        Raises:
            Exception: Whatever the database, embedder or index raised.
        """
        for start in range(0, len(point_ids), self.batch_size):
            chunk = list(point_ids[start : start + self.batch_size])
            texts, payloads = await self._load(collection, chunk)
            if texts:
                vectors = await self.embedder.embed(list(texts.values()))
                rewrite = await self._payload_only(collection, texts, vectors, payloads)
                points = [
                    VectorPoint(id=pid, vector=vectors[i], payload=payloads[pid])
                    for i, pid in enumerate(texts)
                    if pid not in rewrite
                ]
                if points:
                    await self.index.upsert(collection, points)
            gone = [pid for pid in chunk if pid not in texts]
            if gone:
                await self.index.delete(collection, gone)

    async def _payload_only(
        self,
        collection: str,
        texts: Mapping[str, str],
        vectors: npt.NDArray[np.float32],
        payloads: Mapping[str, Mapping[str, Any]],
    ) -> set[str]:
        """Rewrite only the payload of success patterns whose stored vector is already right.

        Recording an outcome or changing a status leaves the embedded text (type,
        name, description, tags) alone: upserting the whole point again appended
        a vector to the index's write-ahead log and segments on every such change
        (the soak's resident memory grew with them). Memories are never updated,
        so only the pattern collection is checked.

        Returns:
            The ids whose payload was rewritten (the caller upserts the others).
        """
        if collection != PATTERN_COLLECTION:
            return set()
        stored = await self.index.retrieve_vectors(collection, list(texts))
        same = {
            pid: payloads[pid]
            for i, pid in enumerate(texts)
            if pid in stored and np.allclose(stored[pid], vectors[i], atol=1e-5)
        }
        if not same:
            return set()
        missing = await self.index.overwrite_payloads(collection, same)  # deleted in between: upsert instead
        return set(same) - set(missing)

    async def _load(
        self, collection: str, ids: Sequence[str]
    ) -> tuple[dict[str, str], Mapping[str, Mapping[str, Any]]]:
        """Embedding texts and payloads, by id, of the SQL rows that exist."""
        model_id = self.embedder.model_id
        texts: dict[str, str] = {}
        payloads: dict[str, Mapping[str, Any]] = {}
        async with self.db.session() as session:
            if collection == MEMORY_COLLECTION:
                memories = await session.scalars(select(MemoryRow).where(MemoryRow.memory_id.in_(list(ids))))
                for m in memories:
                    texts[m.memory_id] = m.content
                    payloads[m.memory_id] = memory_payload(m, model_id)
            elif collection == PATTERN_COLLECTION:
                patterns = await session.scalars(
                    select(SuccessPatternRow).where(SuccessPatternRow.pattern_id.in_(list(ids)))
                )
                for p in patterns:
                    texts[p.pattern_id] = pattern_embedding_text(p)
                    payloads[p.pattern_id] = pattern_payload(p, model_id)
            else:
                raise ValueError(f"unknown vector collection {collection!r}")
        return texts, payloads

    # -- reconciliation -----------------------------------------------------

    async def reconcile(self, collection: str) -> tuple[int, int]:
        """Repair drift between SQL and the index in both directions.

        SQL rows missing from the index are upserted; index points without a
        SQL row are deleted. Index ids are read before SQL ids, so a write
        racing with the pass is never undone.

        Args:
            collection: ``memory_embeddings`` or ``pattern_embeddings``.

        Returns:
            (points upserted, points deleted).

        Raises:
            ValueError: Unknown collection.
            UnavailableError: The database or the index cannot be reached.
        """
        if collection == MEMORY_COLLECTION:
            id_column: Any = MemoryRow.memory_id
        elif collection == PATTERN_COLLECTION:
            id_column = SuccessPatternRow.pattern_id
        else:
            raise ValueError(f"unknown vector collection {collection!r}")
        async with self._lock:
            index_ids = await self.index.list_ids(collection)
            async with self.db.session() as session:
                sql_ids = set(await session.scalars(select(id_column)))
            missing = sorted(sql_ids - index_ids)
            extra = sorted(index_ids - sql_ids)
            await self._sync_points(collection, missing + extra)
        if missing or extra:
            log.info("reconciled %s: %d upserted, %d deleted", collection, len(missing), len(extra))
        return len(missing), len(extra)

    async def reconcile_all(self) -> dict[str, tuple[int, int]]:
        """:meth:`reconcile` both collections; returns (upserted, deleted) per collection."""
        return {name: await self.reconcile(name) for name in (MEMORY_COLLECTION, PATTERN_COLLECTION)}

    # -- monitoring ---------------------------------------------------------

    async def pending_count(self) -> int:
        """Number of outbox rows not yet applied.

        Raises:
            UnavailableError: The database cannot be reached.
        """
        async with self.db.session() as session:
            return int(await session.scalar(select(func.count()).select_from(VectorOutboxRow)) or 0)

    async def lag_seconds(self) -> float:
        """Age in seconds of the oldest pending outbox row (0.0 when none is pending).

        Raises:
            UnavailableError: The database cannot be reached.
        """
        async with self.db.session() as session:
            oldest = await session.scalar(select(func.min(VectorOutboxRow.created_at)))
        if oldest is None:
            return 0.0
        if oldest.tzinfo is None:  # func.min bypasses the column type on some backends
            oldest = oldest.replace(tzinfo=UTC)
        return max(0.0, (utcnow() - oldest).total_seconds())

    # -- background task ----------------------------------------------------

    def start(self) -> None:
        """Start the background retry task (every ``interval`` seconds); idempotent."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="vector-outbox-sync")

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop the background task; let a running group apply finish (at most ``drain_timeout`` seconds).

        What is not applied by then stays in the outbox for the next start.
        """
        task, self._task = self._task, None
        applier, self._applier = self._applier, None
        if applier is not None and not applier.done():
            _, pending = await asyncio.wait({applier}, timeout=drain_timeout)
            for late in pending:
                late.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await late
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def running(self) -> bool:
        """Whether the background task is running."""
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        while True:
            try:
                await self.run_pending()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("vector outbox pass failed")
            await asyncio.sleep(self.interval)


__all__ = [
    "MEMORY_COLLECTION",
    "PATTERN_COLLECTION",
    "VectorSync",
    "collection_specs",
    "enqueue",
    "memory_collection_spec",
    "memory_payload",
    "pattern_collection_spec",
    "pattern_embedding_text",
    "pattern_payload",
]
