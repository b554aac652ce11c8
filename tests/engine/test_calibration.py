"""Platt scaling, reliability bins and the expected calibration error (pure functions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pattern_service.calibration import (
    UNCALIBRATED,
    PlattScaling,
    RoutingCalibration,
    expected_calibration_error,
    fit_platt,
    reliability,
)


def test_fit_platt_recovers_the_curve_that_generated_the_outcomes() -> None:
    rng = np.random.default_rng(3)
    truth = PlattScaling(12.0, -6.0)
    scores = rng.uniform(0.0, 1.0, 20_000)
    outcomes = rng.uniform(0.0, 1.0, scores.size) < np.array([truth(float(s)) for s in scores])
    fitted = fit_platt(scores.tolist(), outcomes.tolist())
    assert fitted.slope == pytest.approx(12.0, rel=0.1) and fitted.intercept == pytest.approx(-6.0, rel=0.1)
    assert fitted.sample_count == 20_000
    # Calibrated on its own data: the ECE of the fitted confidences is small, that of the raw scores is not.
    fitted_ece = expected_calibration_error(reliability([fitted(float(s)) for s in scores], outcomes.tolist()))
    raw_ece = expected_calibration_error(reliability(scores.tolist(), outcomes.tolist()))
    assert fitted_ece < 0.02 < raw_ece


def test_fit_platt_on_degenerate_sets_stays_finite() -> None:
    assert fit_platt([], []) == PlattScaling(1.0, 0.0, 0)
    all_right = fit_platt([0.2, 0.5, 0.9], [True, True, True])
    assert all_right.slope == 0.0 and all_right(0.1) == pytest.approx(4 / 5)  # Platt's target (n+1)/(n+2)
    separable = fit_platt([0.1, 0.2, 0.8, 0.9], [False, False, True, True])
    assert math.isfinite(separable.slope) and separable(0.9) > 0.5 > separable(0.1)
    with pytest.raises(ValueError):
        fit_platt([0.1], [True, False])


def test_reliability_bins_and_ece_by_hand() -> None:
    bins = reliability([0.05, 0.15, 0.95, 0.95, 1.0], [False, True, True, False, True])
    assert len(bins) == 10 and sum(b.count for b in bins) == 5
    assert (bins[0].count, bins[1].count, bins[9].count) == (1, 1, 3)  # 1.0 lands in the last bin
    assert bins[9].mean_confidence == pytest.approx((0.95 + 0.95 + 1.0) / 3)
    assert bins[9].accuracy == pytest.approx(2 / 3)
    expected = (1 * 0.05 + 1 * 0.85 + 3 * abs(2 / 3 - (2.9 / 3))) / 5
    assert expected_calibration_error(bins) == pytest.approx(expected)
    assert expected_calibration_error(reliability([], [])) == 0.0


def test_routing_calibration_round_trip_and_sources() -> None:
    calibration = RoutingCalibration(
        {"semantic": PlattScaling(9.5, -1.5, 157), "trigger": PlattScaling(18.0, -5.7, 48)}
    )
    assert RoutingCalibration.from_dict(calibration.to_dict()) == calibration
    assert calibration.confidence("exact_name", 0.0) == 1.0
    assert calibration.confidence("semantic", 0.4) == pytest.approx(1 / (1 + math.exp(-(9.5 * 0.4 - 1.5))))
    assert calibration.confidence("keyword", 0.7) == 0.7  # no fitted scaling: the raw score, clipped
    assert UNCALIBRATED.confidence("semantic", 1.7) == 1.0
    with pytest.raises(ValueError):
        RoutingCalibration.from_dict({"vibes": {"slope": 1, "intercept": 0}})
    with pytest.raises(ValueError):
        RoutingCalibration.from_dict({"semantic": {"slope": float("nan"), "intercept": 0}})
