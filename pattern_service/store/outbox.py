"""Transactional outbox that keeps the vector index in sync with SQL.

Every write that changes a vector adds a ``vector_outbox`` row (:func:`enqueue`)
in the same transaction as its SQL change. After commit the writer calls
:meth:`VectorSync.apply`; a background pass (:meth:`VectorSync.start`) retries
whatever failed. Applying a point never trusts the outbox row's content: it
re-reads the SQL source row and upserts its current state, or deletes the point
when the row is gone, so applying is idempotent and replays are harmless.

Nothing here knows an entity: what is embedded, the payload, the collection
spec and the SQL rows of each collection come from the
:class:`~pattern_service.store.binding.VectorBinding` objects the syncer is
given (the service's are :data:`~pattern_service.store.vector_bindings.VECTOR_BINDINGS`).

The module is a little over 400 lines because :class:`VectorSync` is one unit:
group apply, the retry pass, following other replicas and reconciliation share
one lock and one point-sync path, and splitting them would spread that lock.
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

from pattern_service.engine.ports import Embedder
from pattern_service.store.binding import VectorBinding
from pattern_service.store.db import Database
from pattern_service.store.orm import VectorOutboxRow, utcnow
from pattern_service.store.vectors.base import VectorIndex, VectorPoint

log = logging.getLogger(__name__)

OutboxOp = Literal["upsert", "delete"]


def enqueue(session: AsyncSession, collection: str, point_id: str, op: OutboxOp) -> None:
    """Add an outbox row to ``session`` (commit it with the SQL change it belongs to)."""
    session.add(VectorOutboxRow(collection=collection, point_id=point_id, op=op, created_at=utcnow(), attempts=0))


class VectorSync:
    """Applies outbox rows to the vector index, retries failures and reconciles drift.

    Args:
        db: The SQL database (source of truth).
        index: The vector index to keep in sync.
        embedder: Embeds the bindings' texts.
        bindings: The entities mirrored in ``index``, one collection each (the
            service's: :data:`~pattern_service.store.vector_bindings.VECTOR_BINDINGS`).
        interval: Seconds between background retry passes.
        batch_size: Points embedded and written per index call.

    Raises:
        ValueError: Two bindings name the same collection.
    """

    def __init__(
        self,
        db: Database,
        index: VectorIndex,
        embedder: Embedder,
        bindings: Sequence[VectorBinding[Any, Any]],
        *,
        interval: float = 1.0,
        batch_size: int = 128,
    ):
        self.db = db
        self.index = index
        self.embedder = embedder
        self.bindings: dict[str, VectorBinding[Any, Any]] = {b.collection: b for b in bindings}
        if len(self.bindings) != len(bindings):
            raise ValueError("two vector bindings name the same collection")
        self.interval = interval
        self.batch_size = batch_size
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._waiting: list[tuple[str, list[str], asyncio.Future[bool]]] = []
        self._applier: asyncio.Task[None] | None = None
        #: Called with (collection, point ids) after changes were applied to the index; the app
        #: uses it to tell other replicas whose indexes are their own (see :meth:`follow`).
        self.on_applied: Callable[[str, list[str]], Awaitable[None]] | None = None

    def binding(self, collection: str) -> VectorBinding[Any, Any]:
        """The binding of ``collection``.

        Raises:
            ValueError: No binding has that collection.
        """
        try:
            return self.bindings[collection]
        except KeyError:
            raise ValueError(f"unknown vector collection {collection!r}") from None

    async def ensure_collections(self) -> None:
        """Create or check every binding's collection for the embedder's dimension and model id.

        Raises:
            FailedPreconditionError: A collection holds vectors of another model (``EMBEDDING_MODEL_MISMATCH``).
            UnavailableError: The index cannot be reached.
        """
        for binding in self.bindings.values():
            await self.index.ensure_collection(binding.spec(self.embedder.dimension, self.embedder.model_id))

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
        """Rewrite only the payload of points whose stored vector is already right.

        Recording a pattern's outcome or changing its status leaves the embedded
        text alone: upserting the whole point again appended a vector to the
        index's write-ahead log and segments on every such change (the soak's
        resident memory grew with them). Only collections whose binding has
        ``payload_only_updates`` are checked (append-only entities skip the read).

        Returns:
            The ids whose payload was rewritten (the caller upserts the others).
        """
        if not self.binding(collection).payload_only_updates:
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
        """Embedding texts and payloads, by id, of the SQL rows that exist.

        Raises:
            ValueError: Unknown collection.
        """
        binding = self.binding(collection)
        model_id = self.embedder.model_id
        texts: dict[str, str] = {}
        payloads: dict[str, Mapping[str, Any]] = {}
        async with self.db.session() as session:
            rows = await session.scalars(select(binding.row_type).where(binding.id_column.in_(list(ids))))
            for row in rows:
                point_id = binding.point_id(row)
                texts[point_id] = binding.text(row)
                payloads[point_id] = binding.payload(row, model_id)
        return texts, payloads

    # -- reconciliation -----------------------------------------------------

    async def reconcile(self, collection: str) -> tuple[int, int]:
        """Repair drift between SQL and the index in both directions.

        SQL rows missing from the index are upserted; index points without a
        SQL row are deleted. Index ids are read before SQL ids, so a write
        racing with the pass is never undone.

        Args:
            collection: A binding's collection.

        Returns:
            (points upserted, points deleted).

        Raises:
            ValueError: Unknown collection.
            UnavailableError: The database or the index cannot be reached.
        """
        id_column = self.binding(collection).id_column
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
        """:meth:`reconcile` every binding's collection; returns (upserted, deleted) per collection."""
        return {name: await self.reconcile(name) for name in self.bindings}

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


__all__ = ["OutboxOp", "VectorSync", "enqueue"]
