"""Deterministic synthetic corpus for the scaling curves, with an on-disk cache of its real embeddings.

Item ``i`` is the same text in every run, so the first ``n`` items of a larger corpus are the
corpus of size ``n``. Each item is stored twice by the seeder: as a success pattern (whose
embedding text, :func:`pattern_service.store.learning_binding.pattern_embedding_text`, is :attr:`Item.text`)
and as a memory whose content is that same text, so one embedding serves both collections.
Vectors are computed with the service's own :class:`~pattern_service.store.embeddings.OnnxEmbedder`
(never faked) and cached under ``bench/.cache`` keyed by model id and corpus version.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

CORPUS_VERSION = 1
CACHE_DIR = Path(__file__).resolve().parent / ".cache"
CHUNK = 5000

_TYPES = (
    "api_optimization",
    "database_tuning",
    "cache_strategy",
    "deployment",
    "incident_response",
    "security_hardening",
    "data_pipeline",
    "testing_strategy",
    "observability",
    "cost_reduction",
    "refactoring",
    "onboarding",
    "capacity_planning",
    "release_management",
    "schema_migration",
    "access_control",
)
_SUBJECTS = (
    "payments service",
    "search cluster",
    "user profile API",
    "billing database",
    "message queue",
    "image resizer",
    "recommendation model",
    "auth gateway",
    "reporting warehouse",
    "mobile backend",
    "inventory service",
    "notification worker",
    "checkout flow",
    "log pipeline",
    "feature store",
    "geo index",
    "session cache",
    "video transcoder",
    "analytics dashboard",
    "shipping tracker",
)
_ACTIONS = (
    "add connection pooling to",
    "introduce read replicas for",
    "shard the hot tables of",
    "put a write-through cache in front of",
    "batch the outgoing calls of",
    "add circuit breakers around",
    "move the slow jobs of {s} to a background queue",
    "rewrite the N+1 queries in",
    "enable compression on",
    "add canary releases to",
    "set per-tenant rate limits on",
    "rotate the credentials of",
    "add structured tracing to",
    "precompute the daily aggregates of",
    "split the monolith module of",
    "tune the garbage collector of",
    "add idempotency keys to",
    "partition the event log of",
    "add a dead letter queue to",
    "profile the cold start of",
)
_OUTCOMES = (
    "which cut p95 latency by {n}%",
    "which removed {n} timeouts a day",
    "which halved the error rate",
    "which saved {n} dollars a month",
    "which made the rollback take {n} seconds",
    "after an outage lasting {n} minutes",
    "with {n} percent less CPU",
    "so the nightly job finishes {n} minutes earlier",
)
_TAGS = (
    "postgresql",
    "redis",
    "kafka",
    "grpc",
    "python",
    "kubernetes",
    "latency",
    "reliability",
    "security",
    "cost",
    "throughput",
    "observability",
    "ci",
    "storage",
    "networking",
    "frontend",
)


@dataclass(frozen=True, slots=True)
class Item:
    """One synthetic success pattern / memory.

    Attributes:
        index: Position in the corpus.
        pattern_type: Success pattern type.
        name: Unique name.
        description: Free text.
        tags: Two tags.
    """

    index: int
    pattern_type: str
    name: str
    description: str
    tags: tuple[str, str]

    @property
    def text(self) -> str:
        """The embedding text of the success pattern (the service's format) and the memory content."""
        return (
            f"Pattern Type: {self.pattern_type}\nName: {self.name}\n"
            f"Description: {self.description}\nTags: {', '.join(self.tags)}"
        )


def item(i: int) -> Item:
    """Item ``i`` of the corpus (deterministic)."""
    rng = np.random.default_rng(1_000_003 * CORPUS_VERSION + i)
    kind = _TYPES[int(rng.integers(len(_TYPES)))]
    subject = _SUBJECTS[int(rng.integers(len(_SUBJECTS)))]
    action = _ACTIONS[int(rng.integers(len(_ACTIONS)))]
    outcome = _OUTCOMES[int(rng.integers(len(_OUTCOMES)))].format(n=int(rng.integers(2, 95)))
    what = action.format(s=subject) if "{s}" in action else f"{action} the {subject}"
    t1, t2 = rng.choice(len(_TAGS), size=2, replace=False)
    return Item(
        index=i,
        pattern_type=kind,
        name=f"{kind.replace('_', ' ')} for the {subject} #{i}",
        description=f"We {what}, {outcome}.",
        tags=(_TAGS[int(t1)], _TAGS[int(t2)]),
    )


def items(n: int, start: int = 0) -> list[Item]:
    """Items ``start`` .. ``n - 1``."""
    return [item(i) for i in range(start, n)]


def query_texts(n: int, seed: int = 7) -> list[str]:
    """``n`` distinct natural-language recall/match queries over the corpus' vocabulary."""
    rng = np.random.default_rng(seed)
    out: list[str] = []
    for k in range(n):
        subject = _SUBJECTS[int(rng.integers(len(_SUBJECTS)))]
        action = _ACTIONS[int(rng.integers(len(_ACTIONS)))].replace("{s}", "the " + subject)
        out.append(f"how did we {action} {subject} (case {k})")
    return out


def _chunk_path(model_id: str, chunk: int) -> Path:
    return CACHE_DIR / f"corpus-v{CORPUS_VERSION}-{model_id}-{chunk:04d}.npy"


def _embed_all(emb: Any, texts: list[str]) -> npt.NDArray[np.float32]:
    """``emb.embed_sync`` over ``texts`` on two threads (halves in order; ``session.run`` is thread-safe)."""
    if len(texts) < 2:
        return np.asarray(emb.embed_sync(texts), dtype=np.float32)
    half = (len(texts) + 1) // 2
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="corpus-embed") as pool:
        parts = list(pool.map(emb.embed_sync, [texts[:half], texts[half:]]))
    return np.concatenate(parts).astype(np.float32)


def _compute_chunk(emb: Any, c: int, path: Path) -> npt.NDArray[np.float32]:
    """Embed chunk ``c`` and save it atomically (a per-process temp name, so concurrent writers never clash)."""
    started = time.perf_counter()
    texts = [it.text for it in items((c + 1) * CHUNK, c * CHUNK)]
    arr = _embed_all(emb, texts)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, arr)
    tmp.replace(path)
    took = time.perf_counter() - started
    log.info("embedded corpus chunk %d (%d texts) in %.1f s (%.0f texts/s)", c, len(texts), took, len(texts) / took)
    return arr


def vectors(n: int, *, embedder: object | None = None, reverse: bool = False) -> npt.NDArray[np.float32]:
    """Embeddings of items ``0 .. n - 1`` (rows L2-normalised), computed once and cached on disk.

    Args:
        n: Corpus size.
        embedder: An :class:`~pattern_service.store.embeddings.OnnxEmbedder` to use
            (default: a new one, loaded here).
        reverse: Compute missing chunks last-first (a second precomputing process meets the first in the middle).

    Returns:
        float32 array of shape ``(n, 384)``.
    """
    from pattern_service.store.embeddings import MINILM_MODEL_ID, OnnxEmbedder

    emb = embedder if isinstance(embedder, OnnxEmbedder) else OnnxEmbedder(cache_size=0)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    chunks = range((n + CHUNK - 1) // CHUNK)
    parts: dict[int, npt.NDArray[np.float32]] = {}
    for c in reversed(chunks) if reverse else chunks:
        path = _chunk_path(MINILM_MODEL_ID, c)
        if path.exists():
            parts[c] = np.load(path)
        elif n < (c + 1) * CHUNK:  # a partial chunk (small runs): embed what is needed, cache nothing
            parts[c] = _embed_all(emb, [it.text for it in items(n, c * CHUNK)])
        else:
            parts[c] = _compute_chunk(emb, c, path)
    if not parts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.concatenate([parts[c] for c in chunks])[:n]


def embedding_rate(embedder: object | None = None, sample: int = 256, batch: int = 16) -> float:
    """Texts/s of the model alone: ONNX embedding of short corpus texts, jobs of ``batch`` texts on two threads.

    The service's own derived int8 model (each text runs alone inside a job, as in the service), no
    cache, no event loop: the limit that the embedding paths (recall and MatchPatterns with distinct
    queries, memory store, ``CreateSuccessPattern``) are compared with in the same run.
    """
    from pattern_service.store.embeddings import OnnxEmbedder

    emb = embedder if isinstance(embedder, OnnxEmbedder) else OnnxEmbedder(cache_size=0)
    texts = [it.text for it in items(10_000_000 + sample, 10_000_000)]
    emb.load()
    emb.embed_sync(texts[:batch])  # first-run allocations out of the measure
    jobs = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="rate-embed") as pool:
        started = time.perf_counter()
        list(pool.map(emb.embed_sync, jobs))
        return sample / (time.perf_counter() - started)


if __name__ == "__main__":  # precompute: python -m bench.corpus [n] [--reverse]
    import sys

    logging.basicConfig(level=logging.INFO)
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    t0 = time.perf_counter()
    v = vectors(size, reverse="--reverse" in sys.argv)
    print(f"{v.shape} in {time.perf_counter() - t0:.1f} s")
