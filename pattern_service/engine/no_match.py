"""The ``NO_PATTERN_MATCHED`` error: what the router tells a caller when nothing matched.

Its metadata names the closest candidates, their calibrated and raw scores and
the threshold each missed, so a caller can see how far the query was from a
pattern (the seed API's ``NotFoundError``).
"""

from __future__ import annotations

import json
from typing import Any

from pattern_service.calibration import RoutingCalibration
from pattern_service.domain import ExecutionMode, MatchSource
from pattern_service.engine.registry import MatchOutcome, PatternRegistry
from pattern_service.engine.scoring import Candidate
from pattern_service.errors import NotFoundError

#: Candidates named in a ``NO_PATTERN_MATCHED`` error.
NO_MATCH_CANDIDATES = 3


def no_match_error(
    registry: PatternRegistry,
    outcome: MatchOutcome,
    best: Candidate | None,
    *,
    mode: ExecutionMode,
    trigger_threshold: float,
) -> NotFoundError:
    """``NO_PATTERN_MATCHED`` with the closest candidates (calibrated and raw) in the metadata.

    Args:
        registry: The registry that matched (thresholds and calibration).
        outcome: What it found for the query.
        best: The best runnable similarity candidate under ``mode``, if any.
        mode: The request's execution mode.
        trigger_threshold: The hybrid-similarity floor that confirms a trigger.

    Returns:
        The error to raise (metadata: ``execution_mode``, ``candidates`` JSON and,
        with a best candidate, ``best_pattern_name``, ``best_score``, ``best_raw_score``,
        ``threshold``, ``best_is_write``).
    """
    calibration = registry.calibration
    listed: list[dict[str, Any]] = []
    for hit in outcome.triggers:
        scored = outcome.trigger_scores.get(hit.definition.name)
        if scored is not None:
            listed.append(_describe_candidate(calibration, scored, MatchSource.TRIGGER, trigger_threshold))
    for c in outcome.candidates[: NO_MATCH_CANDIDATES + len(listed)]:
        if len(listed) >= NO_MATCH_CANDIDATES:
            break
        if all(item["pattern_name"] != c.definition.name for item in listed):
            threshold = registry.threshold(c.definition)
            listed.append(_describe_candidate(calibration, c, MatchSource.SEMANTIC, threshold))
    listed = listed[:NO_MATCH_CANDIDATES]
    metadata = {"execution_mode": mode.name, "candidates": json.dumps(listed, separators=(",", ":"))}
    if best is None:
        message = "no pattern matches this query"
    else:
        threshold = registry.threshold(best.definition)
        confidence = calibration.confidence(MatchSource.SEMANTIC.value, best.score)
        metadata.update(
            best_pattern_name=best.definition.name,
            best_score=f"{confidence:.6f}",
            best_raw_score=f"{best.score:.6f}",
            threshold=f"{threshold:.6f}",
            best_is_write=str(best.definition.is_write).lower(),
        )
        if best.definition.is_write and best.score >= threshold:
            message = (
                f"no pattern matches this query: the closest, {best.definition.name!r} "
                f"(similarity {best.score:.3f}), is a write, which runs only when its trigger or its name matches"
            )
        else:
            message = (
                f"no pattern matches this query: the closest, {best.definition.name!r}, scored "
                f"{best.score:.3f}, below its threshold {threshold:.3f}"
            )
    return NotFoundError(
        "PatternDefinition", outcome.normalized, message, reason="NO_PATTERN_MATCHED", metadata=metadata
    )


def _describe_candidate(
    calibration: RoutingCalibration, c: Candidate, source: MatchSource, threshold: float
) -> dict[str, Any]:
    return {
        "pattern_name": c.definition.name,
        "match_source": source.value,
        "confidence": round(calibration.confidence(source.value, c.score), 4),
        "raw_score": round(c.score, 4),
        "threshold": round(threshold, 4),
        "write": c.definition.is_write,
    }
