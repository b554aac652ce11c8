"""Confidence calibration: Platt scaling per match source, reliability bins, expected calibration error.

A raw score (the router's hybrid similarity, MatchPatterns' cosine) is not a
probability: its scale depends on the embedder and the pattern set. Platt
scaling (J. Platt, "Probabilistic Outputs for Support Vector Machines", 1999)
maps it through a fitted logistic curve, ``p = 1 / (1 + exp(-(a·s + b)))``,
with ``a`` and ``b`` chosen to maximise the likelihood of labelled outcomes
(was the decision right?). Platt's smoothed targets ``(n₊ + 1) / (n₊ + 2)`` and
``1 / (n₋ + 2)`` keep the fit finite on small or separable sets. One curve is
fitted per match source (a trigger match and a similarity match of the same
raw score are not equally likely to be right).

The expected calibration error (ECE) follows Guo et al., "On Calibration of
Modern Neural Networks" (ICML 2017): 10 equal-width confidence bins, the
count-weighted mean of ``|accuracy − mean confidence|`` per bin.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: Bins of the reliability diagram and the ECE.
ECE_BINS = 10


@dataclass(frozen=True, slots=True)
class PlattScaling:
    """``confidence = 1 / (1 + exp(-(slope · raw + intercept)))``.

    Attributes:
        slope: Weight of the raw score.
        intercept: Offset.
        sample_count: Outcomes the fit used (0 for shipped or default parameters).
    """

    slope: float
    intercept: float
    sample_count: int = 0

    def __call__(self, raw: float) -> float:
        """The calibrated confidence of ``raw``, in [0, 1]."""
        z = self.slope * raw + self.intercept
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)

    def to_dict(self) -> dict[str, float | int]:
        """JSON form (``slope``, ``intercept``, ``sample_count``)."""
        return {"slope": self.slope, "intercept": self.intercept, "sample_count": self.sample_count}

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> PlattScaling:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: A field is missing or not a number.
        """
        try:
            slope = float(raw["slope"])  # type: ignore[arg-type]
            intercept = float(raw["intercept"])  # type: ignore[arg-type]
            count = int(raw.get("sample_count", 0))  # type: ignore[call-overload]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a Platt scaling: {raw!r}") from exc
        if not (math.isfinite(slope) and math.isfinite(intercept)):
            raise ValueError("Platt parameters must be finite")
        return cls(slope, intercept, count)


def fit_platt(scores: Sequence[float], outcomes: Sequence[bool], *, iterations: int = 100) -> PlattScaling:
    """Fit Platt scaling by Newton's method on the log-likelihood (Platt's smoothed targets).

    Args:
        scores: Raw scores, one per decision.
        outcomes: Whether each decision was right.
        iterations: Newton steps at most (it converges in a handful).

    Returns:
        The fitted scaling. With no outcomes, the identity-like default
        ``slope 1, intercept 0``; with outcomes of one kind only, a flat curve
        at Platt's smoothed rate.

    Raises:
        ValueError: ``scores`` and ``outcomes`` differ in length.
    """
    if len(scores) != len(outcomes):
        raise ValueError("scores and outcomes differ in length")
    n = len(scores)
    if n == 0:
        return PlattScaling(1.0, 0.0, 0)
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(outcomes, dtype=bool)
    positives = int(y.sum())
    negatives = n - positives
    t = np.where(y, (positives + 1.0) / (positives + 2.0), 1.0 / (negatives + 2.0))
    if positives == 0 or negatives == 0 or float(x.std()) < 1e-12:
        rate = float(t.mean())
        return PlattScaling(0.0, math.log(rate / (1.0 - rate)), n)
    a, b = 0.0, math.log((positives + 1.0) / (negatives + 1.0))
    for _ in range(iterations):
        z = np.clip(a * x + b, -35.0, 35.0)
        p = 1.0 / (1.0 + np.exp(-z))
        w = np.maximum(p * (1.0 - p), 1e-12)
        grad_a, grad_b = float(((p - t) * x).sum()), float((p - t).sum())
        h_aa, h_ab, h_bb = float((w * x * x).sum()) + 1e-9, float((w * x).sum()), float(w.sum()) + 1e-9
        det = h_aa * h_bb - h_ab * h_ab
        if det <= 0:
            break
        step_a = (h_bb * grad_a - h_ab * grad_b) / det
        step_b = (h_aa * grad_b - h_ab * grad_a) / det
        a, b = a - step_a, b - step_b
        if abs(step_a) < 1e-9 and abs(step_b) < 1e-9:
            break
    return PlattScaling(float(a), float(b), n)


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    """One bin of a reliability diagram.

    Attributes:
        lower: Lower confidence bound (inclusive).
        upper: Upper confidence bound (exclusive, except 1.0 in the last bin).
        count: Decisions in the bin.
        mean_confidence: Their mean confidence (0 when empty).
        accuracy: Fraction of them that were right (0 when empty).
    """

    lower: float
    upper: float
    count: int
    mean_confidence: float
    accuracy: float


def reliability(confidences: Iterable[float], outcomes: Iterable[bool], bins: int = ECE_BINS) -> list[ReliabilityBin]:
    """Reliability diagram: decisions grouped into ``bins`` equal-width confidence bins.

    Args:
        confidences: Confidence of each decision, in [0, 1].
        outcomes: Whether each decision was right.
        bins: Number of bins.

    Returns:
        ``bins`` bins, lowest first (empty ones included).
    """
    conf = np.asarray(list(confidences), dtype=np.float64)
    right = np.asarray(list(outcomes), dtype=bool)
    index = np.minimum((conf * bins).astype(np.int64), bins - 1) if len(conf) else np.zeros(0, dtype=np.int64)
    out = []
    for k in range(bins):
        mask = index == k
        count = int(mask.sum())
        out.append(
            ReliabilityBin(
                lower=k / bins,
                upper=(k + 1) / bins,
                count=count,
                mean_confidence=float(conf[mask].mean()) if count else 0.0,
                accuracy=float(right[mask].mean()) if count else 0.0,
            )
        )
    return out


def expected_calibration_error(diagram: Sequence[ReliabilityBin]) -> float:
    """Count-weighted mean of ``|accuracy − mean confidence|`` over the bins (0 with no decisions)."""
    total = sum(b.count for b in diagram)
    if total == 0:
        return 0.0
    return sum(b.count * abs(b.accuracy - b.mean_confidence) for b in diagram) / total


@dataclass(frozen=True, slots=True)
class RoutingCalibration:
    """The router's Platt scaling per match source (``trigger``, ``semantic``, ``keyword``).

    A source without a fitted scaling is uncalibrated: its confidence is the
    raw score clipped to [0, 1]. An exact-name match always has confidence 1.

    Attributes:
        sources: Scaling by match source name.
    """

    sources: Mapping[str, PlattScaling]

    def confidence(self, source: str, raw: float) -> float:
        """Calibrated confidence of a decision of ``source`` with raw score ``raw``, in [0, 1]."""
        if source == "exact_name":
            return 1.0
        scaling = self.sources.get(source)
        if scaling is None:
            return min(1.0, max(0.0, raw))
        return scaling(raw)

    def to_dict(self) -> dict[str, dict[str, float | int]]:
        """JSON form: ``{source: {"slope", "intercept", "sample_count"}}``."""
        return {name: s.to_dict() for name, s in sorted(self.sources.items())}

    @classmethod
    def from_dict(cls, raw: Mapping[str, object] | None) -> RoutingCalibration:
        """Inverse of :meth:`to_dict` (``None`` or empty = uncalibrated).

        Raises:
            ValueError: An entry is not a scaling, or names an unknown source.
        """
        sources: dict[str, PlattScaling] = {}
        for name, value in (raw or {}).items():
            if name not in CALIBRATED_SOURCES:
                raise ValueError(f"unknown match source {name!r} in a calibration")
            if not isinstance(value, Mapping):
                raise ValueError(f"calibration of {name!r} is not an object")
            sources[name] = PlattScaling.from_dict(value)
        return cls(sources)


#: Match sources that have a fitted calibration (an exact name is always 1).
CALIBRATED_SOURCES = ("trigger", "semantic", "keyword")

#: No fitted calibration: confidence = raw score.
UNCALIBRATED = RoutingCalibration({})
