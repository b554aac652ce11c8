"""How ``MatchPatterns`` scores, calibrates and ranks the success patterns the index found.

- **Hybrid similarity** ``h = (1 − LEXICAL_WEIGHT) · cosine + LEXICAL_WEIGHT · coverage``:
  ``cosine`` is the index's score of the pattern's embedded text
  (:func:`~pattern_service.store.learning_binding.pattern_embedding_text`) and
  ``coverage`` the share of the intent's terms that text contains (the intent
  is the need; context and requirements qualify it and are only embedded)
  (:func:`pattern_service.lexical.query_coverage`; stemmed, stop words
  removed). Coverage needs no statistics of the whole collection, so a
  pattern's score does not depend on which other patterns were retrieved with
  it (BM25 over the retrieved set would: its IDF changes with the set).
- **Calibrated relevance** ``confidence = Platt(h)`` (:mod:`pattern_service.calibration`),
  fitted on the ``dev`` split of ``pattern_service/evaluation/data/match_queries.jsonl``
  against the 60 patterns of ``success_patterns.jsonl`` (every top-5 match a
  decision: relevant or not); ``min_confidence`` filters on it.
- **Learned ranking** (``MATCH_RANKING_LEARNED``): ``rank = confidence × (0.5 + 0.5 × s)``
  with ``s = (successes + 1) / (outcomes + 2)``, the outcome record smoothed by
  a Beta(1, 1) prior (Laplace's rule of succession): 1 success of 1 gives
  0.67 and ranks below 90 of 100 (0.89); a pattern never used counts as 0.5.
  Relevance still dominates: a pattern with no evidence keeps three quarters
  of the weight of a perfect one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pattern_service.calibration import PlattScaling
from pattern_service.domain import MatchRanking, SuccessPattern
from pattern_service.lexical import query_coverage
from pattern_service.store.learning_binding import pattern_embedding_text

#: Weight of the lexical coverage in the hybrid similarity.
LEXICAL_WEIGHT = 0.2
#: Patterns the index returns before re-scoring (at least ``limit``).
MATCH_CANDIDATES = 20
#: Platt scaling of the hybrid similarity (see the module docstring; ``python -m bench.routing --fit-defaults``).
MATCH_CALIBRATION = PlattScaling(slope=19.448426706952393, intercept=-8.165828272164404, sample_count=950)


@dataclass(frozen=True, slots=True)
class ScoredMatch:
    """A retrieved pattern with its scores (see the module docstring)."""

    pattern: SuccessPattern
    similarity: float
    hybrid: float
    confidence: float
    rank: float


def smoothed_success_rate(pattern: SuccessPattern) -> float:
    """``(successes + 1) / (outcomes + 2)`` from ``success_rate`` and ``match_count``."""
    outcomes = max(0, pattern.match_count)
    successes = (pattern.success_rate or 0.0) * outcomes
    return (successes + 1.0) / (outcomes + 2.0)


def dense_floor(min_confidence: float) -> float:
    """The lowest cosine that can still reach ``min_confidence`` (coverage at most 1): the index's threshold."""
    p = min(max(min_confidence, 1e-9), 1 - 1e-9)
    scaling = MATCH_CALIBRATION
    if scaling.slope <= 0:
        return -1.0
    hybrid = (math.log(p / (1 - p)) - scaling.intercept) / scaling.slope
    return max(-1.0, (hybrid - LEXICAL_WEIGHT) / (1 - LEXICAL_WEIGHT))


def rank_matches(
    intent: str, patterns: Sequence[SuccessPattern], similarities: Sequence[float], ranking: MatchRanking
) -> list[ScoredMatch]:
    """Score, calibrate and order retrieved patterns, best first.

    Args:
        intent: The query's intent (its terms are the ones coverage counts).
        patterns: Retrieved patterns.
        similarities: Their cosine with the query, same order.
        ranking: Relevance only, or relevance blended with outcomes.
    """
    coverage = query_coverage(intent, [pattern_embedding_text(p) for p in patterns])
    out = []
    for p, cos, cov in zip(patterns, similarities, coverage.tolist(), strict=True):
        hybrid = (1 - LEXICAL_WEIGHT) * cos + LEXICAL_WEIGHT * cov
        confidence = MATCH_CALIBRATION(hybrid)
        rank = confidence if ranking is MatchRanking.RELEVANCE else confidence * (0.5 + 0.5 * smoothed_success_rate(p))
        out.append(ScoredMatch(p, cos, hybrid, confidence, rank))
    out.sort(key=lambda m: (-m.rank, -m.hybrid, m.pattern.pattern_id))
    return out
