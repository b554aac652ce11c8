"""The result chart (matplotlib, Agg backend): latency and throughput per scenario, and the scaling curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt


def _rows(results: dict[str, Any], c: int) -> list[dict[str, Any]]:
    return [r for r in results.get("scenarios", []) if r["concurrency"] == c]


def render(results: dict[str, Any], path: Path) -> None:
    """Draw six panels into ``path`` (PNG)."""
    fig, axes = plt.subplots(2, 3, figsize=(20, 11))
    meta = results.get("meta", {})
    fig.suptitle(
        f"Pattern Service benchmark ({meta.get('profile')}, {meta.get('started')}, {meta.get('cpus')} CPUs) "
        "— service vs bare grpc.aio echo in the same run",
        fontsize=13,
    )

    # 1. throughput at concurrency 8 (streams: 8 streams), service vs echo
    ax = axes[0][0]
    rows = _rows(results, 8)
    names = [r["scenario"] for r in rows]
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r["echo"]["throughput"] for r in rows], 0.4, label="echo", color="#bbbbbb")
    ax.bar([x + 0.2 for x in xs], [r["service"]["throughput"] for r in rows], 0.4, label="service", color="#1f77b4")
    for x, r in zip(xs, rows, strict=True):
        if r["throughput_ratio"] is not None:
            ax.text(
                x + 0.2,
                r["service"]["throughput"],
                f"{r['throughput_ratio']:.2f}×",
                ha="center",
                va="bottom",
                fontsize=8,
            )
    ax.set_xticks(list(xs), names, rotation=30, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("req/s (ExecuteMany: msg/s)")
    ax.set_title("Throughput at concurrency 8 (ratio to echo above bars)")
    ax.legend()

    # 2. latency percentiles at concurrency 1
    ax = axes[0][1]
    rows = [r for r in _rows(results, 1) if r["service"]["p50_ms"] is not None]
    names = [r["scenario"] for r in rows]
    xs = range(len(rows))
    for off, key, color in ((-0.27, "p50_ms", "#2ca02c"), (0.0, "p95_ms", "#ff7f0e"), (0.27, "p99_ms", "#d62728")):
        ax.bar([x + off for x in xs], [r["service"][key] for r in rows], 0.27, label=f"service {key[:3]}", color=color)
    ax.scatter(
        list(xs), [r["echo"]["p50_ms"] for r in rows], marker="_", s=400, color="black", label="echo p50", zorder=3
    )
    ax.set_xticks(list(xs), names, rotation=30, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("ms")
    ax.set_title("Latency at concurrency 1")
    ax.legend(fontsize=8)

    # 3. throughput against concurrency
    ax = axes[0][2]
    by: dict[str, list[tuple[int, float, float]]] = {}
    for r in results.get("scenarios", []):
        if r["unit"] == "req/s":
            by.setdefault(r["scenario"], []).append(
                (r["concurrency"], r["service"]["throughput"], r["echo"]["throughput"])
            )
    for name, pts in by.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    if by:
        first = sorted(next(iter(by.values())))
        ax.plot([p[0] for p in first], [p[2] for p in first], "k--", marker="x", label="echo (cache-hit size)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrency")
    ax.set_ylabel("req/s")
    ax.set_title("Throughput against concurrency")
    ax.legend(fontsize=7)

    curves = results.get("curves", {})
    # 4. registry scaling
    ax = axes[1][0]
    reg = curves.get("registry", [])
    if reg:
        n = [p["patterns"] for p in reg]
        ax.plot(
            n,
            [p["inprocess"]["trigger_match_us_mean"] for p in reg],
            marker="o",
            label="match, trigger hit (µs, in-process)",
        )
        ax.plot(
            n,
            [p["inprocess"]["semantic_match_us_mean"] for p in reg],
            marker="o",
            label="match, semantic (µs, in-process)",
        )
        ax.plot(n, [p["inprocess"]["cache_hit_us_mean"] for p in reg], marker="o", label="match cache hit (µs)")
        ax.plot(n, [p["route_trigger"]["p50_ms"] * 1000 for p in reg], marker="s", label="Route RPC p50, trigger (µs)")
        ax.plot(
            n, [p["route_semantic"]["p50_ms"] * 1000 for p in reg], marker="s", label="Route RPC p50, semantic (µs)"
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("registered patterns")
        ax.set_ylabel("µs")
        ax.legend(fontsize=7)
    ax.set_title("Match and route cost against registered patterns")

    # 5. store scaling
    ax = axes[1][1]
    store = curves.get("store", [])
    if store:
        n = [p["items"] for p in store]
        for key, label in (("execute_memory_recall", "recall (Execute)"), ("match_patterns", "MatchPatterns")):
            ax.plot(n, [p[key]["p50_ms"] for p in store], marker="o", label=f"{label} p50")
            ax.plot(n, [p[key]["p95_ms"] for p in store], marker="^", linestyle="--", label=f"{label} p95")
        for p in store:
            ax.annotate(
                f"recall@10 {p['index_recall_at_10']:.2f}", (p["items"], p["match_patterns"]["p95_ms"]), fontsize=8
            )
        ax.set_xscale("log")
        ax.set_xlabel("stored items (memories and success patterns each)")
        ax.set_ylabel("ms (concurrency 1)")
        ax.legend(fontsize=8)
    ax.set_title("Recall / MatchPatterns latency against stored items")

    # 6. window curve
    ax = axes[1][2]
    win = curves.get("window", {})
    pts = win.get("points", [])
    if pts:
        ax.plot([p["window"] for p in pts], [p["throughput"] for p in pts], marker="o", label="service, one stream")
        echo = win.get("echo")
        if echo:
            ax.axhline(echo["throughput"], color="black", linestyle="--", label="echo, one stream")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("TMWS_STREAM_WINDOW")
        ax.set_ylabel("results/s")
        ax.legend()
    ax.set_title("ExecuteMany (cache hits) against window size")

    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=90)
    plt.close(fig)
