"""Run the benchmark suite: ``python -m bench.run [--quick] [--out bench/results]``.

Everything runs on loopback with three kinds of processes: the service (``python -m pattern_service
serve``, embedded default: SQLite + qdrant-edge + MiniLM ONNX), the bare echo server
(:mod:`bench.echo`) and one load-generator process (:mod:`bench.loadgen`). Each scenario runs at
concurrency 1, 8 and 64 with a warm-up and several repetitions (echo and service alternate within
each repetition); the median is reported with its ratio to the echo server measured in the same run.
Then the scaling curves (registered patterns, stored items with recall@10 against exact search,
``ExecuteMany`` window), the metrics/logging cost, the targets (PASS/MISS), and the result files
``<out>/<timestamp>.json``, ``<out>/latest.json`` and ``<out>/latest.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import multiprocessing
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from bench import corpus
from bench.echo import REQUEST_ECHO
from bench.harness import EchoProcess, ServiceProcess
from bench.loadgen import Job, Summary, Target, run_job
from bench.scenarios import (
    EXEC,
    LEARN,
    SCENARIOS,
    TOOL_QUERIES,
    Scenario,
    cache_queries,
    register_batch,
    requests_for,
    stream_requests,
)
from bench.seed import exact_top10, index_recall_at_10, pattern_id, seed_store
from tmws.pattern.v1 import pattern_execution_service_pb2 as pe
from tmws.pattern.v1 import pattern_learning_service_pb2 as pl

log = logging.getLogger("bench")

RESPONSE_TYPES: dict[str, Any] = {
    "Execute": pe.ExecuteResponse,
    "Route": pe.RouteResponse,
    "ExecuteMany": pe.ExecuteManyResponse,
    "RegisterBatch": pe.RegisterBatchResponse,
    "MatchPatterns": pl.MatchPatternsResponse,
    "CreateSuccessPattern": pl.CreateSuccessPatternResponse,
}


@dataclass(frozen=True)
class Profile:
    """Sizes of one run (``full``, ``quick`` or the test's ``smoke``).

    Attributes:
        name: Profile name.
        concurrency: Concurrency levels of the unary scenarios.
        streams: Stream counts of ``ExecuteMany``.
        reps: Repetitions (median reported).
        batch_reps: Repetitions of ``RegisterBatch``.
        counts: Measured requests per window by scenario weight and concurrency.
        warmup: Warm-up requests per window by scenario weight and concurrency.
        stream_messages: Messages per ``ExecuteMany`` window (all streams).
        max_seconds: Deadline of one window.
        store_sizes: Stored items of the recall / MatchPatterns curve.
        main_size: Stored items while the main table runs (one of ``store_sizes``).
        registry_sizes: Registered patterns of the route curve (through the service).
        inprocess_sizes: Registered patterns of the in-process match-cost curve (includes ``registry_sizes``).
        windows: ``TMWS_STREAM_WINDOW`` values of the window curve.
        curve_count: Requests per curve point (concurrency 1).
        recall_queries: Queries of the recall@10 check.
        match_queries: Queries per in-process match measurement.
        toggle_reps: Repetitions of the metrics/logging comparison.
    """

    name: str
    concurrency: tuple[int, ...]
    streams: tuple[int, ...]
    reps: int
    batch_reps: int
    counts: dict[str, dict[int, int]]
    warmup: dict[str, dict[int, int]]
    stream_messages: int
    max_seconds: float
    store_sizes: tuple[int, ...]
    main_size: int
    registry_sizes: tuple[int, ...]
    inprocess_sizes: tuple[int, ...]
    windows: tuple[int, ...]
    curve_count: int
    recall_queries: int
    match_queries: int
    toggle_reps: int


PROFILES: dict[str, Profile] = {
    "full": Profile(
        name="full",
        concurrency=(1, 8, 64),
        streams=(1, 8),
        reps=3,
        batch_reps=2,
        counts={
            "fast": {1: 800, 8: 3000, 64: 4000},
            "slow": {1: 150, 8: 300, 64: 400},
            "batch": {1: 4, 8: 8, 64: 64},
        },
        warmup={"fast": {1: 100, 8: 300, 64: 500}, "slow": {1: 10, 8: 24, 64: 64}, "batch": {1: 1, 8: 1, 64: 1}},
        stream_messages=6000,
        max_seconds=12.0,
        store_sizes=(1_000, 10_000, 100_000),
        main_size=10_000,
        registry_sizes=(10, 100, 1_000, 10_000),
        inprocess_sizes=(10, 100, 1_000, 10_000),
        windows=(1, 4, 16, 64, 256),
        curve_count=200,
        recall_queries=50,
        match_queries=2000,
        toggle_reps=5,
    ),
    "quick": Profile(
        name="quick",
        concurrency=(1, 8, 64),
        streams=(1, 8),
        reps=3,
        batch_reps=1,
        counts={
            "fast": {1: 300, 8: 1200, 64: 1500},
            "slow": {1: 60, 8: 120, 64: 192},
            "batch": {1: 2, 8: 8, 64: 64},
        },
        warmup={"fast": {1: 50, 8: 100, 64: 200}, "slow": {1: 5, 8: 16, 64: 64}, "batch": {1: 1, 8: 1, 64: 1}},
        stream_messages=3000,
        max_seconds=8.0,
        store_sizes=(1_000, 10_000),
        main_size=10_000,
        registry_sizes=(10, 100, 1_000),
        inprocess_sizes=(10, 100, 1_000, 10_000),
        windows=(1, 16, 64, 256),
        curve_count=80,
        recall_queries=30,
        match_queries=1000,
        toggle_reps=3,
    ),
    "smoke": Profile(
        name="smoke",
        concurrency=(1, 8),
        streams=(1, 8),
        reps=1,
        batch_reps=1,
        counts={"fast": {1: 20, 8: 40}, "slow": {1: 4, 8: 8}, "batch": {1: 1, 8: 2}},
        warmup={"fast": {1: 5, 8: 8}, "slow": {1: 1, 8: 1}, "batch": {1: 0, 8: 0}},
        stream_messages=64,
        max_seconds=5.0,
        store_sizes=(200,),
        main_size=200,
        registry_sizes=(10, 50),
        inprocess_sizes=(10, 50),
        windows=(1, 16),
        curve_count=5,
        recall_queries=5,
        match_queries=50,
        toggle_reps=1,
    ),
}


@dataclass
class Bench:
    """State of one run.

    Attributes:
        profile: The sizes.
        work: Temporary directory (data dirs, logs).
        pool: The load-generator process.
        results: The JSON document being built.
    """

    profile: Profile
    work: Path
    pool: ProcessPoolExecutor
    results: dict[str, Any] = field(default_factory=dict)
    echo: EchoProcess | None = None
    responses: dict[tuple[str, str], bytes] = field(default_factory=dict)

    async def load(self, job: Job) -> dict[str, Summary]:
        """Run ``job`` in the load-generator process."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, run_job, job)

    def log_file(self, name: str) -> Path:
        """A log file in the work directory."""
        return self.work / f"{name}.log"


# ----------------------------------------------------------------------------- helpers


def _summary(s: Summary | None) -> dict[str, Any] | None:
    if s is None:
        return None
    d = dataclasses.asdict(s)
    for k in ("p50_ms", "p95_ms", "p99_ms", "throughput"):
        if d[k] is not None:
            d[k] = round(float(d[k]), 4 if k != "throughput" else 1)
    return d


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return round(a / b, 4)


async def _raw_unary(address: str, path: str, data: bytes, metadata: Sequence[tuple[str, str]] = ()) -> bytes:
    async with grpc.aio.insecure_channel(
        address, options=[("grpc.max_receive_message_length", 16 * 1024 * 1024)]
    ) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(path)
        reply: bytes = await call(data, metadata=tuple(metadata), timeout=300)
        return reply


async def _raw_stream(address: str, path: str, data: Sequence[bytes]) -> list[bytes]:
    async with grpc.aio.insecure_channel(address) as channel:
        method: grpc.aio.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(path)
        call = method(timeout=60)
        for d in data:
            await call.write(d)
        await call.done_writing()
        return [r async for r in call]


def _unique_pool_size(p: Profile, weight: str, levels: Sequence[int], reps: int) -> int:
    return sum(reps * (p.warmup[weight][c] + p.counts[weight][c]) for c in levels) + 16


# ----------------------------------------------------------------------------- main table


async def capture(b: Bench, svc: ServiceProcess, scenario: Scenario, requests: list[bytes]) -> dict[str, Any]:
    """Call the service for ``scenario`` a few times, keep its response for the echo server, check it.

    Returns:
        What was checked (``ok`` plus details).
    """
    meta = scenario.metadata
    if scenario.kind == "stream":
        replies = await _raw_stream(svc.address, scenario.path, requests[:32])
        replies = await _raw_stream(svc.address, scenario.path, requests[:32])  # now cached
        msgs = [pe.ExecuteManyResponse.FromString(r) for r in replies]
        reply = replies[-1]
        check = {"ok": all(m.HasField("result") and m.result.cache_hit for m in msgs), "responses": len(msgs)}
    else:
        if scenario.unique:
            await _raw_unary(svc.address, scenario.path, requests[-2], meta)
            reply = await _raw_unary(svc.address, scenario.path, requests[-1], meta)
        else:
            await _raw_unary(svc.address, scenario.path, requests[0], meta)
            reply = await _raw_unary(svc.address, scenario.path, requests[0], meta)
        msg = RESPONSE_TYPES[scenario.method].FromString(reply)
        check = _check(scenario.name, msg)
    b.responses[(scenario.method, scenario.name)] = reply
    check["response_bytes"] = len(reply)
    return check


def _check(name: str, msg: Any) -> dict[str, Any]:
    if isinstance(msg, pe.ExecuteResponse):
        r = msg.result
        if name.startswith("tool_"):
            pattern = TOOL_QUERIES[name.removeprefix("tool_")][1]
            ok = r.success and r.pattern_name == pattern and not r.cache_hit
            return {"ok": bool(ok), "pattern": r.pattern_name, "cache_hit": r.cache_hit, "success": r.success}
        expected = {
            "execute_cache_hit": (pe.PATTERN_TYPE_INFRASTRUCTURE, True),
            "execute_infrastructure": (pe.PATTERN_TYPE_INFRASTRUCTURE, False),
            "execute_memory_recall": (pe.PATTERN_TYPE_MEMORY, False),
            "execute_recall_repeated": (pe.PATTERN_TYPE_MEMORY, False),
            "execute_memory_store": (pe.PATTERN_TYPE_MEMORY, False),
            "execute_hybrid": (pe.PATTERN_TYPE_HYBRID, False),
        }[name]
        ok = r.success and r.pattern_type == expected[0] and r.cache_hit == expected[1]
        return {"ok": bool(ok), "pattern": r.pattern_name, "cache_hit": r.cache_hit, "success": r.success}
    if isinstance(msg, pe.RouteResponse):
        return {"ok": bool(msg.decision.pattern_name), "pattern": msg.decision.pattern_name}
    if isinstance(msg, pl.CreateSuccessPatternResponse):
        return {"ok": bool(msg.success_pattern.pattern_id), "pattern_id": msg.success_pattern.pattern_id}
    if isinstance(msg, pl.MatchPatternsResponse):
        return {"ok": msg.total_matches > 0, "matches": msg.total_matches}
    if isinstance(msg, pe.RegisterBatchResponse):
        return {"ok": len(msg.pattern_definitions) == 1000, "registered": len(msg.pattern_definitions)}
    return {"ok": False}


async def main_table(b: Bench, svc: ServiceProcess) -> None:
    """Every scenario at every concurrency against the echo server and the service."""
    p = b.profile
    pools: dict[str, list[bytes]] = {}
    checks: dict[str, Any] = {}
    for s in SCENARIOS:
        reps = p.batch_reps if s.weight == "batch" else p.reps
        pools[s.name] = requests_for(s, _unique_pool_size(p, s.weight, scenario_levels(s, p), reps) if s.unique else 0)
    # Capture everything but RegisterBatch (it changes the registry); the echo restarts for it.
    for s in SCENARIOS:
        if s.weight != "batch":
            checks[s.name] = await capture(b, svc, s, pools[s.name])
    b.echo = await EchoProcess(b.responses, b.work).start()
    rows: list[dict[str, Any]] = []
    for s in SCENARIOS:
        if s.weight == "batch":
            checks[s.name] = await capture(b, svc, s, pools[s.name])
            b.echo.stop()
            b.echo = await EchoProcess(b.responses, b.work).start()
        levels = p.streams if s.kind == "stream" else scenario_levels(s, p)
        reps = p.batch_reps if s.weight == "batch" else p.reps
        offset = 0
        for c in levels:
            if s.kind == "stream":
                count, warm = p.stream_messages, max(64, p.stream_messages // 10)
            else:
                count, warm = p.counts[s.weight][c], p.warmup[s.weight][c]
            targets = [Target("echo", b.echo.address, b.echo.pid), Target("service", svc.address, svc.pid)]
            if s.name == "execute_cache_hit":  # the second limit: an echo of the request bytes
                targets.insert(1, Target("echo_request", b.echo.address, b.echo.pid, f"/{REQUEST_ECHO}/Execute"))
            job = Job(
                scenario=s.name,
                method=s.path,
                kind=s.kind,
                requests=pools[s.name],
                targets=targets,
                concurrency=c,
                warmup=warm,
                count=count,
                max_seconds=p.max_seconds if s.weight != "batch" else 60.0,
                repetitions=reps,
                metadata=s.metadata,
                offset=offset,
                timeout=120.0,
            )
            offset += reps * (warm + count)
            res = await b.load(job)
            row = _row(s, c, res["service"], res["echo"])
            if "echo_request" in res:
                row["echo_request"] = _summary(res["echo_request"])
                row["throughput_ratio_request_echo"] = _ratio(res["service"].throughput, res["echo_request"].throughput)
            rows.append(row)
            _print_row(row)
    b.results["scenarios"] = rows
    b.results["checks"] = checks


def scenario_levels(s: Scenario, p: Profile) -> tuple[int, ...]:
    """Concurrency levels of a unary scenario: its own (if this profile has them) or the profile's."""
    own = tuple(c for c in s.levels if c in p.concurrency)
    return own or (p.concurrency if not s.levels else p.concurrency[-1:])


def _row(s: Scenario, c: int, svc: Summary, echo: Summary | None) -> dict[str, Any]:
    return {
        "scenario": s.name,
        "method": s.method,
        "description": s.description,
        "concurrency": c,
        "unit": "msg/s" if s.kind == "stream" else "req/s",
        "service": _summary(svc),
        "echo": _summary(echo),
        "throughput_ratio": _ratio(svc.throughput, echo.throughput if echo else None),
        "p50_ratio": _ratio(echo.p50_ms if echo else None, svc.p50_ms),
        "cpu_ratio": _ratio(echo.server_cpu_us_per_request if echo else None, svc.server_cpu_us_per_request),
    }


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


_HEADER = (
    f"{'scenario':<26}{'conc':>5}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'thr/s':>10}"
    f"{'echo p50':>10}{'echo thr':>10}{'ratio':>8}{'cpu us':>9}{'echo cpu':>9}{'cpu r':>7}{'err':>5}"
)


def _print_row(row: dict[str, Any]) -> None:
    s, e = row["service"], row["echo"] or {}
    print(
        f"{row['scenario']:<26}{row['concurrency']:>5}{_fmt(s['p50_ms']):>9}{_fmt(s['p95_ms']):>9}"
        f"{_fmt(s['p99_ms']):>9}{_fmt(s['throughput'], '.0f'):>10}{_fmt(e.get('p50_ms')):>10}"
        f"{_fmt(e.get('throughput'), '.0f'):>10}{_fmt(row['throughput_ratio'], '.3f'):>8}"
        f"{_fmt(s.get('server_cpu_us_per_request'), '.0f'):>9}{_fmt(e.get('server_cpu_us_per_request'), '.0f'):>9}"
        f"{_fmt(row.get('cpu_ratio'), '.2f'):>7}{s['errors']:>5}",
        flush=True,
    )


# ----------------------------------------------------------------------------- store curve


async def _match_recall_api(
    address: str, n: int, vectors: npt.NDArray[np.float32], queries: list[str], qvecs: npt.NDArray[np.float32]
) -> float:
    """recall@10 of ``MatchPatterns`` (through the API) against exact numpy top-10 over the seeded patterns."""
    overlaps = []
    for q, v in zip(queries, qvecs, strict=True):
        req = pl.MatchPatternsRequest(intent=q, limit=10, min_confidence=0.0).SerializeToString()
        reply = pl.MatchPatternsResponse.FromString(await _raw_unary(address, LEARN + "MatchPatterns", req))
        got = {m.pattern_id for m in reply.matched_patterns}
        exact = {pattern_id(i) for i in exact_top10(vectors, n, v)}
        overlaps.append(len(got & exact) / min(10, n))
    return float(np.mean(overlaps))


async def store_curve(b: Bench, sizes: Sequence[int], embedder: Any) -> None:
    """Recall and MatchPatterns latency (concurrency 1) at each store size; the main table runs at ``main_size``.

    The corpus vectors of a size are computed (or loaded from the cache) just before it is seeded, so
    the largest size's embedding work comes last.
    """
    p = b.profile
    data_dir = b.work / "store"
    queries = corpus.query_texts(p.recall_queries, seed=99)
    qvecs = embedder.embed_sync(queries)
    points: list[dict[str, Any]] = b.results["curves"].setdefault("store", [])
    for size in sizes:
        t0 = time.perf_counter()
        vectors = corpus.vectors(size, embedder=embedder)
        b.results["meta"].setdefault("corpus_vectors_seconds", {})[str(size)] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        counts = await seed_store(data_dir, size, vectors)
        seed_s = time.perf_counter() - t0
        index_recall = await index_recall_at_10(data_dir, size, vectors, qvecs)
        print(
            f"store size {size}: seeded in {seed_s:.1f} s (index points {counts}); "
            f"index recall@10 {index_recall['recall_at_10']:.3f} "
            f"({index_recall['graph_points']} points in HNSW graphs, opened in {index_recall['open_seconds']:.1f} s)",
            flush=True,
        )
        svc = await ServiceProcess(data_dir, log_file=b.log_file(f"service-store-{size}")).start()
        try:
            api_recall = await _match_recall_api(svc.address, size, vectors, queries, qvecs)
            point: dict[str, Any] = {
                "items": size,
                "seed_seconds": round(seed_s, 1),
                "server_start_seconds": round(svc.start_seconds, 2),
                "index_recall_at_10": round(index_recall["recall_at_10"], 4),
                "match_patterns_recall_at_10": round(api_recall, 4),
                "recall_queries": index_recall["queries"],
                "index_search_ms_mean": round(index_recall["index_ms_mean"], 3),
                "numpy_exact_ms_mean": round(index_recall["numpy_ms_mean"], 3),
                "index_open_seconds": round(index_recall["open_seconds"], 1),
                "hnsw_graph_points": index_recall["graph_points"],
            }
            # The curve's requests come after every one the main table uses (it runs on this server next),
            # so that none of its queries finds its embedding cached (uncached scenarios must stay uncached).
            main_pool = _unique_pool_size(p, "slow", p.concurrency, p.reps)
            for name in ("execute_memory_recall", "match_patterns"):
                s = next(x for x in SCENARIOS if x.name == name)
                reqs = requests_for(s, main_pool + p.reps * (p.curve_count + 5) + 16)[main_pool:]
                res = await b.load(
                    Job(
                        scenario=f"{name}_curve",
                        method=s.path,
                        kind="unary",
                        requests=reqs,
                        targets=[Target("service", svc.address, svc.pid)],
                        concurrency=1,
                        warmup=5,
                        count=p.curve_count,
                        max_seconds=p.max_seconds * 2,
                        repetitions=p.reps,
                    )
                )
                point[name] = _summary(res["service"])
            print(
                f"  recall p50/p95 {point['execute_memory_recall']['p50_ms']:.2f}/"
                f"{point['execute_memory_recall']['p95_ms']:.2f} ms, MatchPatterns p50/p95 "
                f"{point['match_patterns']['p50_ms']:.2f}/{point['match_patterns']['p95_ms']:.2f} ms, "
                f"MatchPatterns recall@10 {api_recall:.3f}",
                flush=True,
            )
            points.append(point)
            if size == p.main_size:
                before = corpus.embedding_rate(embedder)
                print("\n" + _HEADER, flush=True)
                await main_table(b, svc)
                after = corpus.embedding_rate(embedder)
                b.results["model"] = {
                    "texts_per_s": round((before + after) / 2, 1),
                    "before_main_table": round(before, 1),
                    "after_main_table": round(after, 1),
                    "what": "the service's int8 MiniLM alone (no server, no cache), jobs of 16 texts on 2 threads",
                }
                print(f"model alone: {before:.0f} texts/s before the main table, {after:.0f} after", flush=True)
                print(flush=True)
                await hybrid_pairs(b, svc, main_pool + p.reps * (p.curve_count + 5) + 16)
        finally:
            svc.stop()


async def hybrid_pairs(b: Bench, svc: ServiceProcess, first: int) -> None:
    """Hybrid against memory recall at concurrency 1 in alternating windows on one server.

    The hybrid target compares two latencies. The main table measures them minutes apart,
    over which this machine's speed drifts by more than the 2 ms margin. Here each round
    runs one window of each, in alternating order, on fresh queries (request indexes from
    ``first``: after the main table's and the store curve's). The medians over rounds, and
    the median of the per-round p95 differences, go to ``results["paired"]``.
    """
    p = b.profile
    rounds = 2 * p.reps
    count = p.curve_count
    recall = next(x for x in SCENARIOS if x.name == "execute_memory_recall")
    hybrid = next(x for x in SCENARIOS if x.name == "execute_hybrid")
    pools = {s.name: requests_for(s, first + rounds * (count + 5))[first:] for s in (recall, hybrid)}
    windows: dict[str, list[Summary]] = {recall.name: [], hybrid.name: []}
    for r in range(rounds):
        order = (recall, hybrid) if r % 2 == 0 else (hybrid, recall)
        for s in order:
            job = Job(
                scenario=f"{s.name}_paired",
                method=s.path,
                kind="unary",
                requests=pools[s.name],
                targets=[Target("service", svc.address, svc.pid)],
                concurrency=1,
                warmup=5,
                count=count,
                max_seconds=p.max_seconds * 2,
                repetitions=1,
                offset=r * (count + 5),
            )
            windows[s.name].append((await b.load(job))["service"])

    def med(name: str, key: str) -> float | None:
        values = [getattr(w, key) for w in windows[name] if getattr(w, key) is not None]
        return round(statistics.median(values), 4) if values else None

    deltas = [
        h.p95_ms - m.p95_ms
        for h, m in zip(windows[hybrid.name], windows[recall.name], strict=True)
        if h.p95_ms is not None and m.p95_ms is not None
    ]
    out: dict[str, Any] = {
        "rounds": rounds,
        "requests_per_window": count,
        "memory_recall": {k: med(recall.name, k) for k in ("p50_ms", "p95_ms", "throughput")},
        "hybrid": {k: med(hybrid.name, k) for k in ("p50_ms", "p95_ms", "throughput")},
        "p95_delta_ms_median": round(statistics.median(deltas), 4) if deltas else None,
        "p95_deltas_ms": [round(d, 3) for d in deltas],
    }
    b.results.setdefault("paired", {})["hybrid_vs_recall"] = out
    print(
        f"hybrid vs recall, alternating windows (c=1, {rounds} rounds): recall p50/p95 "
        f"{out['memory_recall']['p50_ms']}/{out['memory_recall']['p95_ms']} ms, hybrid p50/p95 "
        f"{out['hybrid']['p50_ms']}/{out['hybrid']['p95_ms']} ms, p95 difference (median of rounds) "
        f"{out['p95_delta_ms_median']} ms",
        flush=True,
    )


# ----------------------------------------------------------------------------- registry curve


class _PrefilledEmbedder:
    """Hashing embedder with a text → vector cache, so timed matches exclude embedding."""

    def __init__(self) -> None:
        from pattern_service.store.embeddings import HashingEmbedder

        self._inner = HashingEmbedder()
        self.model_id = self._inner.model_id
        self.dimension = self._inner.dimension
        self._cache: dict[str, npt.NDArray[np.float32]] = {}

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, t in enumerate(texts):
            v = self._cache.get(t)
            if v is None:
                v = self._cache[t] = self._inner.embed_one(t)
            out[i] = v
        return out


async def registry_inprocess(b: Bench) -> list[dict[str, Any]]:
    """Match cost of :class:`PatternRegistry` in this process at each registry size (µs per call).

    Trigger hits and semantic matches are timed on fresh queries (match-cache misses; the query
    vectors are precomputed, so the semantic time is the scan over the example matrix, not the
    model); the cache hit repeats one query. The embedder is the hashing one: the scan costs the
    same for any 384-d vectors.
    """
    from pattern_service.api.convert import definition_from_proto
    from pattern_service.domain import PatternType
    from pattern_service.engine.builtin_tools import register_builtin_tools
    from pattern_service.engine.registry import PatternRegistry
    from pattern_service.engine.scoring import single_threaded_blas
    from pattern_service.engine.tools import ToolRegistry
    from pattern_service.store.db import Database, aupgrade_to_head
    from pattern_service.store.definitions import SqlPatternDefinitionStore

    single_threaded_blas()  # as the server process does (pattern_service.server.run)
    p = b.profile
    d = b.work / "registry-inprocess"
    d.mkdir(parents=True, exist_ok=True)
    url = f"sqlite+aiosqlite:///{(d / 'registry.db').resolve()}"
    await aupgrade_to_head(url)
    db = Database(url)
    tools = ToolRegistry()
    register_builtin_tools(tools)
    embedder = _PrefilledEmbedder()
    registry = PatternRegistry(SqlPatternDefinitionStore(db), embedder, tools, load_defaults=False)
    await registry.load()
    rng = np.random.default_rng(5)
    out: list[dict[str, Any]] = []
    registered = 0
    try:
        for n in p.inprocess_sizes:
            while registered < n:
                stop = min(n, registered + 1000)
                batch = pe.RegisterBatchRequest.FromString(register_batch(registered, stop)).pattern_definitions
                await registry.register_batch(
                    [definition_from_proto(m, PatternType.INFRASTRUCTURE, default_cache_ttl=300) for m in batch]
                )
                registered = stop
            q = p.match_queries
            trig = [f"please run zq{int(rng.integers(n))}x for case {n}-{k}" for k in range(q)]
            sem = [f"{t} ({n}-{k})" for k, t in enumerate(corpus.query_texts(q, seed=1000 + n))]
            await embedder.embed([" ".join(t.lower().split()) for t in sem])
            timings: dict[str, list[float]] = {"trigger": [], "semantic": []}
            for kind, texts in (("trigger", trig), ("semantic", sem)):
                budget = time.perf_counter() + 5.0  # bounded in time as well as count
                for t in texts:
                    if time.perf_counter() > budget and len(timings[kind]) >= 20:
                        break
                    t0 = time.perf_counter()
                    outcome = await registry.match(t)
                    timings[kind].append((time.perf_counter() - t0) * 1e6)
                    if kind == "trigger" and not outcome.triggers:
                        raise RuntimeError(f"trigger query did not match: {t}")
            await registry.match(trig[0])
            reps = 20_000
            t0 = time.perf_counter()
            for _ in range(reps):
                await registry.match(trig[0])
            hit_us = (time.perf_counter() - t0) * 1e6 / reps
            point = {
                "patterns": n,
                "queries": {k: len(v) for k, v in timings.items()},
                "trigger_match_us_mean": round(statistics.fmean(timings["trigger"]), 2),
                "trigger_match_us_p50": round(statistics.median(timings["trigger"]), 2),
                "semantic_match_us_mean": round(statistics.fmean(timings["semantic"]), 2),
                "semantic_match_us_p50": round(statistics.median(timings["semantic"]), 2),
                "cache_hit_us_mean": round(hit_us, 3),
            }
            print(
                f"registry {n:>6} patterns (in-process): trigger {point['trigger_match_us_mean']:.1f} µs, "
                f"semantic {point['semantic_match_us_mean']:.1f} µs, cache hit {hit_us:.2f} µs",
                flush=True,
            )
            out.append(point)
    finally:
        await db.dispose()
    return out


async def registry_curve(b: Bench) -> None:
    """Route latency through the service (concurrency 1) with N registered patterns, plus in-process match cost."""
    p = b.profile
    data_dir = b.work / "registry"
    svc = await ServiceProcess(
        data_dir, env={"TMWS_LOAD_DEFAULT_PATTERNS": "false"}, log_file=b.log_file("service-registry")
    ).start()
    points: list[dict[str, Any]] = []
    rng = np.random.default_rng(3)
    registered = 0
    try:
        for n in p.registry_sizes:
            reg_s: list[float] = []
            while registered < n:
                stop = min(n, registered + 1000)
                t0 = time.perf_counter()
                await _raw_unary(svc.address, EXEC + "RegisterBatch", register_batch(registered, stop))
                reg_s.append(time.perf_counter() - t0)
                registered = stop
            point: dict[str, Any] = {"patterns": n, "register_batches_seconds": [round(x, 3) for x in reg_s]}
            count = p.curve_count * 2
            total = p.reps * (count + 5) + 16
            # A trigger is confirmed only for a query in the registry's domain: name the pattern's topic too.
            picks = [int(rng.integers(n)) for _ in range(total)]
            trig = [
                pe.RouteRequest(
                    query=f"please run zq{j}x for {corpus.item(j).description} ({n}-{k})"
                ).SerializeToString()
                for k, j in enumerate(picks)
            ]
            sem = [
                pe.RouteRequest(query=f"{t} ({n}-{k})").SerializeToString()
                for k, t in enumerate(corpus.query_texts(total, seed=2000 + n))
            ]
            for kind, reqs in (("route_trigger", trig), ("route_semantic", sem)):
                res = await b.load(
                    Job(
                        scenario=kind,
                        method=EXEC + "Route",
                        kind="unary",
                        requests=reqs,
                        targets=[Target("service", svc.address, svc.pid)],
                        concurrency=1,
                        warmup=5,
                        count=count,
                        max_seconds=p.max_seconds * 2,
                        repetitions=p.reps,
                    )
                )
                point[kind] = _summary(res["service"])
            print(
                f"registry {n:>6} patterns (Route RPC, c=1): trigger p50 {point['route_trigger']['p50_ms']:.2f} ms, "
                f"semantic p50 {point['route_semantic']['p50_ms']:.2f} ms (semantic errors "
                f"{point['route_semantic']['errors']}: NOT_FOUND when nothing is close enough)",
                flush=True,
            )
            points.append(point)
    finally:
        svc.stop()
    inproc = await registry_inprocess(b)
    by_n = {ip["patterns"]: ip for ip in inproc}
    for point in points:
        point["inprocess"] = by_n.get(point["patterns"])
    b.results["curves"]["registry"] = points
    b.results["curves"]["registry_inprocess"] = inproc


# ----------------------------------------------------------------------------- toggles and windows


@contextlib.contextmanager
def _stopping(procs: list[ServiceProcess]) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in procs:
            proc.stop()


async def metrics_logging_cost(b: Bench) -> None:
    """Cache-hit Execute (concurrency 8) on four servers: metrics endpoint on/off × log level INFO/WARNING."""
    p = b.profile
    configs = {
        "metrics_on_info": (True, "INFO"),
        "metrics_off_info": (False, "INFO"),
        "metrics_on_warning": (True, "WARNING"),
        "metrics_off_warning": (False, "WARNING"),
    }
    procs = {
        name: ServiceProcess(b.work / f"toggle-{name}", metrics=m, log_level=lvl, log_file=b.log_file(name))
        for name, (m, lvl) in configs.items()
    }
    with _stopping(list(procs.values())):
        await asyncio.gather(*(proc.start() for proc in procs.values()))
        s = SCENARIOS[0]
        c = 8 if 8 in p.concurrency else p.concurrency[-1]
        res = await b.load(
            Job(
                scenario=s.name,
                method=s.path,
                kind="unary",
                requests=requests_for(s, 0),
                targets=[Target(name, proc.address, proc.pid) for name, proc in procs.items()],
                concurrency=c,
                warmup=p.warmup["fast"][c],
                count=p.counts["fast"][c],
                max_seconds=p.max_seconds,
                repetitions=p.toggle_reps,
            )
        )
    out: dict[str, Any] = {name: _summary(res[name]) for name in configs}
    base = res["metrics_off_warning"].throughput
    out["cost_fraction"] = {name: round(1 - res[name].throughput / base, 4) if base else None for name in configs}
    out["note"] = (
        "TMWS_METRICS_ADDRESS only starts/stops the /metrics HTTP endpoint; the counters and histograms "
        "are recorded on every call either way (pattern_service/api/execution.py _execute)."
    )
    for name in configs:
        print(f"{name:<22} {res[name].throughput:8.0f} req/s  cost vs off+WARNING {out['cost_fraction'][name]:+.3f}")
    b.results["metrics_logging"] = out


async def window_curve(b: Bench) -> None:
    """``ExecuteMany`` (one stream, cache hits) throughput against ``TMWS_STREAM_WINDOW``."""
    p = b.profile
    procs = {
        w: ServiceProcess(
            b.work / f"window-{w}", env={"TMWS_STREAM_WINDOW": str(w)}, log_file=b.log_file(f"window-{w}")
        )
        for w in p.windows
    }
    with _stopping(list(procs.values())):
        await asyncio.gather(*(proc.start() for proc in procs.values()))
        targets = [Target(f"window_{w}", proc.address, proc.pid) for w, proc in procs.items()]
        if b.echo is not None:
            targets.append(Target("echo", b.echo.address, b.echo.pid))
        reqs = stream_requests(cache_queries())
        for proc in procs.values():  # warm the result caches
            await _raw_stream(proc.address, EXEC + "ExecuteMany", reqs[:32])
        res = await b.load(
            Job(
                scenario="execute_many_cache_hit",
                method=EXEC + "ExecuteMany",
                kind="stream",
                requests=reqs,
                targets=targets,
                concurrency=1,
                warmup=max(64, p.stream_messages // 10),
                count=p.stream_messages,
                max_seconds=p.max_seconds,
                repetitions=p.reps,
            )
        )
    points = [{"window": w, **(_summary(res[f"window_{w}"]) or {})} for w in p.windows]
    for pt in points:
        print(f"ExecuteMany window {pt['window']:>4}: {pt['throughput']:8.0f} msg/s")
    b.results["curves"]["window"] = {"points": points, "echo": _summary(res.get("echo"))}


# ----------------------------------------------------------------------------- targets


def _find(rows: list[dict[str, Any]], name: str, c: int) -> dict[str, Any] | None:
    return next((r for r in rows if r["scenario"] == name and r["concurrency"] == c), None)


def _target(
    tid: str, text: str, value: float | None, limit: float, op: str, unit: str = "", note: str = ""
) -> dict[str, Any]:
    passed = None if value is None else (value >= limit if op == ">=" else value <= limit)
    return {
        "id": tid,
        "target": text,
        "value": None if value is None else round(value, 4),
        "limit": round(limit, 4),
        "op": op,
        "unit": unit,
        "result": "N/A" if passed is None else ("PASS" if passed else "MISS"),
        "note": note,
    }


def evaluate_targets(r: dict[str, Any], p: Profile) -> list[dict[str, Any]]:
    """Every target of the issue, PASS / MISS (or N/A when this profile does not measure it)."""
    rows = r.get("scenarios", [])
    c8 = 8 if 8 in p.concurrency else p.concurrency[-1]
    out: list[dict[str, Any]] = []

    def ratio(name: str, c: int) -> float | None:
        row = _find(rows, name, c)
        return row["throughput_ratio"] if row else None

    def cpu(name: str, c: int) -> str:
        row = _find(rows, name, c)
        if not row:
            return ""
        svc, echo = (
            row["service"].get("server_cpu_us_per_request"),
            (row["echo"] or {}).get("server_cpu_us_per_request"),
        )
        return f"server CPU per call: service {_fmt(svc, '.0f')} µs, echo {_fmt(echo, '.0f')} µs"

    def thr(name: str, c: int) -> float | None:
        row = _find(rows, name, c)
        return row["service"]["throughput"] if row else None

    hit1 = _find(rows, "execute_cache_hit", 1)
    hit8 = _find(rows, "execute_cache_hit", c8)
    out.append(
        _target(
            "cache_hit_throughput",
            "Execute cache hit ≥ 0.75× echo of a captured response (c=8)",
            ratio("execute_cache_hit", c8),
            0.75,
            ">=",
            "×",
            note=cpu("execute_cache_hit", c8),
        )
    )
    if hit8 and hit8.get("echo_request"):
        out.append(
            _target(
                "cache_hit_vs_request_echo",
                "Execute cache hit ≥ 0.75× echo of the request bytes (c=8)",
                hit8.get("throughput_ratio_request_echo"),
                0.75,
                ">=",
                "×",
                note=f"request echo {_fmt(hit8['echo_request']['throughput'], '.0f')}/s, server CPU per call "
                f"{_fmt(hit8['echo_request'].get('server_cpu_us_per_request'), '.0f')} µs",
            )
        )
    if hit1:
        delta = hit1["service"]["p50_ms"] - hit1["echo"]["p50_ms"]
        out.append(
            _target(
                "cache_hit_p50", "Execute cache hit p50 (c=1) ≤ echo p50 + 0.3 ms", delta, 0.3, "<=", "ms over echo"
            )
        )
    out.append(
        _target(
            "recall_repeated_throughput",
            f"memory recall, one repeated query, use_cache=false, {p.main_size:,} memories ≥ 0.35× echo (c=8)",
            ratio("execute_recall_repeated", c8),
            0.35,
            ">=",
            "×",
            note=cpu("execute_recall_repeated", c8),
        )
    )
    model = r.get("model", {}).get("texts_per_s")
    for name, label, limit in (
        ("execute_memory_recall", "memory recall, distinct queries", 0.4),
        ("match_patterns", "MatchPatterns, distinct intents", 0.4),
        ("execute_memory_store", "memory store (Execute)", 0.3),
        ("create_success_pattern", "CreateSuccessPattern", 0.3),
    ):
        value = thr(name, c8)
        out.append(
            _target(
                f"{name}_vs_model",
                f"{label}, {p.main_size:,} items ≥ {limit}× the model's own texts/s (c=8)",
                None if value is None or not model else value / model,
                limit,
                ">=",
                "× model",
                note=f"{_fmt(value, '.0f')}/s vs model {_fmt(model, '.0f')} texts/s; " + cpu(name, c8),
            )
        )
    for tool in TOOL_QUERIES:
        name = f"tool_{tool}"
        c = scenario_levels(next(s for s in SCENARIOS if s.name == name), p)[0]
        out.append(
            _target(
                f"{name}_throughput",
                f"built-in tool {tool}, uncached ≥ 0.6× echo (c={c})",
                ratio(name, c),
                0.6,
                ">=",
                "×",
                note=cpu(name, c),
            )
        )
    store = {pt["items"]: pt for pt in r.get("curves", {}).get("store", [])}
    for size, limit in ((10_000, 15.0), (100_000, 25.0)):
        pt = store.get(size)
        for key, label in (("execute_memory_recall", "memory recall"), ("match_patterns", "MatchPatterns")):
            value = pt[key]["p95_ms"] if pt else None
            out.append(
                _target(
                    f"{key}_p95_{size}",
                    f"{label} p95 (c=1) with {size:,} items ≤ {limit:.0f} ms",
                    value,
                    limit,
                    "<=",
                    "ms",
                )
            )
    paired = r.get("paired", {}).get("hybrid_vs_recall")
    hyb, mem = _find(rows, "execute_hybrid", 1), _find(rows, "execute_memory_recall", 1)
    if paired and paired.get("p95_delta_ms_median") is not None:
        out.append(
            _target(
                "hybrid_p95",
                "hybrid p95 ≤ memory recall p95 + 2 ms (c=1, alternating windows)",
                paired["p95_delta_ms_median"],
                2.0,
                "<=",
                "ms over memory",
                note="main table (minutes apart): "
                + (_fmt(hyb["service"]["p95_ms"] - mem["service"]["p95_ms"], ".2f") + " ms" if hyb and mem else "n/a"),
            )
        )
    elif hyb and mem:
        out.append(
            _target(
                "hybrid_p95",
                "hybrid p95 ≤ memory recall p95 + 2 ms (c=1)",
                hyb["service"]["p95_ms"] - mem["service"]["p95_ms"],
                2.0,
                "<=",
                "ms over memory",
            )
        )
    many8 = _find(rows, "execute_many_cache_hit", 8)
    unary8 = _find(rows, "execute_cache_hit", c8)
    if many8 and unary8:
        out.append(
            _target(
                "execute_many_vs_unary",
                "ExecuteMany cache hits (8 streams) ≥ 2× unary Execute cache hit results/s (c=8)",
                many8["service"]["throughput"] / unary8["service"]["throughput"],
                2.0,
                ">=",
                "×",
                note="one stream: "
                + _fmt(
                    (_find(rows, "execute_many_cache_hit", 1) or {"service": {"throughput": 0}})["service"][
                        "throughput"
                    ]
                    / unary8["service"]["throughput"],
                    ".2f",
                )
                + "×",
            )
        )
    reg = r.get("curves", {}).get("registry_inprocess", [])
    small = next((pt for pt in reg if pt["patterns"] == 10), None)
    big = next((pt for pt in reg if pt["patterns"] == 10_000), None)
    for kind in ("trigger", "semantic"):
        value = None
        if small and big:
            value = big[f"{kind}_match_us_mean"] / small[f"{kind}_match_us_mean"]
        out.append(
            _target(
                f"match_scaling_{kind}", f"{kind} match cost with 10,000 patterns ≤ 10× with 10", value, 10.0, "<=", "×"
            )
        )
    if reg:
        worst = max(pt["cache_hit_us_mean"] for pt in reg)
        out.append(_target("match_cache_hit", "match cache hit < 20 µs", worst, 20.0, "<=", "µs"))
    ml = r.get("metrics_logging")
    if ml:
        out.append(
            _target(
                "metrics_logging_cost",
                "metrics and logging on: cost ≤ 10% of throughput (c=8, vs metrics off + WARNING)",
                ml["cost_fraction"]["metrics_on_info"],
                0.10,
                "<=",
                "fraction",
            )
        )
    return out


# ----------------------------------------------------------------------------- run


async def run(profile: Profile, out_dir: Path, keep: bool = False) -> dict[str, Any]:
    """Run the whole suite and write the result files; returns the result document."""
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="pattern-bench-"))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    b = Bench(profile=profile, work=work, pool=pool)
    b.results = {
        "meta": {
            "profile": profile.name,
            "started": stamp,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": multiprocessing.cpu_count(),
            "grpc": grpc.__version__,
            "work_dir": str(work),
            "notes": [
                "Every ratio compares with the bare grpc.aio echo server measured in the same run, "
                "alternating with the service within each repetition; medians over repetitions.",
                "Client: one separate load-generator process, one channel per server, raw bytes.",
            ],
        },
        "curves": {},
    }
    try:
        from pattern_service.store.embeddings import OnnxEmbedder

        embedder = OnnxEmbedder(cache_size=0)
        b.results["meta"]["onnx_embedding_texts_per_s"] = round(corpus.embedding_rate(embedder, 128), 1)
        print(f"ONNX embedding (2 threads, now): {b.results['meta']['onnx_embedding_texts_per_s']} texts/s")
        small = [n for n in profile.store_sizes if n <= profile.main_size]
        large = [n for n in profile.store_sizes if n > profile.main_size]
        await store_curve(b, small, embedder)
        await registry_curve(b)
        await metrics_logging_cost(b)
        await window_curve(b)
        if large:
            await store_curve(b, large, embedder)
    finally:
        if b.echo is not None:
            b.echo.stop()
        pool.shutdown()
    store_row = _find(b.results.get("scenarios", []), "execute_memory_store", 8)
    if store_row:
        per_s = store_row["service"]["throughput"]
        b.results["meta"]["api_store_writes_per_s_c8"] = per_s
        b.results["meta"]["api_store_100k_minutes_projected"] = round(100_000 / per_s / 60, 1) if per_s else None
    b.results["targets"] = evaluate_targets(b.results, profile)
    b.results["meta"]["duration_seconds"] = round(time.perf_counter() - started, 1)
    _print_summary(b.results)
    write_results(b.results, out_dir, stamp)
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return b.results


def write_results(results: dict[str, Any], out_dir: Path, stamp: str) -> None:
    """Write ``<stamp>.json``, ``latest.json`` and ``latest.png`` into ``out_dir``."""
    from bench.chart import render

    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, ensure_ascii=False)
    (out_dir / f"{stamp}.json").write_text(text, encoding="utf-8")
    (out_dir / "latest.json").write_text(text, encoding="utf-8")
    render(results, out_dir / "latest.png")
    print(f"wrote {out_dir / (stamp + '.json')}, {out_dir / 'latest.json'}, {out_dir / 'latest.png'}")


def _print_summary(r: dict[str, Any]) -> None:
    print("\n" + _HEADER)
    for row in r.get("scenarios", []):
        _print_row(row)
    print("\ntargets:")
    for t in r["targets"]:
        value = _fmt(t["value"], ".3f")
        print(f"  {t['result']:<5} {t['target']}: {value} {t['unit']} (limit {t['op']} {t['limit']}) {t['note']}")
    print(f"\nduration: {r['meta']['duration_seconds']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes and repetitions, no 100k (minutes)")
    parser.add_argument("--profile", choices=sorted(PROFILES), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directories and logs")
    opts = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)
    logging.getLogger("bench.corpus").setLevel(logging.INFO)
    profile = PROFILES[opts.profile or ("quick" if opts.quick else "full")]
    asyncio.run(run(profile, opts.out, keep=opts.keep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
