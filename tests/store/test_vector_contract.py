"""The VectorIndex contract, run against every implementation (edge, qdrant-client local mode).

Expected answers are computed independently: scores with numpy (exact cosine),
filters by evaluating the conditions on the payloads in Python.
"""

from __future__ import annotations

import pathlib
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from pattern_service.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError, UnavailableError
from pattern_service.store.vectors.base import (
    CollectionSpec,
    MatchAny,
    Range,
    VectorFilter,
    VectorIndex,
    VectorPoint,
)
from pattern_service.store.vectors.edge import EdgeVectorIndex
from pattern_service.store.vectors.qdrant import QdrantVectorIndex

VecOpener = Callable[[], VectorIndex]

DIM = 32
N = 300
SPEC = CollectionSpec(
    name="patterns",
    dimension=DIM,
    model_id="test-model-v1",
    payload_indexes={
        "pattern_type": "keyword",
        "status": "keyword",
        "tags": "keyword",
        "quality_score": "float",
        "match_count": "integer",
        "active": "bool",
    },
)
TYPES = ["infrastructure", "memory", "hybrid"]
TAGS = ["db", "cache", "net", "ml", "ops"]


def _unit(rng: np.random.Generator, n: int) -> npt.NDArray[np.float32]:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _payload(i: int, rng: np.random.Generator) -> dict[str, Any]:
    p: dict[str, Any] = {
        "pattern_type": TYPES[i % 3],
        "status": "active" if i % 4 else "draft",
        "tags": sorted({TAGS[int(k)] for k in rng.integers(0, len(TAGS), size=int(rng.integers(0, 3)))}),
        "match_count": int(i % 17),
        "active": bool(i % 2),
    }
    if i % 5:  # every fifth point lacks quality_score
        p["quality_score"] = round(float(rng.random()), 3)
    return p


@pytest.fixture
def vec_data() -> tuple[list[str], npt.NDArray[np.float32], list[dict[str, Any]]]:
    rng = np.random.default_rng(1234)
    ids = [str(uuid.UUID(int=int(rng.integers(1, 2**62)) << 64 | i)) for i in range(N)]
    return ids, _unit(rng, N), [_payload(i, rng) for i in range(N)]


async def _loaded(index: VectorIndex, data: tuple[list[str], Any, list[dict[str, Any]]]) -> None:
    ids, vecs, payloads = data
    await index.ensure_collection(SPEC)
    await index.upsert(SPEC.name, [VectorPoint(i, v, p) for i, v, p in zip(ids, vecs, payloads, strict=True)])


def _holds(cond: MatchAny | Range, payload: Mapping[str, Any]) -> bool:
    if cond.key not in payload:
        return False
    value = payload[cond.key]
    if isinstance(cond, MatchAny):
        values = value if isinstance(value, list) else [value]
        return any(type(v) is type(w) and v == w for v in values for w in cond.values)
    return (cond.gte is None or value >= cond.gte) and (cond.lte is None or value <= cond.lte)


def _expected(data: Any, query: npt.NDArray[np.float32], limit: int, flt: VectorFilter | None = None,
              threshold: float | None = None) -> list[tuple[str, float]]:  # fmt: skip
    ids, vecs, payloads = data
    scores = vecs @ query
    keep = [
        k
        for k in range(len(ids))
        if (flt is None or all(_holds(c, payloads[k]) for c in flt.must))
        and (threshold is None or scores[k] >= threshold)
    ]
    keep.sort(key=lambda k: -scores[k])
    return [(ids[k], float(scores[k])) for k in keep[:limit]]


async def _assert_search(index: VectorIndex, data: Any, query: Any, limit: int, **kw: Any) -> list[str]:
    hits = await index.search(SPEC.name, query, limit=limit, **kw)
    want = _expected(data, query, limit, kw.get("flt"), kw.get("score_threshold"))
    assert [h.id for h in hits] == [w[0] for w in want]
    np.testing.assert_allclose([h.score for h in hits], [w[1] for w in want], atol=1e-4)
    return [h.id for h in hits]


async def test_search_orders_by_exact_cosine(vec_index: VectorIndex, vec_data: Any) -> None:
    await _loaded(vec_index, vec_data)
    rng = np.random.default_rng(7)
    for query in _unit(rng, 5):
        await _assert_search(vec_index, vec_data, query, 10)
    # a stored vector finds itself first with score 1
    hits = await vec_index.search(SPEC.name, vec_data[1][42], limit=1)
    assert hits[0].id == vec_data[0][42]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert dict(hits[0].payload) == vec_data[2][42]


async def test_limit_and_score_threshold(vec_index: VectorIndex, vec_data: Any) -> None:
    await _loaded(vec_index, vec_data)
    query = _unit(np.random.default_rng(8), 1)[0]
    assert len(await _assert_search(vec_index, vec_data, query, 1)) == 1
    assert len(await _assert_search(vec_index, vec_data, query, N + 50)) == N
    some = await _assert_search(vec_index, vec_data, query, N, score_threshold=0.2)
    assert 0 < len(some) < N
    assert await _assert_search(vec_index, vec_data, query, 10, score_threshold=0.999) == []


@pytest.mark.parametrize(
    "flt",
    [
        VectorFilter((MatchAny("pattern_type", ("memory",)),)),
        VectorFilter((MatchAny("pattern_type", ("memory", "hybrid")),)),
        VectorFilter((MatchAny("tags", ("db",)),)),
        VectorFilter((MatchAny("tags", ("db", "ml")),)),
        VectorFilter((MatchAny("match_count", (3, 5, 16)),)),
        VectorFilter((MatchAny("active", (True,)),)),
        VectorFilter((MatchAny("active", (False,)),)),
        VectorFilter((MatchAny("active", (True, False)),)),
        VectorFilter((MatchAny("status", ()),)),
        VectorFilter((Range("quality_score", gte=0.3, lte=0.6),)),
        VectorFilter((Range("quality_score", gte=0.5),)),
        VectorFilter((Range("quality_score", lte=0.25),)),
        VectorFilter((Range("match_count", gte=4, lte=9),)),
        VectorFilter((Range("match_count", gte=16),)),
        VectorFilter(
            (
                MatchAny("pattern_type", ("memory", "hybrid")),
                MatchAny("status", ("active",)),
                MatchAny("tags", ("cache", "net")),
                Range("quality_score", gte=0.2),
                MatchAny("active", (True,)),
            )
        ),
        VectorFilter((MatchAny("pattern_type", ("no-such-type",)),)),
        VectorFilter((MatchAny("missing_field", ("x",)),)),
    ],
    ids=lambda f: "+".join(f"{c.key}:{c.values if isinstance(c, MatchAny) else (c.gte, c.lte)}" for c in f.must),
)
async def test_filters_match_python_evaluation(vec_index: VectorIndex, vec_data: Any, flt: VectorFilter) -> None:
    await _loaded(vec_index, vec_data)
    query = _unit(np.random.default_rng(9), 1)[0]
    got = await _assert_search(vec_index, vec_data, query, N, flt=flt)
    for hit_id in got[:20]:
        assert all(_holds(c, vec_data[2][vec_data[0].index(hit_id)]) for c in flt.must)


async def test_range_excludes_points_lacking_the_field(vec_index: VectorIndex, vec_data: Any) -> None:
    await _loaded(vec_index, vec_data)
    query = _unit(np.random.default_rng(10), 1)[0]
    got = await _assert_search(vec_index, vec_data, query, N, flt=VectorFilter((Range("quality_score", gte=-1e9),)))
    lacking = {i for i, p in zip(vec_data[0], vec_data[2], strict=True) if "quality_score" not in p}
    assert len(lacking) == N // 5
    assert len(got) == N - len(lacking)
    assert not lacking & set(got)


async def test_upsert_replaces_payload_and_vector(vec_index: VectorIndex, vec_data: Any) -> None:
    await _loaded(vec_index, vec_data)
    ids, vecs, _ = vec_data
    target = ids[3]
    new_vec = vecs[100]
    await vec_index.upsert(
        SPEC.name, [VectorPoint(target.upper(), new_vec, {"pattern_type": "memory", "tags": ["zz"]})]
    )
    assert await vec_index.count(SPEC.name) == N
    hits = await vec_index.search(SPEC.name, new_vec, limit=2)
    assert {h.id for h in hits} == {ids[100], target}
    replaced = next(h for h in hits if h.id == target)
    assert dict(replaced.payload) == {"pattern_type": "memory", "tags": ["zz"]}  # old keys gone
    tagged = await vec_index.search(SPEC.name, new_vec, limit=5, flt=VectorFilter((MatchAny("tags", ("zz",)),)))
    assert [h.id for h in tagged] == [target]


async def test_overwrite_payloads_keeps_vectors_and_reports_missing_ids(vec_index: VectorIndex, vec_data: Any) -> None:
    await _loaded(vec_index, vec_data)
    ids, vecs, _ = vec_data
    stranger = str(uuid.uuid4())
    new = {"pattern_type": "memory", "tags": ["zz"], "active": True}
    missing = await vec_index.overwrite_payloads(SPEC.name, {ids[5].upper(): new, stranger: {"tags": ["yy"]}})
    assert missing == [stranger]
    assert await vec_index.count(SPEC.name) == N  # the stranger was not created
    hits = await vec_index.search(SPEC.name, vecs[5], limit=1)
    assert hits[0].id == ids[5] and hits[0].score == pytest.approx(1.0, abs=1e-4)  # vector kept
    assert dict(hits[0].payload) == new  # whole payload replaced
    flt = VectorFilter((MatchAny("tags", ("zz",)), MatchAny("active", (True,))))
    assert [h.id for h in await vec_index.search(SPEC.name, vecs[5], limit=5, flt=flt)] == [ids[5]]
    assert await vec_index.overwrite_payloads(SPEC.name, {}) == []
    stored = await vec_index.retrieve_vectors(SPEC.name, [ids[5].upper(), stranger, ids[6]])
    assert set(stored) == {ids[5].upper(), ids[6]}  # keyed by the ids as given; unknown ids left out
    np.testing.assert_allclose(stored[ids[5].upper()], vecs[5], atol=1e-5)
    np.testing.assert_allclose(stored[ids[6]], vecs[6], atol=1e-5)
    assert await vec_index.retrieve_vectors(SPEC.name, []) == {}


async def test_delete_is_idempotent_and_list_ids_count(vec_index: VectorIndex, vec_data: Any) -> None:
    await _loaded(vec_index, vec_data)
    ids, vecs, _ = vec_data
    assert await vec_index.list_ids(SPEC.name) == set(ids)
    assert await vec_index.count(SPEC.name) == N
    gone = ids[:10]
    await vec_index.delete(SPEC.name, [*gone, str(uuid.uuid4())])
    await vec_index.delete(SPEC.name, gone)  # again: no error
    await vec_index.delete(SPEC.name, [])
    assert await vec_index.count(SPEC.name) == N - 10
    assert await vec_index.list_ids(SPEC.name) == set(ids[10:])
    hits = await vec_index.search(SPEC.name, vecs[0], limit=N)
    assert not set(gone) & {h.id for h in hits}


async def test_ensure_collection_is_idempotent(vec_index: VectorIndex, vec_data: Any) -> None:
    await _loaded(vec_index, vec_data)
    await vec_index.ensure_collection(SPEC)
    assert await vec_index.count(SPEC.name) == N


@pytest.mark.parametrize(
    "other",
    [
        CollectionSpec(name=SPEC.name, dimension=DIM, model_id="another-model"),
        CollectionSpec(name=SPEC.name, dimension=DIM * 2, model_id=SPEC.model_id),
    ],
    ids=["model_id", "dimension"],
)
async def test_model_mismatch_is_refused(vec_opener: VecOpener, vec_data: Any, other: CollectionSpec) -> None:
    index = vec_opener()
    await _loaded(index, vec_data)
    with pytest.raises(FailedPreconditionError) as err:
        await index.ensure_collection(other)
    assert err.value.reason == "EMBEDDING_MODEL_MISMATCH"
    await index.close()
    reopened = vec_opener()  # the tag is durable: refused after a restart too
    try:
        with pytest.raises(FailedPreconditionError) as err:
            await reopened.ensure_collection(other)
        assert err.value.reason == "EMBEDDING_MODEL_MISMATCH"
        await reopened.ensure_collection(SPEC)
        assert await reopened.count(SPEC.name) == N
    finally:
        await reopened.close()


async def test_reopen_after_close_keeps_data(vec_opener: VecOpener, vec_data: Any) -> None:
    index = vec_opener()
    await _loaded(index, vec_data)
    await index.delete(SPEC.name, vec_data[0][:5])
    await index.close()
    await index.close()  # idempotent
    reopened = vec_opener()
    try:
        await reopened.ensure_collection(SPEC)
        assert await reopened.count(SPEC.name) == N - 5
        assert await reopened.list_ids(SPEC.name) == set(vec_data[0][5:])
        hits = await reopened.search(
            SPEC.name, vec_data[1][50], limit=1, flt=VectorFilter((MatchAny("active", (False,)),))
        )
        assert hits[0].id == vec_data[0][50]
        assert dict(hits[0].payload) == vec_data[2][50]
    finally:
        await reopened.close()


async def test_bad_input_is_rejected(vec_index: VectorIndex, vec_data: Any) -> None:
    await _loaded(vec_index, vec_data)
    good = vec_data[1][0]
    with pytest.raises(InvalidArgumentError):
        await vec_index.upsert(SPEC.name, [VectorPoint("not-a-uuid", good, {})])
    with pytest.raises(InvalidArgumentError):
        await vec_index.upsert(SPEC.name, [VectorPoint(str(uuid.uuid4()), np.ones(DIM + 1, np.float32), {})])
    with pytest.raises(InvalidArgumentError):
        await vec_index.search(SPEC.name, np.ones(DIM - 1, np.float32), limit=3)
    with pytest.raises(InvalidArgumentError):
        await vec_index.search(SPEC.name, good, limit=0)
    with pytest.raises(InvalidArgumentError):
        await vec_index.ensure_collection(CollectionSpec(name="Bad-Name", dimension=DIM, model_id="m"))
    with pytest.raises(NotFoundError):
        await vec_index.search("never_opened", good, limit=3)
    assert await vec_index.count(SPEC.name) == N


async def test_collections_are_separate(vec_index: VectorIndex, vec_data: Any) -> None:
    await _loaded(vec_index, vec_data)
    other = CollectionSpec(name="memories", dimension=DIM, model_id="other-model")
    await vec_index.ensure_collection(other)
    await vec_index.upsert(other.name, [VectorPoint(vec_data[0][0], vec_data[1][0], {"k": 1})])
    assert await vec_index.count(other.name) == 1
    assert await vec_index.count(SPEC.name) == N


async def test_closed_index_is_unavailable(vec_index: VectorIndex, vec_data: Any) -> None:
    await _loaded(vec_index, vec_data)
    await vec_index.close()
    with pytest.raises(UnavailableError):
        await vec_index.count(SPEC.name)


async def test_qdrant_memory_location(vec_data: Any) -> None:
    index = QdrantVectorIndex(location=":memory:")
    try:
        await _loaded(index, vec_data)
        await _assert_search(index, vec_data, vec_data[1][7], 5, flt=VectorFilter((MatchAny("tags", ("db",)),)))
    finally:
        await index.close()


@pytest.mark.parametrize("prefer_grpc", [False, True], ids=["rest", "grpc"])
async def test_qdrant_unreachable_server_is_unavailable(prefer_grpc: bool) -> None:
    # Port 1 on localhost: nothing listens, the connection is refused at once.
    index = QdrantVectorIndex(url="http://127.0.0.1:1", prefer_grpc=prefer_grpc, timeout=5)
    try:
        with pytest.raises(UnavailableError):
            await index.ensure_collection(SPEC)
    finally:
        await index.close()


async def test_edge_shard_open_elsewhere_is_refused(tmp_path: pathlib.Path, vec_data: Any) -> None:
    first = EdgeVectorIndex(tmp_path)
    second = EdgeVectorIndex(tmp_path)  # e.g. a second process on the same directory
    try:
        await _loaded(first, vec_data)
        with pytest.raises(FailedPreconditionError) as err:
            await second.ensure_collection(SPEC)
        assert err.value.reason == "VECTOR_STORE_LOCKED"
    finally:
        await first.close()
        await second.close()
    reopened = EdgeVectorIndex(tmp_path)
    try:
        await reopened.ensure_collection(SPEC)
        assert await reopened.count(SPEC.name) == N
    finally:
        await reopened.close()


async def test_edge_opening_builds_the_hnsw_graph_past_the_threshold(tmp_path: pathlib.Path, vec_data: Any) -> None:
    first = EdgeVectorIndex(tmp_path, index_threshold=0, full_scan_threshold_kb=1)  # never builds; graphs from 1 KB
    try:
        await _loaded(first, vec_data)
    finally:
        await first.close()
    below = EdgeVectorIndex(tmp_path, index_threshold=N + 1)
    try:
        await below.ensure_collection(SPEC)
        assert below._collections[SPEC.name].shard.info().indexed_vectors_count == 0  # exact search only
    finally:
        await below.close()
    built = EdgeVectorIndex(tmp_path, index_threshold=N)
    try:
        await built.ensure_collection(SPEC)
        assert built._collections[SPEC.name].shard.info().indexed_vectors_count == N
        rng = np.random.default_rng(5)
        flt = VectorFilter(must=(MatchAny("status", ("active",)),))
        for query in _unit(rng, 5):  # hnsw_ef 128 of 300 points: the graph search finds the exact answer
            await _assert_search(built, vec_data, query, 10)
            await _assert_search(built, vec_data, query, 10, flt=flt)
    finally:
        await built.close()
    again = EdgeVectorIndex(tmp_path, index_threshold=N)  # the graph persists: nothing left to build
    try:
        await again.ensure_collection(SPEC)
        assert again._collections[SPEC.name].shard.info().indexed_vectors_count == N
        assert await again.count(SPEC.name) == N
    finally:
        await again.close()
