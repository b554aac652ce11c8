"""MatchPatterns scoring: calibrated relevance, the dense floor and outcome-aware (learned) ranking."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from pattern_service.domain import MatchRanking, SuccessPattern, SuccessPatternStatus
from pattern_service.store.relevance import (
    LEXICAL_WEIGHT,
    MATCH_CALIBRATION,
    dense_floor,
    rank_matches,
    smoothed_success_rate,
)


def _pattern(pid: str, *, outcomes: int = 0, rate: float | None = None) -> SuccessPattern:
    now = datetime.now(UTC)
    return SuccessPattern(
        pattern_id=pid, tenant_id="t", pattern_type="caching", name=f"Cache warming {pid}",
        description="Warm the cache before traffic arrives", version=1, parent_pattern_id=None, context_hash="",
        execution_trace={}, success_criteria={}, quality_metrics={}, performance_data={}, tags=("cache",),
        status=SuccessPatternStatus.ACTIVE, created_at=now, updated_at=now, last_matched_at=None,
        match_count=outcomes, success_rate=rate, context={}, quality_score=0.0,
    )  # fmt: skip


def test_smoothed_success_rate_prefers_evidence() -> None:
    assert smoothed_success_rate(_pattern("a")) == 0.5
    one_of_one = smoothed_success_rate(_pattern("b", outcomes=1, rate=1.0))
    ninety_of_hundred = smoothed_success_rate(_pattern("c", outcomes=100, rate=0.9))
    assert one_of_one == pytest.approx(2 / 3) and ninety_of_hundred == pytest.approx(91 / 102)
    assert ninety_of_hundred > one_of_one


def test_learned_ranking_blends_relevance_with_outcomes_and_relevance_ranking_ignores_them() -> None:
    lucky, proven = _pattern("1", outcomes=1, rate=1.0), _pattern("2", outcomes=100, rate=0.9)
    intent = "warm the cache"
    relevance = rank_matches(intent, [lucky, proven], [0.55, 0.55], MatchRanking.RELEVANCE)
    assert [m.rank for m in relevance] == [m.confidence for m in relevance]
    assert relevance[0].confidence == relevance[1].confidence  # same texts, same cosine
    learned = rank_matches(intent, [lucky, proven], [0.55, 0.55], MatchRanking.LEARNED)
    assert [m.pattern.pattern_id for m in learned] == ["2", "1"]  # 90 of 100 beats 1 of 1
    top = learned[0]
    assert top.rank == pytest.approx(top.confidence * (0.5 + 0.5 * 91 / 102))
    assert top.hybrid == pytest.approx((1 - LEXICAL_WEIGHT) * 0.55 + LEXICAL_WEIGHT * 1.0)  # every intent term is in
    assert top.confidence == pytest.approx(MATCH_CALIBRATION(top.hybrid))


def test_dense_floor_never_drops_a_pattern_that_could_reach_min_confidence() -> None:
    for p in (0.05, 0.3, 0.7, 0.95):
        floor = dense_floor(p)
        best_case = (1 - LEXICAL_WEIGHT) * floor + LEXICAL_WEIGHT * 1.0  # full coverage at the floor cosine
        assert MATCH_CALIBRATION(best_case) == pytest.approx(p, abs=1e-6)
    assert dense_floor(0.0) < -0.5 and not math.isnan(dense_floor(1.0))
