"""Routing evaluation and fitting on labelled utterances (semantic-router's ``evaluate`` and ``fit``).

``evaluate`` routes each labelled utterance with the router's own decision
(:meth:`HybridDecisionRouter.choose`: exact name, confirmed trigger,
similarity; without the opt-in keyword guess) and reports accuracy,
out-of-scope precision and recall, per-pattern precision / recall / F1, the
most confused pairs and the expected calibration error of the confidence.

``fit`` chooses, for every pattern that was the best similarity candidate of
at least ``MIN_FIT_SAMPLES`` utterances, the similarity threshold that routes
the most of those utterances right (a grid of 0.01 steps; of equally good
thresholds the middle one, so that it is not pressed against one example),
shrunk toward the global threshold as if that had been seen on
``PRIOR_SAMPLES`` more utterances, then fits Platt scaling per match source on the decisions those thresholds
give (:mod:`.calibration`). Both are applied in one registry change.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pattern_service.calibration import (
    PlattScaling,
    ReliabilityBin,
    RoutingCalibration,
    expected_calibration_error,
    fit_platt,
    reliability,
)
from pattern_service.domain import ExecutionMode, MatchSource, PatternDefinition
from pattern_service.engine.registry import MatchOutcome, PatternRegistry
from pattern_service.engine.router import HybridDecisionRouter
from pattern_service.errors import FieldViolation, InvalidArgumentError

#: Most confusions reported (every kind of error in practice).
MAX_CONFUSIONS = 10_000
#: Utterances a pattern must be the best candidate of before its threshold is fitted.
MIN_FIT_SAMPLES = 3
#: Weight, in utterances, of the global threshold in a pattern's fitted one (shrinkage).
PRIOR_SAMPLES = 10
_GRID = [round(0.05 + 0.01 * i, 2) for i in range(91)]  # 0.05 … 0.95


@dataclass(frozen=True, slots=True)
class LabelledUtterance:
    """A query and the pattern it should route to (``None`` = out of scope: no match)."""

    query: str
    expected: str | None


@dataclass(frozen=True, slots=True)
class PatternScore:
    """Precision, recall, F1 and support of one pattern."""

    pattern_name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True, slots=True)
class Confusion:
    """``count`` utterances expected as ``expected`` were routed to ``predicted`` (``None`` = no match)."""

    expected: str | None
    predicted: str | None
    count: int
    examples: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Routing quality on a labelled set (rates are fractions in [0, 1]); see ``RoutingEvaluation`` in the proto."""

    utterance_count: int
    in_scope_count: int
    out_of_scope_count: int
    accuracy: float
    in_scope_accuracy: float
    out_of_scope_precision: float
    out_of_scope_recall: float
    patterns: tuple[PatternScore, ...]
    confusions: tuple[Confusion, ...]
    expected_calibration_error: float
    calibration_bins: tuple[ReliabilityBin, ...]
    guessed_write_count: int


@dataclass(frozen=True, slots=True)
class Decision:
    """How one utterance was routed: pattern (``None`` = refused), source, raw score and confidence."""

    utterance: LabelledUtterance
    predicted: str | None
    source: MatchSource | None
    raw: float
    confidence: float
    is_write: bool

    @property
    def correct(self) -> bool:
        """Whether it was routed as labelled."""
        return self.predicted == self.utterance.expected


@dataclass(frozen=True, slots=True)
class Fit:
    """The result of :func:`fit`: evaluations before and after, thresholds and calibration."""

    before: Evaluation
    after: Evaluation
    thresholds: Mapping[str, float]
    previous_thresholds: Mapping[str, float | None]
    calibration: RoutingCalibration
    registry_version: int


def check_labels(registry: PatternRegistry, utterances: Sequence[LabelledUtterance], field: str) -> None:
    """Every expected pattern must be registered.

    Raises:
        InvalidArgumentError: One violation per unknown name (``<field>[i].expected_pattern_name``).
    """
    violations = [
        FieldViolation(f"{field}[{i}].expected_pattern_name", f"no pattern named {u.expected!r} is registered")
        for i, u in enumerate(utterances)
        if u.expected is not None and registry.get(u.expected) is None
    ]
    if violations:
        raise InvalidArgumentError(violations, f"{len(violations)} utterance(s) name unknown patterns")


async def _outcomes(registry: PatternRegistry, utterances: Sequence[LabelledUtterance]) -> list[MatchOutcome]:
    return [await registry.match(u.query, remember=False) for u in utterances]


def _decide(
    router: HybridDecisionRouter,
    outcomes: Sequence[MatchOutcome],
    utterances: Sequence[LabelledUtterance],
    mode: ExecutionMode,
    calibration: RoutingCalibration,
    threshold: Callable[[PatternDefinition], float] | None = None,
) -> list[Decision]:
    out = []
    for u, outcome in zip(utterances, outcomes, strict=True):
        choice = router.choose(outcome, mode, u.query, {}, threshold)
        if choice is None:
            out.append(Decision(u, None, None, 0.0, 0.0, False))
        else:
            confidence = calibration.confidence(choice.source.value, choice.raw)
            out.append(
                Decision(u, choice.definition.name, choice.source, choice.raw, confidence, choice.definition.is_write)
            )
    return out


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def summarize(decisions: Sequence[Decision]) -> Evaluation:
    """The :class:`Evaluation` of a list of decisions."""
    n = len(decisions)
    in_scope = [d for d in decisions if d.utterance.expected is not None]
    out_scope = [d for d in decisions if d.utterance.expected is None]
    refused = [d for d in decisions if d.predicted is None]
    names = sorted(
        {d.utterance.expected for d in in_scope if d.utterance.expected}
        | {d.predicted for d in decisions if d.predicted}
    )
    patterns = []
    for name in names:
        tp = sum(1 for d in decisions if d.predicted == name and d.utterance.expected == name)
        predicted = sum(1 for d in decisions if d.predicted == name)
        support = sum(1 for d in decisions if d.utterance.expected == name)
        precision, recall = _ratio(tp, predicted), _ratio(tp, support)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        patterns.append(PatternScore(name, precision, recall, f1, support))
    errors: Counter[tuple[str | None, str | None]] = Counter()
    samples: dict[tuple[str | None, str | None], list[str]] = defaultdict(list)
    for d in decisions:
        if not d.correct:
            key = (d.utterance.expected, d.predicted)
            errors[key] += 1
            if len(samples[key]) < 3:
                samples[key].append(d.utterance.query)
    confusions = tuple(
        Confusion(e, p, c, tuple(samples[(e, p)]))
        for (e, p), c in sorted(errors.items(), key=lambda kv: (-kv[1], kv[0][0] or "", kv[0][1] or ""))[
            :MAX_CONFUSIONS
        ]
    )
    taken = [d for d in decisions if d.predicted is not None]
    bins = reliability([d.confidence for d in taken], [d.correct for d in taken])
    return Evaluation(
        utterance_count=n,
        in_scope_count=len(in_scope),
        out_of_scope_count=len(out_scope),
        accuracy=_ratio(sum(d.correct for d in decisions), n),
        in_scope_accuracy=_ratio(sum(d.correct for d in in_scope), len(in_scope)),
        out_of_scope_precision=_ratio(sum(1 for d in refused if d.utterance.expected is None), len(refused)),
        out_of_scope_recall=_ratio(sum(1 for d in out_scope if d.predicted is None), len(out_scope)),
        patterns=tuple(patterns),
        confusions=confusions,
        expected_calibration_error=expected_calibration_error(bins),
        calibration_bins=tuple(bins),
        guessed_write_count=sum(
            1 for d in decisions if d.is_write and d.source in (MatchSource.SEMANTIC, MatchSource.KEYWORD)
        ),
    )


async def evaluate(
    router: HybridDecisionRouter,
    registry: PatternRegistry,
    utterances: Sequence[LabelledUtterance],
    mode: ExecutionMode = ExecutionMode.BALANCED,
) -> tuple[Evaluation, list[Decision]]:
    """Route every utterance (nothing executes) and summarize.

    Args:
        router: The router.
        registry: Its registry.
        utterances: Labelled utterances.
        mode: Execution mode.

    Returns:
        The evaluation and the per-utterance decisions.

    Raises:
        InvalidArgumentError: An utterance names an unknown pattern.
    """
    check_labels(registry, utterances, "utterances")
    outcomes = await _outcomes(registry, utterances)
    decisions = _decide(router, outcomes, utterances, mode, registry.calibration)
    return summarize(decisions), decisions


def _fit_threshold(samples: Sequence[tuple[float, bool, bool]]) -> float:
    """Best threshold for ``(score, labelled with this pattern, labelled out of scope)`` samples.

    A sample is right when accepted (score >= t) and labelled with this pattern,
    or refused and labelled out of scope; the grid threshold with the most
    right wins, the middle one of a run of equally good thresholds.
    """
    right = [sum(1 for s, own, oos in samples if (s >= t and own) or (s < t and oos)) for t in _GRID]
    best = max(right)
    runs: list[list[float]] = []
    for t, r in zip(_GRID, right, strict=True):
        if r == best:
            if runs and abs(runs[-1][-1] - (t - 0.01)) < 1e-9:
                runs[-1].append(t)
            else:
                runs.append([t])
    longest = max(runs, key=len)
    return round(longest[len(longest) // 2], 2)


async def fit(
    router: HybridDecisionRouter,
    registry: PatternRegistry,
    utterances: Sequence[LabelledUtterance],
    *,
    validate_only: bool = False,
) -> Fit:
    """Fit per-pattern thresholds and the calibration on ``utterances`` and apply them (see the module docstring).

    Args:
        router: The router.
        registry: Its registry (changed unless ``validate_only``).
        utterances: Labelled in-scope and out-of-scope utterances.
        validate_only: Compute and report only.

    Returns:
        The fit (``registry_version`` unchanged for ``validate_only``).

    Raises:
        InvalidArgumentError: An utterance names an unknown pattern.
    """
    check_labels(registry, utterances, "utterances")
    mode = ExecutionMode.BALANCED
    outcomes = await _outcomes(registry, utterances)
    before = summarize(_decide(router, outcomes, utterances, mode, registry.calibration))
    by_pattern: dict[str, list[tuple[float, bool, bool]]] = defaultdict(list)
    for u, outcome in zip(utterances, outcomes, strict=True):
        if router.pinned_choice(outcome, u.query, {}) is not None:
            continue  # chosen by name or trigger: no threshold to fit
        best = router.best_candidate(outcome, mode, u.query, {})
        if best is not None and not best.definition.is_write:
            by_pattern[best.definition.name].append(
                (best.score, u.expected == best.definition.name, u.expected is None)
            )
    # A pattern's own best threshold, shrunk toward the global one by its sample count: with the
    # handful of utterances a pattern gets, the raw optimum does not carry over to new queries
    # (on two halves of the bundled dev split it did worse than the global threshold alone).
    base = registry.semantic_threshold
    thresholds = {
        name: round((len(samples) * _fit_threshold(samples) + PRIOR_SAMPLES * base) / (len(samples) + PRIOR_SAMPLES), 2)
        for name, samples in by_pattern.items()
        if len(samples) >= MIN_FIT_SAMPLES
    }

    def fitted(d: PatternDefinition) -> float:
        return thresholds.get(d.name, registry.threshold(d))

    decisions = _decide(router, outcomes, utterances, mode, registry.calibration, fitted)
    sources: dict[str, PlattScaling] = dict(registry.calibration.sources)
    for source in (MatchSource.TRIGGER, MatchSource.SEMANTIC):
        taken = [d for d in decisions if d.source is source]
        if taken:
            sources[source.value] = fit_platt([d.raw for d in taken], [d.correct for d in taken])
    calibration = RoutingCalibration(sources)
    after = summarize(_decide(router, outcomes, utterances, mode, calibration, fitted))
    previous = {name: registry.get(name).similarity_threshold for name in thresholds}  # type: ignore[union-attr]
    version = registry.version
    if not validate_only:
        version = await registry.apply_fit(thresholds, calibration)
    return Fit(before, after, thresholds, previous, calibration, version)
