"""Hybrid similarity of a query to every registered pattern: dense (MiniLM) blended with lexical (BM25).

For a pattern ``p`` with example vectors ``e₁…eₙ`` (L2-normalised) and the
query vector ``q``:

- ``dense(p) = (1 − CENTROID_WEIGHT) · maxᵢ cos(q, eᵢ) + CENTROID_WEIGHT · cos(q, c)``
  where ``c`` is the normalised mean of the examples: the nearest example
  rewards a close paraphrase, the centroid rewards agreement with all of them
  (per-pattern aggregation, not only the single nearest example);
- ``lexical(p)`` is the squashed BM25 score of the query against the
  pattern's name and examples (:mod:`.lexical`);
- ``hybrid(p) = (1 − LEXICAL_WEIGHT) · dense(p) + LEXICAL_WEIGHT · lexical(p)``,
  clipped to [0, 1]. This is ``RoutingDecision.raw_score``.

The weights were chosen on the ``dev`` split of the bundled routing
evaluation data (``pattern_service/evaluation/data``); the ``test`` split was
not used to choose them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from pattern_service.domain import PatternDefinition, PatternType
from pattern_service.lexical import LexicalIndex, pattern_document

#: Weight of the centroid cosine in ``dense``.
CENTROID_WEIGHT = 0.85
#: Weight of the lexical score in ``hybrid``.
LEXICAL_WEIGHT = 0.3


def single_threaded_blas() -> None:
    """Limit the process's BLAS (numpy's OpenBLAS) to one thread; call once, after numpy is loaded.

    The per-query products over the example matrix (10,000 patterns: two 10,000 × 384
    matrix-vector products) are memory-bound; OpenBLAS splitting them over threads on a
    2-core box shared with the gRPC loop and the ONNX Runtime threads made a semantic
    match at 10,000 patterns cost 18× the cost at 10 (in-process, same run); on one thread 5.6×.
    """
    threadpool_limits(limits=1, user_api="blas")


#: Small integer code of each pattern type (for the vectorized type filter).
TYPE_CODES: Mapping[PatternType, int] = {t: i for i, t in enumerate(PatternType)}


@dataclass(frozen=True, slots=True)
class Candidate:
    """A pattern scored against a query.

    Attributes:
        definition: The pattern.
        score: Hybrid similarity in [0, 1] (``RoutingDecision.raw_score``).
        dense: Its dense part (cosine blend, in [-1, 1]).
        lexical: Its lexical part, in [0, 1).
        example: The example closest in meaning to the query.
    """

    definition: PatternDefinition
    score: float
    dense: float
    lexical: float
    example: str


@dataclass(frozen=True, slots=True)
class ScoringModel:
    """The compiled example matrix, centroids and BM25 index of a registry state (immutable).

    Attributes:
        owners: Patterns with at least one embedded example, registry order.
        matrix: Example vectors, shape ``(examples, dim)``, grouped by owner.
        starts: Row of each owner's first example, shape ``(owners,)``.
        ends: One past each owner's last example.
        centroids: Normalised mean example vector of each owner with more than one example,
            shape ``(len(pooled), dim)``; an owner with one example is its own centroid (its
            row of ``matrix``), so its centroid cosine is its example cosine, not a second product.
        pooled: Owner indexes of the rows of ``centroids``.
        owner_types: Type code per owner.
        examples: Example text per matrix row.
        lexical: BM25 over one document per owner.
        position: Owner index by pattern name.
    """

    owners: tuple[PatternDefinition, ...]
    matrix: npt.NDArray[np.float32]
    starts: npt.NDArray[np.intp]
    ends: npt.NDArray[np.intp]
    centroids: npt.NDArray[np.float32]
    pooled: npt.NDArray[np.intp]
    owner_types: npt.NDArray[np.int8]
    examples: tuple[str, ...]
    lexical: LexicalIndex
    position: Mapping[str, int]

    @classmethod
    def build(
        cls, ordered: Sequence[PatternDefinition], vectors: Mapping[str, npt.NDArray[np.float32]], dimension: int
    ) -> ScoringModel:
        """Compile the model of ``ordered`` (registry order) from the embedded examples in ``vectors``."""
        owners = tuple(d for d in ordered if any(e in vectors for e in d.examples))
        rows: list[npt.NDArray[np.float32]] = []
        texts: list[str] = []
        starts: list[int] = []
        centroids: list[npt.NDArray[np.float32]] = []
        pooled: list[int] = []
        for k, d in enumerate(owners):
            starts.append(len(rows))
            own = [vectors[e] for e in d.examples if e in vectors]
            rows.extend(own)
            texts.extend(e for e in d.examples if e in vectors)
            if len(own) > 1:
                mean = np.mean(np.stack(own), axis=0)
                norm = float(np.linalg.norm(mean))
                centroids.append((mean / norm if norm > 0 else mean).astype(np.float32))
                pooled.append(k)
        matrix = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dimension), dtype=np.float32)
        starts_array = np.asarray(starts, dtype=np.intp)
        return cls(
            owners=owners,
            matrix=matrix,
            starts=starts_array,
            ends=np.append(starts_array[1:], len(texts)).astype(np.intp),
            centroids=np.stack(centroids) if centroids else np.zeros((0, dimension), dtype=np.float32),
            pooled=np.asarray(pooled, dtype=np.intp),
            owner_types=np.asarray([TYPE_CODES[d.pattern_type] for d in owners], dtype=np.int8),
            examples=tuple(texts),
            lexical=LexicalIndex([pattern_document(d.name, d.examples) for d in owners]),
            position={d.name: i for i, d in enumerate(owners)},
        )

    def arrays(
        self, vector: npt.NDArray[np.float32], text: str
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Per-owner ``(hybrid, dense, lexical)`` scores and the per-example cosines of one query."""
        sims = self.matrix @ vector
        best = sims if len(sims) == len(self.starts) else np.maximum.reduceat(sims, self.starts)
        central = best.copy()  # one example: the example is the centroid
        if len(self.pooled):
            central[self.pooled] = self.centroids @ vector
        dense = (1.0 - CENTROID_WEIGHT) * best + CENTROID_WEIGHT * central
        lexical = self.lexical.scores(text)
        hybrid = np.clip((1.0 - LEXICAL_WEIGHT) * dense + LEXICAL_WEIGHT * lexical, 0.0, 1.0)
        return hybrid.astype(np.float32), dense.astype(np.float32), lexical, sims

    def candidate(self, k: int, hybrid: npt.NDArray[np.float32], dense: npt.NDArray[np.float32],
                  lexical: npt.NDArray[np.float32], sims: npt.NDArray[np.float32]) -> Candidate:  # fmt: skip
        """The :class:`Candidate` of owner ``k``."""
        start, end = int(self.starts[k]), int(self.ends[k])
        row = start + int(np.argmax(sims[start:end]))
        return Candidate(self.owners[k], float(hybrid[k]), float(dense[k]), float(lexical[k]), self.examples[row])

    def top(
        self,
        vector: npt.NDArray[np.float32],
        text: str,
        limit: int,
        pattern_types: Collection[PatternType] = (),
        also: Collection[str] = (),
    ) -> tuple[list[Candidate], dict[str, Candidate]]:
        """The ``limit`` best owners by hybrid score, best first, and the candidates of the names in ``also``.

        Ties break by registry order (priority descending, then name).

        Args:
            vector: The query's embedding.
            text: The normalised query (for BM25).
            limit: Most candidates (> 0).
            pattern_types: Only these types in the ranking (empty = all).
            also: Pattern names whose candidates are wanted whatever their rank
                (the trigger matches); absent names (no examples) are skipped.
        """
        if not self.owners:
            return [], {}
        hybrid, dense, lexical, sims = self.arrays(vector, text)
        candidates: npt.NDArray[np.intp] = np.arange(len(hybrid), dtype=np.intp)
        if pattern_types:
            codes = np.asarray([TYPE_CODES[t] for t in set(pattern_types)], dtype=np.int8)
            candidates = np.flatnonzero(np.isin(self.owner_types, codes))
        scores = hybrid[candidates]
        if limit < len(candidates):
            kth = np.partition(scores, len(scores) - limit)[len(scores) - limit]
            keep = np.flatnonzero(scores >= kth)
            candidates, scores = candidates[keep], scores[keep]
        top = candidates[np.lexsort((candidates, -scores))[:limit]]
        ranked = [self.candidate(k, hybrid, dense, lexical, sims) for k in top.tolist()]
        extra = {
            name: self.candidate(self.position[name], hybrid, dense, lexical, sims)
            for name in also
            if name in self.position
        }
        return ranked, extra
