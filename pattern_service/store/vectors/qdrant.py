"""The vector index on a Qdrant server, through qdrant-client's ``AsyncQdrantClient``.

Collections are made with the seed's settings: cosine distance, HNSW
``m`` / ``ef_construct`` from the spec (seed 16 / 100), int8 scalar
quantization (quantile 0.99, always in RAM), payload on disk, and a payload
index on every field of ``spec.payload_indexes``.

Model-id tag: the spec's ``model_id`` and ``dimension`` are stored in the
collection's own metadata (``CollectionConfig.metadata``, Qdrant >= 1.16 /
qdrant-client >= 1.16), which the server persists with the collection, so
every replica sees the same tag. A collection without that tag (made by
something else) is refused like a mismatch.

The same class runs on qdrant-client's local mode (``location=":memory:"`` or
``path=...``), which is how it is tested here: ``TMWS_QDRANT_PATH`` runs the
whole service on it (the stand-in for a server where none runs; the e2e suite
runs over it with ``TMWS_TEST_VECTOR_BACKEND=qdrant_local``). Local mode runs in-process and
synchronously inside the async methods (it blocks the event loop for the
length of each call: 18 ms a search at 10k points) and ignores payload
indexes, so it is for tests and development only; the embedded default is
:class:`~pattern_service.store.vectors.edge.EdgeVectorIndex`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar

import grpc
import httpx
import numpy as np
import numpy.typing as npt
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from pattern_service.errors import InvalidArgumentError, NotFoundError, UnavailableError
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

_SCROLL_PAGE = 1000
_SCHEMA: dict[PayloadFieldType, models.PayloadSchemaType] = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "float": models.PayloadSchemaType.FLOAT,
    "bool": models.PayloadSchemaType.BOOL,
}
_UNAVAILABLE_GRPC = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}


def _match_condition(cond: MatchAny) -> models.Condition:
    strs = [v for v in cond.values if isinstance(v, str)]
    ints = [v for v in cond.values if isinstance(v, int) and not isinstance(v, bool)]
    if strs and len(strs) == len(cond.values):
        return models.FieldCondition(key=cond.key, match=models.MatchAny(any=strs))
    if ints and len(ints) == len(cond.values):
        return models.FieldCondition(key=cond.key, match=models.MatchAny(any=ints))
    if not cond.values:  # matches nothing
        return models.HasIdCondition(has_id=[])
    # Booleans (MatchAny takes only strings or integers) or mixed types: one MatchValue each, OR-ed.
    return models.Filter(
        should=[models.FieldCondition(key=cond.key, match=models.MatchValue(value=v)) for v in cond.values]
    )


def _to_qdrant_filter(flt: VectorFilter | None) -> models.Filter | None:
    if flt is None or not flt.must:
        return None
    must: list[models.Condition] = []
    for cond in flt.must:
        if isinstance(cond, MatchAny):
            must.append(_match_condition(cond))
        else:
            must.append(models.FieldCondition(key=cond.key, range=models.Range(gte=cond.gte, lte=cond.lte)))
    return models.Filter(must=must)


class QdrantVectorIndex:
    """:class:`~pattern_service.store.vectors.base.VectorIndex` on Qdrant (server or local mode).

    Give exactly one of ``url``, ``location`` or ``path``.

    Args:
        url: Server URL, e.g. ``http://qdrant:6333`` (the gRPC port 6334 is used
            when ``prefer_grpc``).
        api_key: Server API key.
        prefer_grpc: Talk gRPC to the server rather than REST.
        location: ``":memory:"`` for an in-process, in-memory local mode.
        path: Directory of a persistent local-mode store.
        timeout: Server request timeout in seconds.

    Raises:
        ValueError: Not exactly one of ``url``, ``location``, ``path``.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        api_key: str | None = None,
        prefer_grpc: bool = True,
        location: str | None = None,
        path: str | None = None,
        timeout: int = 10,
    ):
        if sum(x is not None for x in (url, location, path)) != 1:
            raise ValueError("give exactly one of url, location or path")
        self._local = url is None
        if url is not None:
            self._client = AsyncQdrantClient(
                url=url, api_key=api_key, prefer_grpc=prefer_grpc, timeout=timeout, check_compatibility=False
            )
        else:
            self._client = AsyncQdrantClient(location=location, path=path)
        self._target = url or location or str(path)
        self._dimensions: dict[str, int] = {}
        self._closed = False

    async def _call(self, what: str, aw: Awaitable[T], collection: str | None = None) -> T:
        """Await a client call, mapping transport failures to :class:`UnavailableError`."""
        try:
            return await aw
        except UnexpectedResponse as exc:
            if exc.status_code == 404 and collection is not None:
                raise NotFoundError("VectorCollection", collection) from exc
            if exc.status_code is not None and exc.status_code >= 500:
                raise UnavailableError(f"Qdrant {what} failed: HTTP {exc.status_code}") from exc
            raise
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND and collection is not None:
                raise NotFoundError("VectorCollection", collection) from exc
            if exc.code() in _UNAVAILABLE_GRPC:
                raise UnavailableError(f"Qdrant {what} failed: {exc.code().name}") from exc
            raise
        except (ResponseHandlingException, httpx.TransportError, ConnectionError, TimeoutError) as exc:
            raise UnavailableError(f"Qdrant at {self._target} is unreachable ({what}): {exc}") from exc

    def _dimension(self, collection: str) -> int:
        if self._closed:
            raise UnavailableError("the vector index is closed")
        dim = self._dimensions.get(collection)
        if dim is None:
            raise NotFoundError("VectorCollection", collection)
        return dim

    # -- collections ---------------------------------------------------------

    async def ensure_collection(self, spec: CollectionSpec) -> None:
        """Create the collection with the seed's settings if absent, else check its tag.

        Adds the spec's payload indexes that are missing (server only: local
        mode ignores payload indexes).

        Raises:
            FailedPreconditionError: The collection holds vectors of another
                model id or dimension (reason ``EMBEDDING_MODEL_MISMATCH``).
            InvalidArgumentError: The spec's name is not ``[a-z0-9_]+``.
            UnavailableError: Qdrant cannot be reached, or the index is closed.
        """
        if self._closed:
            raise UnavailableError("the vector index is closed")
        check_collection_name(spec.name)
        if not await self._call("collection_exists", self._client.collection_exists(spec.name)):
            try:
                await self._call("create_collection", self._create(spec))
                _log.info("created Qdrant collection %s (model %s)", spec.name, spec.model_id)
            except (UnexpectedResponse, grpc.aio.AioRpcError, ValueError) as exc:
                # Another replica created it first (409 / ALREADY_EXISTS / local "already exists"): check its tag.
                if not await self._call("collection_exists", self._client.collection_exists(spec.name)):
                    raise
                _log.info("Qdrant collection %s created concurrently: %s", spec.name, exc)
        info = await self._call("get_collection", self._client.get_collection(spec.name), spec.name)
        tag = info.config.metadata or {}
        size = getattr(info.config.params.vectors, "size", None)
        # The recorded dimension must match the spec, and so must the collection's real vector size.
        check_model_tag(spec, tag.get("model_id"), size if size != spec.dimension else tag.get("dimension"))
        if not self._local:
            existing = set(info.payload_schema)
            for key, ftype in spec.payload_indexes.items():
                if key not in existing:
                    await self._call(
                        "create_payload_index",
                        self._client.create_payload_index(spec.name, key, field_schema=_SCHEMA[ftype], wait=True),
                        spec.name,
                    )
        self._dimensions[spec.name] = spec.dimension

    async def _create(self, spec: CollectionSpec) -> bool:
        return await self._client.create_collection(
            spec.name,
            vectors_config=models.VectorParams(size=spec.dimension, distance=models.Distance.COSINE),
            hnsw_config=models.HnswConfigDiff(m=spec.hnsw_m, ef_construct=spec.hnsw_ef_construct),
            quantization_config=models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=0.99, always_ram=True)
            ),
            on_disk_payload=True,
            metadata={"model_id": spec.model_id, "dimension": spec.dimension, "distance": "cosine"},
        )

    # -- points ----------------------------------------------------------------

    async def upsert(self, collection: str, points: Sequence[VectorPoint]) -> None:
        """Insert or replace points (vector and whole payload); idempotent; waits until applied.

        Raises:
            InvalidArgumentError: An id is not a UUID or a vector has the wrong shape.
            NotFoundError: The collection is not open.
            UnavailableError: Qdrant cannot be reached.
        """
        dim = self._dimension(collection)
        if not points:
            return
        structs = [
            models.PointStruct(
                id=normalise_point_id(p.id), vector=check_vector(p.vector, dim, "vector"), payload=dict(p.payload)
            )
            for p in points
        ]
        await self._call("upsert", self._client.upsert(collection, points=structs, wait=True), collection)

    async def delete(self, collection: str, ids: Sequence[str]) -> None:
        """Delete points by id; unknown ids are ignored; waits until applied.

        Raises:
            InvalidArgumentError: An id is not a UUID.
            NotFoundError: The collection is not open.
            UnavailableError: Qdrant cannot be reached.
        """
        self._dimension(collection)
        if not ids:
            return
        selector = models.PointIdsList(points=[normalise_point_id(i) for i in ids])
        await self._call("delete", self._client.delete(collection, points_selector=selector, wait=True), collection)

    async def retrieve_vectors(self, collection: str, ids: Sequence[str]) -> dict[str, npt.NDArray[np.float32]]:
        """See :meth:`VectorIndex.retrieve_vectors`.

        Raises:
            InvalidArgumentError: An id is not a UUID.
            NotFoundError: The collection is not open.
            UnavailableError: Qdrant cannot be reached.
        """
        given = {normalise_point_id(i): i for i in ids}
        records = await self._retrieve(collection, list(given), with_vectors=True)
        return {
            given[pid]: np.asarray(record.vector, dtype=np.float32)
            for pid, record in records.items()
            if record.vector is not None
        }

    async def _retrieve(self, collection: str, ids: list[str], *, with_vectors: bool) -> dict[str, Any]:
        """The records of the existing ``ids`` (normalised), by id, without payloads."""
        self._dimension(collection)
        if not ids:
            return {}
        records = await self._call(
            "retrieve",
            self._client.retrieve(collection, ids, with_payload=False, with_vectors=with_vectors),
            collection,
        )
        return {str(r.id): r for r in records}

    async def overwrite_payloads(self, collection: str, payloads: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """See :meth:`VectorIndex.overwrite_payloads` (one batch request; waits until applied).

        Raises:
            InvalidArgumentError: An id is not a UUID.
            NotFoundError: The collection is not open.
            UnavailableError: Qdrant cannot be reached.
        """
        ids = {normalise_point_id(i): i for i in payloads}
        present = await self._retrieve(collection, list(ids), with_vectors=False)
        operations = [
            models.OverwritePayloadOperation(
                overwrite_payload=models.SetPayload(payload=dict(payloads[given]), points=[pid])
            )
            for pid, given in ids.items()
            if pid in present
        ]
        if operations:
            await self._call(
                "overwrite_payload",
                self._client.batch_update_points(collection, update_operations=operations, wait=True),
                collection,
            )
        return [given for pid, given in ids.items() if pid not in present]

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
        """Cosine search; see :meth:`VectorIndex.search`.

        Raises:
            InvalidArgumentError: ``limit`` < 1 or the vector has the wrong shape.
            NotFoundError: The collection is not open.
            UnavailableError: Qdrant cannot be reached.
        """
        dim = self._dimension(collection)
        if limit < 1:
            raise InvalidArgumentError.single("limit", f"limit must be >= 1, got {limit}")
        response = await self._call(
            "query_points",
            self._client.query_points(
                collection,
                query=check_vector(vector, dim, "vector"),
                query_filter=_to_qdrant_filter(flt),
                limit=limit,
                score_threshold=score_threshold,
                with_payload=with_payload,
            ),
            collection,
        )
        return [ScoredPoint(id=str(p.id), score=float(p.score), payload=p.payload or {}) for p in response.points]

    async def list_ids(self, collection: str) -> set[str]:
        """All point ids of the collection (scrolled in pages of 1,000).

        Raises:
            NotFoundError: The collection is not open.
            UnavailableError: Qdrant cannot be reached.
        """
        self._dimension(collection)
        ids: set[str] = set()
        offset: Any = None
        while True:
            records, offset = await self._call(
                "scroll",
                self._client.scroll(
                    collection, limit=_SCROLL_PAGE, offset=offset, with_payload=False, with_vectors=False
                ),
                collection,
            )
            ids.update(str(r.id) for r in records)
            if offset is None:
                return ids

    async def count(self, collection: str) -> int:
        """Exact number of points in the collection.

        Raises:
            NotFoundError: The collection is not open.
            UnavailableError: Qdrant cannot be reached.
        """
        self._dimension(collection)
        result = await self._call("count", self._client.count(collection, exact=True), collection)
        return int(result.count)

    async def close(self) -> None:
        """Close the client (local mode: persist and release the store's lock). Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._client.close()
