"""Smoke test of ``scripts/load.py``: a few seconds at a low rate cover every RPC without an error.

Never asserts on speed: only that the script runs end to end (starts the
server, drives the mix, samples RSS, stops the server) and that its JSON
report lists every RPC with zero errors.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from process_helpers import REPO, server_env

ALL_RPCS = {
    "Execute",
    "ExecuteMany",
    "Route",
    "RegisterBatch",
    "ListPatternDefinitions",
    "DeletePatternDefinition",
    "GetStats",
    "MatchPatterns",
    "CreateSuccessPattern",
    "GetSuccessPattern",
    "ListSuccessPatterns",
    "UpdateSuccessPattern",
    "DeleteSuccessPattern",
    "RecordPatternOutcome",
}


async def test_load_script_covers_every_rpc_without_errors(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    args = [
        *("--duration", "5", "--rate", "20", "--warmup", "1", "--rss-interval", "1", "--timeline-interval", "2"),
        *("--embedder", "hashing", "--data-dir", str(tmp_path / "data"), "--out", str(out)),
    ]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "scripts" / "load.py"),
        *args,
        env=server_env(tmp_path / "data"),
        cwd=str(REPO),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(600):  # generous: server start and shutdown on a busy machine
        output, _ = await proc.communicate()
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text
    report = json.loads(out.read_text())

    assert report["errors_total"] == 0, report["first_errors"]
    assert report["requests_total"] > 0
    assert set(report["rpcs"]) == ALL_RPCS
    for rpc, entry in report["rpcs"].items():
        assert entry["count"] > 0 and entry["errors"] == 0, (rpc, entry)
        assert entry["latency_ms"]["p50"] <= entry["latency_ms"]["p99"], (rpc, entry)
    assert set(report["rpcs"]["Execute"]["operations"]) == {
        "Execute/cache_hit",
        "Execute/infrastructure",
        "Execute/memory_read",
        "Execute/memory_write",
        "Execute/hybrid",
    }
    assert report["rss"]["samples"] and report["rss"]["baseline_kb"] > 0
    rows = report["timeline"]  # one row per 2 s of send time, every request in one row
    assert len(rows) >= 3 and sum(r["requests"] for r in rows) == report["requests_total"]
    assert [r["start_s"] for r in rows] == [2.0 * i for i in range(len(rows))]
    assert all(r["errors"] == 0 and r["rss_mib"] > 0 for r in rows)
    assert any("server_cpu_pct" in r for r in rows)
    assert report["rss"]["libraries_end_kb"] > 0  # the interpreter's own libraries are mapped
    assert report["server"]["exit_code"] == 0, text
