"""The embedder's cache key normalization and in-flight sharing."""

from __future__ import annotations

import asyncio

import numpy as np

from pattern_service.store.embeddings import OnnxEmbedder, cache_key

RAW = [
    "Find Similar  incidents in the PAYMENTS service",
    "  recall\tmemories\nabout DEPLOYS\r\n",
    "Calculate (2 + 3) * 4!",
]
KEPT = [
    "[MASK] the Deploy",  # special tokens match case-sensitively before normalization
    "Naïve Café",  # non-ASCII lower-casing / accents: left to the tokenizer
    "ΟΔΟΣ",  # final sigma: str.lower differs from per-character lower-casing
    "a\x1cB",  # a control character the tokenizer removes but str.split splits on
    "a\x0bB",
]


def test_cache_key_folds_only_what_the_tokenizer_folds() -> None:
    assert cache_key(RAW[0]) == "find similar incidents in the payments service"
    assert cache_key(RAW[1]) == "recall memories about deploys"
    for text in KEPT:
        assert cache_key(text) == text


def test_normalized_key_gives_the_same_token_ids_and_vector_as_the_raw_text(vec_onnx: OnnxEmbedder) -> None:
    vec_onnx.load()
    tokenizer = vec_onnx._tokenizer
    for text in RAW + KEPT:
        assert tokenizer.encode(cache_key(text)).ids == tokenizer.encode(text).ids, text
        np.testing.assert_array_equal(vec_onnx.embed_sync([cache_key(text)]), vec_onnx.embed_sync([text]))


async def test_embed_returns_the_raw_texts_vector_and_shares_the_cache_entry() -> None:
    emb = OnnxEmbedder(cache_size=16)
    try:
        reference = emb.embed_sync(RAW)
        first = await emb.embed([RAW[0]])
        runs = emb.model_runs
        again = await emb.embed([cache_key(RAW[0]), RAW[0].upper()])
        assert emb.model_runs == runs
        np.testing.assert_array_equal(first[0], reference[0])
        np.testing.assert_array_equal(again, reference[[0, 0]])
    finally:
        emb.close()


async def test_concurrent_calls_for_the_same_text_share_one_inference() -> None:
    emb = OnnxEmbedder(cache_size=0)  # no cache: only the in-flight sharing can avoid the second run
    try:
        emb.load()
        subject = "deploying the payments service"
        a, b, c = await asyncio.gather(
            emb.embed([subject]), emb.embed([subject.lower()]), emb.embed(["Deploying  the payments SERVICE"])
        )
        assert emb.model_runs == 1
        assert emb.inflight_joins == 2
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        await emb.embed([subject])  # nothing left in flight: a new call runs the model again
        assert emb.model_runs == 2
        np.testing.assert_array_equal(a, emb.embed_sync([subject]))
    finally:
        emb.close()


async def test_a_cancelled_caller_does_not_cancel_the_shared_inference() -> None:
    emb = OnnxEmbedder(cache_size=8)
    try:
        emb.load()
        first = asyncio.ensure_future(emb.embed(["shared probe text"]))
        second = asyncio.ensure_future(emb.embed(["Shared probe text"]))
        await asyncio.sleep(0)
        first.cancel()
        vec = await second
        np.testing.assert_array_equal(vec, emb.embed_sync(["shared probe text"]))
        assert emb.model_runs == 2  # the shared run, then embed_sync above
    finally:
        emb.close()


async def test_an_inference_error_reaches_every_waiter() -> None:
    emb = OnnxEmbedder(cache_size=8)

    def boom(texts: object) -> np.ndarray:
        raise RuntimeError("model failed")

    emb.embed_sync = boom  # type: ignore[method-assign]
    try:
        results = await asyncio.gather(emb.embed(["x y"]), emb.embed(["X  Y"]), return_exceptions=True)
        assert [type(r) for r in results] == [RuntimeError, RuntimeError]
        assert emb._pending == {}
    finally:
        emb.close()
