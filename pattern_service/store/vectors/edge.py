"""The embedded vector index on qdrant-edge-py (the default: no server).

One :class:`qdrant_edge.EdgeShard` per collection, under ``root/<collection>/shard``,
with a JSON sidecar ``root/<collection>/collection.json`` recording the
collection's embedding ``model_id`` and ``dimension`` (the model-id tag: vectors
of two models never mix).

qdrant-edge is synchronous; every call runs on one dedicated thread per index,
so calls are serialized (the shards are never touched concurrently) and the
event loop never blocks for long. The one exception is a search that is
bounded to well under a millisecond (a small collection, or one whose points
are nearly all in its HNSW graph) while the index thread is idle: it runs on
the event loop, because the hop to the thread costs as much as the search
(``INLINE_SEARCH_EXACT_POINTS``).

Search is exact below ``index_threshold`` points. qdrant-edge builds an HNSW
graph only when :meth:`EdgeShard.optimize` runs, which holds the GIL and the
shard for its whole duration (≈ 3.5 s for 10k vectors, tens of seconds at 100k
on 2 cores), while exact filtered search costs ≈ 2–3 ms at 10k and ≈ 20 ms at
100k vectors. So writes never optimize; a collection is optimized when it is
opened (server start, before serving) if ``index_threshold`` or more of its
points are outside the HNSW graph, and :meth:`EdgeVectorIndex.optimize` is
there for a maintenance job. Points written later are searched exactly (in
qdrant's appendable segment) beside the graph until the next start. Searches
of the graph use ``hnsw_ef`` candidates. The spec's HNSW ``m`` /
``ef_construct`` are stored in the shard config and used by the build.

Boolean payloads: qdrant-edge-py 0.9 turns ``MatchValue(True)`` into the integer
1, so boolean fields never match. Every top-level boolean payload value is
therefore mirrored into a hidden keyword field ``__bool__<key>`` (``"true"`` /
``"false"``), which boolean conditions query; the mirror is stripped from the
payloads returned.

Longer than this code base's ~400-line guide on purpose: it is one backend of
the :class:`~.base.VectorIndex` interface, and the sidecar, the free-space checks,
the filter translation and the single index thread share the same state.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import qdrant_edge as qe

from pattern_service.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError, UnavailableError
from pattern_service.store.disk import FreeSpace
from pattern_service.store.vectors.base import (
    CollectionSpec,
    MatchAny,
    PayloadFieldType,
    ScoredPoint,
    VectorFilter,
    VectorPoint,
    check_collection_name,
    check_model_tag,
    check_vector,
    normalise_point_id,
)
from pattern_service.tracing import span

_log = logging.getLogger(__name__)

T = TypeVar("T")

_SIDECAR = "collection.json"
_SHARD_DIR = "shard"
_BOOL_PREFIX = "__bool__"
_SCROLL_PAGE = 1000
# Plain (exact) search up to this many KB of vectors per segment even after an optimize().
_FULL_SCAN_THRESHOLD_KB = 10_000
#: A search runs on the calling thread (the event loop) instead of the index thread when that thread
#: is idle and the collection has at most this many points outside its HNSW graph (exact scan, ≈ 0.2 µs
#: a point of 384-d) and at most ``INLINE_SEARCH_POINTS`` in all (a graph search at 10k points ≈ 0.5 ms).
#: Measured on the recall path at 10k points: the hop to the index thread and back costs ≈ 0.4 ms of
#: CPU per call under load (GIL hand-offs and wake-ups), about as much as the search itself.
INLINE_SEARCH_EXACT_POINTS = 2_000
INLINE_SEARCH_POINTS = 20_000

_SCHEMA: dict[PayloadFieldType, qe.PayloadSchemaType] = {
    "keyword": qe.PayloadSchemaType.Keyword,
    "integer": qe.PayloadSchemaType.Integer,
    "float": qe.PayloadSchemaType.Float,
}


def _bool_word(value: bool) -> str:
    return "true" if value else "false"


def _with_bool_mirror(payload: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(payload)
    for key, value in payload.items():
        if isinstance(value, bool):
            out[_BOOL_PREFIX + key] = _bool_word(value)
        elif isinstance(value, list) and value and all(isinstance(v, bool) for v in value):
            out[_BOOL_PREFIX + key] = [_bool_word(v) for v in value]
    return out


def _strip_bool_mirror(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (payload or {}).items() if not k.startswith(_BOOL_PREFIX)}


def _match_condition(cond: MatchAny) -> Any:
    bools = [v for v in cond.values if isinstance(v, bool)]
    strs = [v for v in cond.values if isinstance(v, str)]
    ints = [v for v in cond.values if isinstance(v, int) and not isinstance(v, bool)]
    parts: list[Any] = []
    if bools:
        words: list[str] = sorted({_bool_word(v) for v in bools})
        parts.append(qe.FieldCondition(_BOOL_PREFIX + cond.key, match=qe.MatchAny(words)))
    if strs:
        parts.append(qe.FieldCondition(cond.key, match=qe.MatchAny(strs)))
    if ints:
        parts.append(qe.FieldCondition(cond.key, match=qe.MatchAny(ints)))
    if len(parts) == 1:
        return parts[0]
    if not parts:  # MatchAny with no values matches nothing
        return qe.HasIdCondition(set())
    return qe.Filter(should=parts)


@functools.lru_cache(maxsize=4096)
def _to_edge_filter(flt: VectorFilter | None) -> qe.Filter | None:
    """The qdrant-edge filter of ``flt``, built once per distinct filter (LRU) and reused by every search."""
    if flt is None or not flt.must:
        return None
    must: list[Any] = []
    for cond in flt.must:
        if isinstance(cond, MatchAny):
            must.append(_match_condition(cond))
        else:
            must.append(qe.FieldCondition(cond.key, range=qe.RangeFloat(gte=cond.gte, lte=cond.lte)))
    return qe.Filter(must=must)


class _Collection:
    """An open shard, its tag, and upper bounds of its size (for the inline-search rule)."""

    def __init__(self, shard: qe.EdgeShard, spec: CollectionSpec):
        self.shard = shard
        self.dimension = spec.dimension
        self.model_id = spec.model_id
        info = shard.info()
        #: Points, and points outside the HNSW graph (searched exactly), at open plus every point
        #: upserted since: never less than the truth (an overwrite or a delete is not subtracted).
        self.points_bound = info.points_count
        self.outside_graph_bound = info.points_count - info.indexed_vectors_count

    def short_search(self) -> bool:
        """Whether a search is bounded to well under a millisecond (see ``INLINE_SEARCH_*``)."""
        return self.outside_graph_bound <= INLINE_SEARCH_EXACT_POINTS and self.points_bound <= INLINE_SEARCH_POINTS


class EdgeVectorIndex:
    """:class:`~pattern_service.store.vectors.base.VectorIndex` on embedded qdrant-edge shards.

    Args:
        root: Directory holding one sub-directory per collection (created if absent).
        index_threshold: Opening a collection with at least this many points
            outside the HNSW graph builds it first (0 = never).
        hnsw_ef: Candidates kept by a search of the graph (higher: better recall, slower).
        full_scan_threshold_kb: Segments with fewer KB of vectors than this get no graph and
            are always searched exactly (qdrant's ``full_scan_threshold``; set when a
            collection is created; ≈ 6,500 vectors of 384-d at the default).
        min_free_bytes: Free bytes the filesystem of ``root`` must keep before a collection is
            opened or points are upserted (:mod:`pattern_service.store.disk`: a full disk is a
            ``DiskFullError``, not a ``SIGBUS``); 0 = no check.
        search_threads: Threads of each shard's search pool (qdrant-edge's
            ``max_search_threads``, which searches a query's segments in parallel); 0 =
            qdrant-edge's default, derived from the CPU count. The default 1 searches each
            query on one thread: at 10k points a graph search costs ≈ 0.5 ms of CPU on one
            thread against ≈ 1.0 ms (0.66 ms wall) on qdrant-edge's default pool, and the
            service runs many queries at once rather than one query on many cores.

    Calls on a collection that :meth:`ensure_collection` has not opened in
    this process raise :class:`~pattern_service.errors.NotFoundError`; calls
    after :meth:`close` raise :class:`~pattern_service.errors.UnavailableError`.
    Point ids must be UUID text (any case); they come back canonical
    (lower-case, hyphenated).
    """

    #: Default of ``index_threshold``: points outside the HNSW graph that make opening build it.
    INDEX_THRESHOLD = 5_000
    #: Default of ``hnsw_ef``: candidates a graph search keeps.
    HNSW_EF = 128
    #: Default of ``search_threads``: one search thread per shard.
    SEARCH_THREADS = 1

    def __init__(
        self,
        root: pathlib.Path,
        *,
        index_threshold: int = INDEX_THRESHOLD,
        hnsw_ef: int = HNSW_EF,
        full_scan_threshold_kb: int = _FULL_SCAN_THRESHOLD_KB,
        min_free_bytes: int = 0,
        search_threads: int = SEARCH_THREADS,
    ):
        if index_threshold < 0 or hnsw_ef < 1 or full_scan_threshold_kb < 1 or search_threads < 0:
            raise ValueError(
                "index_threshold and search_threads must be >= 0 (0 = never build / the default pool), "
                "hnsw_ef and full_scan_threshold_kb >= 1"
            )
        self._search_threads = search_threads or None
        self._root = pathlib.Path(root)
        self._space = FreeSpace([self._root], min_free_bytes)
        self._full_scan_kb = full_scan_threshold_kb
        self._index_threshold = index_threshold
        self._search_params = qe.SearchParams(hnsw_ef=hnsw_ef)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-vectors")
        self._collections: dict[str, _Collection] = {}
        self._closed = False
        self._in_flight = 0  # calls submitted to the index thread and not yet returned

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise UnavailableError("the vector index is closed")
        self._in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
        finally:
            self._in_flight -= 1

    def _get(self, name: str) -> _Collection:
        if self._closed:
            raise UnavailableError("the vector index is closed")
        coll = self._collections.get(name)
        if coll is None:
            raise NotFoundError("VectorCollection", name)
        return coll

    # -- collections ---------------------------------------------------------

    async def ensure_collection(self, spec: CollectionSpec) -> None:
        """Create or open ``root/<spec.name>``, check its tag, add missing payload indexes.

        Raises:
            FailedPreconditionError: The collection holds vectors of another
                model id or dimension (reason ``EMBEDDING_MODEL_MISMATCH``).
            FailedPreconditionError: The shard is open in another process
                (reason ``VECTOR_STORE_LOCKED``; qdrant-edge locks its WAL).
            InvalidArgumentError: The spec's name is not ``[a-z0-9_]+``.
            UnavailableError: The index is closed, or the shard cannot be opened.
            DiskFullError: The filesystem of the index is nearly full (nothing was opened).
        """
        check_collection_name(spec.name)
        await self._run(lambda: self._ensure_sync(spec))

    def _ensure_sync(self, spec: CollectionSpec) -> None:
        coll = self._collections.get(spec.name)
        if coll is not None:
            check_model_tag(spec, coll.model_id, coll.dimension)
            self._ensure_indexes(coll.shard, spec)
            return
        cdir = self._root / spec.name
        sidecar = cdir / _SIDECAR
        shard_dir = cdir / _SHARD_DIR
        # Creating writes the sidecar and opening maps sparse files (WAL segments, segments) whose
        # pages a full disk cannot back: one check before either.
        self._space.check(f"open vector collection {spec.name!r}")
        if sidecar.exists():
            tag = json.loads(sidecar.read_text(encoding="utf-8"))
            check_model_tag(spec, tag.get("model_id"), tag.get("dimension"))
        else:
            cdir.mkdir(parents=True, exist_ok=True)
            tag = {"model_id": spec.model_id, "dimension": spec.dimension, "distance": "cosine", "format": 1}
            tmp = cdir / (_SIDECAR + ".tmp")
            tmp.write_text(json.dumps(tag), encoding="utf-8")
            os.replace(tmp, sidecar)
        try:
            vectors = qe.EdgeVectorParams(size=spec.dimension, distance=qe.Distance.Cosine)
            if shard_dir.exists() and any(shard_dir.iterdir()):
                # Unset parameters keep the shard's own; the vector parameters are only checked.
                shard = qe.EdgeShard.load(
                    str(shard_dir), qe.EdgeConfig(vectors=vectors, max_search_threads=self._search_threads)
                )
            else:
                config = qe.EdgeConfig(
                    vectors=vectors,
                    max_search_threads=self._search_threads,
                    hnsw_config=qe.HnswIndexConfig(
                        m=spec.hnsw_m, ef_construct=spec.hnsw_ef_construct, full_scan_threshold=self._full_scan_kb
                    ),
                    # optimize() builds graphs for the segments that full_scan_threshold would not scan.
                    optimizers=qe.EdgeOptimizersConfig(indexing_threshold=self._full_scan_kb),
                )
                shard = qe.EdgeShard.create(str(shard_dir), config)
        except Exception as exc:  # qdrant-edge raises bare Exception
            if "WouldBlock" in str(exc):  # the WAL is locked by another open shard (another process)
                raise FailedPreconditionError(
                    f"vector collection {spec.name!r} at {shard_dir} is open in another process; the embedded "
                    "index is single-process (run several replicas against a Qdrant server instead)",
                    reason="VECTOR_STORE_LOCKED",
                    metadata={"collection": spec.name, "path": str(shard_dir)},
                ) from exc
            raise UnavailableError(f"cannot open vector collection {spec.name!r} at {shard_dir}: {exc}") from exc
        self._ensure_indexes(shard, spec)
        self._build_graph_if_due(shard, spec.name)
        self._collections[spec.name] = _Collection(shard, spec)
        _log.info("opened edge vector collection %s at %s (model %s)", spec.name, cdir, spec.model_id)

    def _build_graph_if_due(self, shard: qe.EdgeShard, name: str) -> None:
        info = shard.info()
        outside = info.points_count - info.indexed_vectors_count
        if not self._index_threshold or outside < self._index_threshold:
            return
        _log.info("building the HNSW graph of %s: %d of %d points outside it", name, outside, info.points_count)
        started = time.perf_counter()
        shard.optimize()
        _log.info("built the HNSW graph of %s in %.1f s", name, time.perf_counter() - started)

    @staticmethod
    def _ensure_indexes(shard: qe.EdgeShard, spec: CollectionSpec) -> None:
        existing = set(shard.info().payload_schema)
        for key, ftype in spec.payload_indexes.items():
            field, schema = (
                (_BOOL_PREFIX + key, qe.PayloadSchemaType.Keyword) if ftype == "bool" else (key, _SCHEMA[ftype])
            )
            if field not in existing:
                shard.update(qe.UpdateOperation.create_field_index(field, schema))

    # -- points ----------------------------------------------------------------

    async def upsert(self, collection: str, points: Sequence[VectorPoint]) -> None:
        """Insert or replace points (vector and whole payload); idempotent.

        Raises:
            InvalidArgumentError: An id is not a UUID or a vector has the wrong shape.
            NotFoundError: The collection is not open.
            DiskFullError: The filesystem of the index is nearly full (nothing was written).
        """
        coll = self._get(collection)
        if not points:
            return
        self._space.check(f"add {len(points)} point(s) to vector collection {collection!r}")
        edge_points = [
            qe.Point(
                normalise_point_id(p.id),
                check_vector(p.vector, coll.dimension, "vector"),
                _with_bool_mirror(p.payload),
            )
            for p in points
        ]
        await self._run(lambda: coll.shard.update(qe.UpdateOperation.upsert_points(edge_points)))
        coll.points_bound += len(edge_points)
        coll.outside_graph_bound += len(edge_points)

    async def delete(self, collection: str, ids: Sequence[str]) -> None:
        """Delete points by id; unknown ids are ignored.

        Raises:
            InvalidArgumentError: An id is not a UUID.
            NotFoundError: The collection is not open.
        """
        coll = self._get(collection)
        if not ids:
            return
        point_ids: list[qe.PointId] = [normalise_point_id(i) for i in ids]
        await self._run(lambda: coll.shard.update(qe.UpdateOperation.delete_points(point_ids)))

    async def retrieve_vectors(self, collection: str, ids: Sequence[str]) -> dict[str, npt.NDArray[np.float32]]:
        """See :meth:`VectorIndex.retrieve_vectors`.

        Raises:
            InvalidArgumentError: An id is not a UUID.
            NotFoundError: The collection is not open.
        """
        coll = self._get(collection)
        if not ids:
            return {}
        given = {normalise_point_id(i): i for i in ids}
        records = await self._run(lambda: coll.shard.retrieve(list(given), False, True))
        return {given[str(r.id)]: np.asarray(r.vector, dtype=np.float32) for r in records if str(r.id) in given}

    async def overwrite_payloads(self, collection: str, payloads: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """See :meth:`VectorIndex.overwrite_payloads`.

        Raises:
            InvalidArgumentError: An id is not a UUID.
            NotFoundError: The collection is not open.
        """
        coll = self._get(collection)
        if not payloads:
            return []
        ids = {normalise_point_id(i): i for i in payloads}

        def overwrite() -> list[str]:
            present = {str(r.id) for r in coll.shard.retrieve(list(ids), False, False)}
            for pid, given in ids.items():
                if pid in present:
                    payload = _with_bool_mirror(payloads[given])
                    coll.shard.update(qe.UpdateOperation.overwrite_payload([pid], payload))
            return [given for pid, given in ids.items() if pid not in present]

        return await self._run(overwrite)

    async def search(
        self,
        collection: str,
        vector: npt.NDArray[np.float32],
        *,
        limit: int,
        flt: VectorFilter | None = None,
        score_threshold: float | None = None,
        with_payload: bool = True,
    ) -> list[ScoredPoint]:
        """See :meth:`VectorIndex.search` (traced as a ``vector.search`` span; the work is :meth:`_search`)."""
        with span("vector.search", **{"db.collection.name": collection, "vector.limit": limit}):
            return await self._search(
                collection, vector, limit=limit, flt=flt, score_threshold=score_threshold, with_payload=with_payload
            )

    async def _search(
        self,
        collection: str,
        vector: npt.NDArray[np.float32],
        *,
        limit: int,
        flt: VectorFilter | None = None,
        score_threshold: float | None = None,
        with_payload: bool = True,
    ) -> list[ScoredPoint]:
        """Cosine search (exact, or of the HNSW graph where built); see :meth:`VectorIndex.search`.

        Raises:
            InvalidArgumentError: ``limit`` < 1 or the vector has the wrong shape.
            NotFoundError: The collection is not open.
        """
        coll = self._get(collection)
        if limit < 1:
            raise InvalidArgumentError.single("limit", f"limit must be >= 1, got {limit}")
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(check_vector(vector, coll.dimension, "vector")),
            filter=_to_edge_filter(flt),
            params=self._search_params,
            with_payload=with_payload,
            score_threshold=score_threshold,
        )
        if self._in_flight == 0 and coll.short_search():
            # Nothing runs on the index thread and nothing can start while this runs (the loop is
            # here): the shard is still never touched by two threads at once.
            hits = coll.shard.query(request)
        else:
            hits = await self._run(lambda: coll.shard.query(request))
        return [ScoredPoint(id=str(h.id), score=float(h.score), payload=_strip_bool_mirror(h.payload)) for h in hits]

    async def list_ids(self, collection: str) -> set[str]:
        """All point ids of the collection (scrolled in pages of 1,000).

        Raises:
            NotFoundError: The collection is not open.
        """
        coll = self._get(collection)

        def scroll_all() -> set[str]:
            ids: set[str] = set()
            offset: qe.PointId | None = None
            while True:
                records, offset = coll.shard.scroll(
                    qe.ScrollRequest(offset=offset, limit=_SCROLL_PAGE, with_payload=False, with_vector=False)
                )
                ids.update(str(r.id) for r in records)
                if offset is None:
                    return ids

        return await self._run(scroll_all)

    async def count(self, collection: str) -> int:
        """Exact number of points in the collection.

        Raises:
            NotFoundError: The collection is not open.
        """
        coll = self._get(collection)
        return await self._run(lambda: coll.shard.count(qe.CountRequest(exact=True)))

    async def optimize(self, collection: str) -> bool:
        """Merge segments and build the HNSW graph (slow: tens of seconds at 100k vectors on 2 cores).

        The service builds it only when opening a collection (see the module
        docstring); this is for a maintenance job. Other calls on this index,
        and the whole process (the build holds the GIL), wait while it runs.

        Returns:
            Whether any segment was optimized.

        Raises:
            NotFoundError: The collection is not open.
        """
        coll = self._get(collection)
        return await self._run(coll.shard.optimize)

    async def close(self) -> None:
        """Flush and close every shard, then stop the worker thread. Idempotent."""
        if self._closed:
            return

        def close_all() -> None:
            for name, coll in self._collections.items():
                try:
                    coll.shard.flush()
                finally:
                    coll.shard.close()
                _log.info("closed edge vector collection %s", name)
            self._collections.clear()

        try:
            await self._run(close_all)
        finally:
            self._closed = True
            self._executor.shutdown(wait=False)
