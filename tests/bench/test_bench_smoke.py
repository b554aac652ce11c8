"""Smoke test of the benchmark suite: the whole machinery at minimal size (never asserts on speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import PROFILES, scenario_levels
from bench.scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench-results")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--profile", "smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert (out / "latest.png").stat().st_size > 0
    assert len(list(out.glob("2*.json"))) == 1
    return json.loads((out / "latest.json").read_text(encoding="utf-8"))


def test_every_scenario_at_every_level_with_positive_ratios(smoke_results: dict) -> None:
    profile = PROFILES["smoke"]
    rows = {(r["scenario"], r["concurrency"]): r for r in smoke_results["scenarios"]}
    for s in SCENARIOS:
        levels = profile.streams if s.kind == "stream" else scenario_levels(s, profile)
        for c in levels:
            row = rows[(s.name, c)]
            assert row["service"]["errors"] == 0, row
            assert row["service"]["ok"] > 0 and row["echo"]["ok"] > 0, row
            assert isinstance(row["throughput_ratio"], float) and row["throughput_ratio"] > 0, row
    assert all(check["ok"] for check in smoke_results["checks"].values()), smoke_results["checks"]


def test_curves_targets_and_metrics_cost_are_reported(smoke_results: dict) -> None:
    curves = smoke_results["curves"]
    assert [p["items"] for p in curves["store"]] == list(PROFILES["smoke"].store_sizes)
    assert all(0.0 <= p["index_recall_at_10"] <= 1.0 for p in curves["store"])
    assert [p["patterns"] for p in curves["registry"]] == list(PROFILES["smoke"].registry_sizes)
    assert [p["window"] for p in curves["window"]["points"]] == list(PROFILES["smoke"].windows)
    assert smoke_results["metrics_logging"]["metrics_on_info"]["throughput"] > 0
    results = {t["result"] for t in smoke_results["targets"]}
    assert results <= {"PASS", "MISS", "N/A"}
    assert smoke_results["meta"]["duration_seconds"] > 0
