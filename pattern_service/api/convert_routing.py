"""Messages of ``EvaluateRouting`` and ``FitRouting`` to and from the engine's evaluation types."""

from __future__ import annotations

from collections.abc import Iterable

from pattern_service.engine.evaluation import Evaluation, Fit, LabelledUtterance
from tmws.pattern.v1 import pattern_execution_service_pb2 as pe


def utterances_from_proto(messages: Iterable[pe.LabelledUtterance]) -> list[LabelledUtterance]:
    """Labelled utterances (an empty ``expected_pattern_name`` = out of scope); queries already validated."""
    return [LabelledUtterance(m.query.strip(), m.expected_pattern_name or None) for m in messages]


def evaluation_to_proto(e: Evaluation, out: pe.RoutingEvaluation) -> None:
    """Fill ``out`` with ``e``."""
    out.utterance_count = e.utterance_count
    out.in_scope_count = e.in_scope_count
    out.out_of_scope_count = e.out_of_scope_count
    out.accuracy = e.accuracy
    out.in_scope_accuracy = e.in_scope_accuracy
    out.out_of_scope_precision = e.out_of_scope_precision
    out.out_of_scope_recall = e.out_of_scope_recall
    out.expected_calibration_error = e.expected_calibration_error
    out.guessed_write_count = e.guessed_write_count
    out.patterns.extend(
        pe.PatternEvaluation(
            pattern_name=p.pattern_name, precision=p.precision, recall=p.recall, f1=p.f1, support=p.support
        )
        for p in e.patterns
    )
    out.confusions.extend(
        pe.RoutingConfusion(
            expected_pattern_name=c.expected or "",
            predicted_pattern_name=c.predicted or "",
            count=c.count,
            examples=list(c.examples),
        )
        for c in e.confusions
    )
    out.calibration_bins.extend(
        pe.CalibrationBin(
            lower=b.lower, upper=b.upper, count=b.count, mean_confidence=b.mean_confidence, accuracy=b.accuracy
        )
        for b in e.calibration_bins
    )


def fit_to_proto(f: Fit) -> pe.FitRoutingResponse:
    """The ``FitRoutingResponse`` of a fit."""
    response = pe.FitRoutingResponse(registry_version=f.registry_version)
    evaluation_to_proto(f.before, response.before)
    evaluation_to_proto(f.after, response.after)
    for name in sorted(f.thresholds):
        change = pe.ThresholdChange(pattern_name=name, threshold=f.thresholds[name])
        previous = f.previous_thresholds.get(name)
        if previous is not None:
            change.previous_threshold = previous
        response.threshold_changes.append(change)
    response.calibration.extend(
        pe.SourceCalibration(match_source=source, slope=s.slope, intercept=s.intercept, sample_count=s.sample_count)
        for source, s in sorted(f.calibration.sources.items())
    )
    return response
