"""The embedders: MiniLM int8 on onnxruntime, and the hashing fallback."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pattern_service.errors import FailedPreconditionError
from pattern_service.store.embeddings import Embedder, HashingEmbedder, OnnxEmbedder, create_embedder

TEXTS = [
    "recall my memories about the database",
    "retrieve stored notes on the DB",
    "the cat sat on the mat",
    "Summarize all recent incidents in the payment service and suggest fixes for the retry storm",
    "",
    "naïve café — 東京 emoji 🚀",
    "word " * 400,  # longer than the 256-token window: truncated, not an error
]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(params=["onnx", "hashing"])
def vec_embedder(request: pytest.FixtureRequest, vec_onnx: OnnxEmbedder) -> Embedder:
    return vec_onnx if request.param == "onnx" else HashingEmbedder()


async def test_shape_dtype_and_unit_norm(vec_embedder: Embedder) -> None:
    vecs = await vec_embedder.embed(TEXTS)
    assert vecs.shape == (len(TEXTS), vec_embedder.dimension)
    assert vecs.dtype == np.float32
    norms = np.linalg.norm(vecs, axis=1)
    nonempty = [i for i, t in enumerate(TEXTS) if t.strip() or isinstance(vec_embedder, OnnxEmbedder)]
    np.testing.assert_allclose(norms[nonempty], 1.0, atol=1e-5)
    assert np.all(np.isfinite(vecs))
    empty = await vec_embedder.embed([])
    assert empty.shape == (0, vec_embedder.dimension)


async def test_deterministic(vec_embedder: Embedder) -> None:
    first = await vec_embedder.embed(TEXTS[:4])
    second = await vec_embedder.embed(list(reversed(TEXTS[:4])))
    np.testing.assert_allclose(first, second[::-1], atol=1e-6)


async def test_onnx_paraphrase_closer_than_unrelated(vec_onnx: OnnxEmbedder) -> None:
    a, b, c = await vec_onnx.embed(TEXTS[:3])
    assert _cos(a, b) > 0.3
    assert _cos(a, b) > _cos(a, c) + 0.25
    assert _cos(a, b) > _cos(b, c) + 0.25


async def test_hashing_shared_words_closer_than_unrelated() -> None:
    emb = HashingEmbedder()
    a, b, c = await emb.embed(["recall my memories about the database", "recall memories database", "the cat sat"])
    assert _cos(a, b) > _cos(a, c)
    assert emb.model_id == "hashing-v1-384" and emb.dimension == 384


async def test_onnx_identity() -> None:
    emb = create_embedder("onnx")
    assert isinstance(emb, OnnxEmbedder)
    assert (emb.model_id, emb.dimension) == ("all-MiniLM-L6-v2-onnx-int8", 384)
    assert not emb.loaded  # lazy: nothing loads at construction
    emb.close()
    assert isinstance(create_embedder("hashing"), HashingEmbedder)
    with pytest.raises(ValueError):
        create_embedder("word2vec")


async def test_onnx_cache_hit_does_not_rerun_model(vec_onnx: OnnxEmbedder) -> None:
    texts = ["cache probe: find related patterns for deployment", "cache probe: second text"]
    runs, misses, hits = vec_onnx.model_runs, vec_onnx.cache_misses, vec_onnx.cache_hits
    first = await vec_onnx.embed(texts)
    assert vec_onnx.model_runs == runs + 1  # two texts, one batched run
    assert vec_onnx.cache_misses == misses + 2
    again = await vec_onnx.embed([texts[1], texts[0], texts[1]])
    assert vec_onnx.model_runs == runs + 1
    assert vec_onnx.cache_hits == hits + 3
    np.testing.assert_array_equal(again, first[[1, 0, 1]])
    again[0] += 1.0  # callers get their own arrays: the cache is not corrupted
    np.testing.assert_array_equal((await vec_onnx.embed(texts[:1]))[0], first[0])


async def test_onnx_duplicates_in_one_call_embed_once(vec_onnx: OnnxEmbedder) -> None:
    misses = vec_onnx.cache_misses
    vecs = await vec_onnx.embed(["dup probe text"] * 3)
    assert vec_onnx.cache_misses == misses + 1
    np.testing.assert_array_equal(vecs[0], vecs[2])


async def test_onnx_lru_evicts_least_recently_used() -> None:
    emb = OnnxEmbedder(cache_size=2)
    try:
        await emb.embed(["one"])
        await emb.embed(["two"])
        await emb.embed(["one"])  # refresh "one"
        await emb.embed(["three"])  # evicts "two"
        runs = emb.model_runs
        await emb.embed(["one", "three"])
        assert emb.model_runs == runs
        await emb.embed(["two"])
        assert emb.model_runs == runs + 1
    finally:
        emb.close()


async def test_onnx_batch_equals_single() -> None:
    uncached = OnnxEmbedder(cache_size=0, max_batch=4)  # batches of up to 4 texts, padded
    try:
        batched = await uncached.embed(TEXTS)
        single = np.stack([(await uncached.embed([t]))[0] for t in TEXTS])
        cosines = np.sum(batched * single, axis=1)
        np.testing.assert_allclose(cosines, 1.0, atol=1e-5)
        np.testing.assert_allclose(batched, single, atol=1e-5)
    finally:
        uncached.close()


async def test_onnx_concurrent_calls_agree(vec_onnx: OnnxEmbedder) -> None:
    texts = [f"concurrent probe number {i} about vector search" for i in range(8)]
    results = await asyncio.gather(*(vec_onnx.embed([t]) for t in texts))
    reference = vec_onnx.embed_sync(texts)
    np.testing.assert_allclose(np.concatenate(results), reference, atol=1e-5)


async def test_onnx_concurrent_calls_share_micro_batches() -> None:
    emb = OnnxEmbedder(cache_size=0)
    try:
        emb.load()
        texts = [f"micro batch probe {i} on the payments service" for i in range(12)]
        results = await asyncio.gather(*(emb.embed([t]) for t in texts))
        assert emb.model_runs == 1  # twelve callers in one tick, one session.run
        np.testing.assert_allclose(np.concatenate(results), emb.embed_sync(texts), atol=1e-5)

        first = asyncio.create_task(emb.embed(["the first text runs alone"]))
        await asyncio.sleep(0)  # its inference is under way when the next callers arrive
        await asyncio.sleep(0)
        later = [asyncio.create_task(emb.embed([f"queued behind it {i}"])) for i in range(6)]
        await asyncio.gather(first, *later)
        assert emb.model_runs == 1 + 1 + 1 + 1  # + embed_sync above, + the first text, + one batch of six
    finally:
        emb.close()


async def test_onnx_closed_embedder_fails_clearly() -> None:
    emb = OnnxEmbedder(cache_size=0)
    emb.close()
    with pytest.raises(FailedPreconditionError):
        await emb.embed(["after close"])
