"""Load and soak driver: a fixed-rate mix of every RPC, with errors, latency percentiles and server RSS.

Starts the server itself (``python -m pattern_service serve`` on a free loopback
port, a temporary data directory, the embedded default with the ONNX embedder;
other ``TMWS_*`` variables of this environment are passed through, so PostgreSQL,
Redis or a Qdrant server can be soaked too) or drives one that runs
(``--target host:port``, with ``--server-pid`` to sample its RSS). Loopback only.

The load is open-loop: requests are sent at ``--rate`` per second in total for
``--duration`` seconds (at most ``--max-in-flight`` outstanding; a send that has
to wait for a free slot is counted as late), then the script waits for the
outstanding calls and stops by itself. The mix covers every RPC: ``Execute``
(cache hits, uncached infrastructure, memory reads, memory writes, hybrid),
``ExecuteMany`` batches, ``Route``, ``MatchPatterns``, the success pattern
life cycle (Create/Get/List/Update/RecordPatternOutcome/Delete), pattern
definitions (RegisterBatch/List/Delete) and ``GetStats``. The first requests
are one of each, so even a run of a few seconds covers every RPC.

Every ``--rss-interval`` seconds the server's ``VmRSS`` and CPU time are read
from ``/proc/<pid>``. The first ``--warmup`` seconds are excluded from the
RSS baseline and from the latency percentiles (steady state); errors count
over the whole run. A timeline (one row per ``--timeline-interval`` seconds:
requests, errors, latency percentiles, server CPU %, RSS) shows whether the
run was steady: latencies that climb row after row mean the rate is more than
the server sustains.

Example::

    .venv/bin/python scripts/load.py --duration 600 --rate 100 --out bench/results/soak.json

Exit status: 0 when no call failed, 1 otherwise (and 2 if ``--max-rss-growth``
is given and exceeded).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "clients" / "python" / "src"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402

from tmws.pattern.client import PatternClient, PatternServiceError  # noqa: E402
from tmws.pattern.v1 import pattern_execution_service_pb2 as pe  # noqa: E402
from tmws.pattern.v1 import pattern_learning_service_pb2 as pl  # noqa: E402

SERVING = re.compile(r"serving tmws\.pattern\.v1 on [\d.]+:(\d+)")
TENANT = "loadtest"
SEED_SUCCESS_PATTERNS = 20
SEED_DEFINITIONS = 5
SEED_MEMORIES = 20
BATCH_ITEMS = 8
TOPICS = (
    "deploying payments",
    "database failover",
    "cache warmup",
    "kubernetes upgrades",
    "incident review",
    "latency regression",
    "schema migration",
    "queue backpressure",
    "tls certificate rotation",
    "log retention",
    "feature flags",
    "capacity planning",
)
CACHED_QUERIES = ("calculate 2 + 2", "check service health", "calculate (2 + 3) * 4", "check database connections")


class CallFailed(Exception):
    """A call that returned but did not succeed (e.g. ``ExecutionResult.success`` false).

    Args:
        code: The label reported in ``errors_by_code``.
        message: What went wrong.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Sample:
    """One request: when it was sent (seconds since the load started), its latency and its outcome."""

    at: float
    latency_ms: float
    code: str  # "OK" or a status code name


@dataclass
class Recorder:
    """Collects the samples of every operation."""

    started: float = 0.0
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    rpc_of: dict[str, str] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)

    async def call(self, label: str, rpc: str, work: Callable[[], Awaitable[object]]) -> object | None:
        """Run ``work`` and record its latency and outcome under ``label``; returns its result (``None`` on error)."""
        t0 = time.perf_counter()
        code = "OK"
        result: object | None = None
        try:
            result = await work()
        except PatternServiceError as exc:
            code = exc.code.name
            self._note(label, f"{code}: {exc.message}")
        except CallFailed as exc:
            code = exc.code
            self._note(label, f"{code}: {exc}")
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            self._note(label, f"{code}: {exc.details()}")
        latency = (time.perf_counter() - t0) * 1000.0
        self.rpc_of[label] = rpc
        self.samples.setdefault(label, []).append(Sample(t0 - self.started, latency, code))
        return result

    def _note(self, label: str, text: str) -> None:
        if len(self.first_errors) < 20:
            self.first_errors.append(f"{label}: {text}")


@dataclass
class LoadContext:
    """State shared by the operations: the client, a seeded RNG and pools of live resources."""

    client: PatternClient
    recorder: Recorder
    rng: random.Random
    run_id: str
    success_patterns: list[str] = field(default_factory=list)
    definitions: list[str] = field(default_factory=list)
    counter: int = 0

    def next_n(self) -> int:
        """A number no other request of this run used."""
        self.counter += 1
        return self.counter


def _check_result(result: pe.ExecutionResult) -> pe.ExecutionResult:
    if not result.success:
        raise CallFailed("RESULT_FAILED", result.error or "success false")
    return result


# ----------------------------------------------------------------------------- operations


async def op_execute_cache_hit(ctx: LoadContext) -> None:
    """``Execute`` of a few fixed queries: answered from the result cache after the first call."""
    query = ctx.rng.choice(CACHED_QUERIES)
    await ctx.recorder.call("Execute/cache_hit", "Execute", lambda: _exec(ctx, query))


async def op_execute_infrastructure(ctx: LoadContext) -> None:
    """``Execute`` of an uncached calculation (infrastructure path)."""
    a, b = ctx.rng.randrange(1000), ctx.rng.randrange(1000)
    query = f"calculate ({a} + {b}) * {ctx.rng.randrange(1, 9)}"
    await ctx.recorder.call("Execute/infrastructure", "Execute", lambda: _exec(ctx, query, use_cache=False))


async def op_execute_memory_read(ctx: LoadContext) -> None:
    """``Execute`` of a recall on the tenant's memories (memory path; cached half the time)."""
    topic = ctx.rng.choice(TOPICS)
    query = f"recall memories about {topic}"
    use_cache = ctx.rng.random() < 0.5
    context = {"agent": "soak", "limit": 5}
    await ctx.recorder.call(
        "Execute/memory_read", "Execute", lambda: _exec(ctx, query, use_cache=use_cache, context=context)
    )


async def op_execute_memory_write(ctx: LoadContext) -> None:
    """``Execute`` of a memory write ("store ...")."""
    topic = ctx.rng.choice(TOPICS)
    query = f"store note {ctx.next_n()} of run {ctx.run_id} about {topic}"
    context = {"agent": "soak", "tags": [topic.split()[0]]}
    await ctx.recorder.call("Execute/memory_write", "Execute", lambda: _exec(ctx, query, context=context))


async def op_execute_hybrid(ctx: LoadContext) -> None:
    """``Execute`` in comprehensive mode (hybrid: a tool and a recall concurrently)."""
    topic = ctx.rng.choice(TOPICS)
    query = f"analyze the system architecture for {topic}"
    await ctx.recorder.call(
        "Execute/hybrid", "Execute", lambda: _exec(ctx, query, use_cache=False, mode="comprehensive")
    )


async def _exec(
    ctx: LoadContext,
    query: str,
    *,
    use_cache: bool | None = None,
    context: dict[str, Any] | None = None,
    mode: str | None = None,
) -> pe.ExecutionResult:
    return _check_result(await ctx.client.execute(query, use_cache=use_cache, context=context, execution_mode=mode))


async def op_execute_many(ctx: LoadContext) -> None:
    """One ``ExecuteMany`` stream of a batch of cached and uncached infrastructure queries."""
    items: list[tuple[str, str]] = []
    for i in range(BATCH_ITEMS):
        query = ctx.rng.choice(CACHED_QUERIES) if i % 2 else f"calculate {ctx.rng.randrange(10_000)} * 3"
        items.append((str(i), query))

    async def run() -> int:
        answered = 0
        async for outcome in ctx.client.execute_many(items, timeout=ctx.client.default_timeout):
            if outcome.error is not None:
                raise outcome.error
            assert outcome.result is not None
            _check_result(outcome.result)
            answered += 1
        if answered != len(items):
            raise CallFailed("INCOMPLETE_STREAM", f"{answered} of {len(items)} answered")
        return answered

    await ctx.recorder.call("ExecuteMany/batch", "ExecuteMany", run)


async def op_route(ctx: LoadContext) -> None:
    """``Route`` of a query of any path."""
    query = ctx.rng.choice(
        (
            f"recall memories about {ctx.rng.choice(TOPICS)}",
            "find similar optimization cases",
            f"calculate {ctx.rng.randrange(100)} + 1",
            "check service health",
        )
    )
    await ctx.recorder.call("Route", "Route", lambda: ctx.client.route(query))


async def op_match_patterns(ctx: LoadContext) -> None:
    """``MatchPatterns`` for an intent about one of the topics."""
    intent = f"how to handle {ctx.rng.choice(TOPICS)}"
    await ctx.recorder.call("MatchPatterns", "MatchPatterns", lambda: ctx.client.match_patterns(intent, limit=5))


def _success_pattern(ctx: LoadContext) -> pl.SuccessPattern:
    topic = ctx.rng.choice(TOPICS)
    pattern = pl.SuccessPattern(
        pattern_type="soak",
        name=f"soak {ctx.run_id} {ctx.next_n()}",
        description=f"A procedure that worked for {topic}",
        tags=["soak", topic.split()[0]],
    )
    pattern.execution_trace.update({"steps": ["prepare", f"apply to {topic}", "verify"]})
    pattern.quality_metrics.update({"accuracy": round(ctx.rng.uniform(0.5, 1.0), 3)})
    return pattern


async def op_create_success_pattern(ctx: LoadContext) -> None:
    """``CreateSuccessPattern``; the new id joins the pool."""
    created = await ctx.recorder.call(
        "CreateSuccessPattern",
        "CreateSuccessPattern",
        lambda: ctx.client.create_success_pattern(_success_pattern(ctx)),
    )
    if isinstance(created, pl.SuccessPattern):
        ctx.success_patterns.append(created.pattern_id)


async def _with_pattern(ctx: LoadContext, use: Callable[[str], Awaitable[None]], *, keep: bool = True) -> None:
    """Lease a success pattern id from the pool (creating one if none is free), use it, return it."""
    if not ctx.success_patterns:
        await op_create_success_pattern(ctx)
        if not ctx.success_patterns:
            return
    pattern_id = ctx.success_patterns.pop(ctx.rng.randrange(len(ctx.success_patterns)))
    try:
        await use(pattern_id)
    finally:
        if keep:
            ctx.success_patterns.append(pattern_id)


async def op_get_success_pattern(ctx: LoadContext) -> None:
    """``GetSuccessPattern`` of a pooled pattern."""

    async def use(pattern_id: str) -> None:
        await ctx.recorder.call(
            "GetSuccessPattern", "GetSuccessPattern", lambda: ctx.client.get_success_pattern(pattern_id)
        )

    await _with_pattern(ctx, use)


async def op_list_success_patterns(ctx: LoadContext) -> None:
    """``ListSuccessPatterns``, one page."""
    await ctx.recorder.call(
        "ListSuccessPatterns", "ListSuccessPatterns", lambda: ctx.client.list_success_patterns(page_size=20)
    )


async def op_update_success_pattern(ctx: LoadContext) -> None:
    """``UpdateSuccessPattern`` of a pooled pattern's description and tags."""

    async def use(pattern_id: str) -> None:
        update = pl.SuccessPattern(
            pattern_id=pattern_id,
            description=f"Revised procedure {ctx.next_n()} for {ctx.rng.choice(TOPICS)}",
            tags=["soak", "revised"],
        )
        await ctx.recorder.call(
            "UpdateSuccessPattern",
            "UpdateSuccessPattern",
            lambda: ctx.client.update_success_pattern(update, ["description", "tags"]),
        )

    await _with_pattern(ctx, use)


async def op_record_outcome(ctx: LoadContext) -> None:
    """``RecordPatternOutcome`` of a pooled pattern."""

    async def use(pattern_id: str) -> None:
        success = ctx.rng.random() < 0.8
        await ctx.recorder.call(
            "RecordPatternOutcome",
            "RecordPatternOutcome",
            lambda: ctx.client.record_pattern_outcome(pattern_id, success),
        )

    await _with_pattern(ctx, use)


async def op_delete_success_pattern(ctx: LoadContext) -> None:
    """``DeleteSuccessPattern`` of a pooled pattern (it leaves the pool)."""

    async def use(pattern_id: str) -> None:
        await ctx.recorder.call(
            "DeleteSuccessPattern", "DeleteSuccessPattern", lambda: ctx.client.delete_success_pattern(pattern_id)
        )

    await _with_pattern(ctx, use, keep=False)


def _definition(name: str) -> pe.PatternDefinition:
    definition = pe.PatternDefinition(
        name=name,
        pattern_type=pe.PATTERN_TYPE_INFRASTRUCTURE,
        trigger_pattern=rf"\bsoakdef\s+{name}\b",
        cost_tokens=50,
        priority=1,
        cache_ttl=60,
        description="definition registered by the load script",
        examples=[f"soakdef {name} example"],
    )
    definition.metadata.update({"tool": "calculate"})
    return definition


async def op_register_batch(ctx: LoadContext) -> None:
    """``RegisterBatch`` of one new definition; its name joins the pool."""
    name = f"soak_{ctx.run_id}_{ctx.next_n()}"
    done = await ctx.recorder.call(
        "RegisterBatch", "RegisterBatch", lambda: ctx.client.register_batch([_definition(name)])
    )
    if done is not None:
        ctx.definitions.append(name)


async def op_list_definitions(ctx: LoadContext) -> None:
    """``ListPatternDefinitions``, one page."""
    await ctx.recorder.call(
        "ListPatternDefinitions",
        "ListPatternDefinitions",
        lambda: ctx.client.list_pattern_definitions(page_size=20),
    )


async def op_delete_definition(ctx: LoadContext) -> None:
    """``DeletePatternDefinition`` of a pooled definition (registering one first if none is left)."""
    if not ctx.definitions:
        await op_register_batch(ctx)
        if not ctx.definitions:
            return
    name = ctx.definitions.pop(ctx.rng.randrange(len(ctx.definitions)))
    await ctx.recorder.call(
        "DeletePatternDefinition", "DeletePatternDefinition", lambda: ctx.client.delete_pattern_definition(name)
    )


async def op_get_stats(ctx: LoadContext) -> None:
    """``GetStats``."""
    await ctx.recorder.call("GetStats", "GetStats", lambda: ctx.client.get_stats())


#: (operation, weight): the mix, per 100 requests.
MIX: tuple[tuple[Callable[[LoadContext], Awaitable[None]], int], ...] = (
    (op_execute_cache_hit, 20),
    (op_execute_infrastructure, 12),
    (op_execute_memory_read, 10),
    (op_execute_memory_write, 5),
    (op_execute_hybrid, 4),
    (op_execute_many, 4),
    (op_route, 10),
    (op_match_patterns, 8),
    (op_create_success_pattern, 3),
    (op_get_success_pattern, 5),
    (op_list_success_patterns, 3),
    (op_update_success_pattern, 3),
    (op_record_outcome, 4),
    (op_delete_success_pattern, 3),
    (op_register_batch, 2),
    (op_list_definitions, 2),
    (op_delete_definition, 2),
    (op_get_stats, 0),  # scheduled separately: about once a second (see ``drive``)
)

#: Every RPC of the API, as the report names them.
ALL_RPCS = (
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
)


# ----------------------------------------------------------------------------- server, RSS


def read_memory_kb(pid: int) -> dict[str, int] | None:
    """``VmRSS``, ``RssAnon`` (heap, stacks), ``RssFile`` (mapped files) and ``RssShmem`` of ``pid`` in kB.

    Returns:
        The values by name, or ``None`` if the process is gone.
    """
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {name: int(kb) for name, kb in re.findall(r"^(VmRSS|RssAnon|RssFile|RssShmem):\s+(\d+)\s+kB", text, re.M)}
    return values if "VmRSS" in values else None


def read_file_rss_kb(pid: int) -> tuple[int, int] | None:
    """Resident file-backed memory of ``pid`` in kB, split into shared libraries (code paged in on
    first use) and other mapped files (data: the vector index's segments and write-ahead logs).

    Returns:
        ``(libraries_kb, data_files_kb)``, or ``None`` if the process is gone.
    """
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return None
    libraries = data = 0
    path = ""
    for line in text.splitlines():
        head = line.split(maxsplit=5)
        if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):  # a mapping's header line
            path = head[5] if len(head) == 6 and head[5].startswith("/") else ""
        elif path and line.startswith("Rss:"):
            kb = int(line.split()[1])
            if re.search(r"\.so(\.|$)", path):
                libraries += kb
            else:
                data += kb
    return libraries, data


def read_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds ``pid`` has used (all its threads), or ``None`` if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def read_rss_kb(pid: int) -> int | None:
    """``VmRSS`` of ``pid`` in kB (``None`` if the process is gone)."""
    values = read_memory_kb(pid)
    return values["VmRSS"] if values else None


@dataclass
class RssSampler:
    """Samples a process's RSS every ``interval`` seconds.

    Attributes:
        samples: (seconds since start, ``VmRSS`` kB).
        cpu: (seconds since start, the process's user + system CPU seconds so far).
        files: (seconds since start, resident kB of shared libraries, of other mapped files).
        detail: (seconds since start, ``RssAnon`` kB, ``RssFile`` kB): anonymous memory is the
            heap (a leak shows here); file pages are mapped data files (SQLite, the vector index).
    """

    pid: int
    interval: float
    started: float
    samples: list[tuple[float, int]] = field(default_factory=list)
    detail: list[tuple[float, int, int]] = field(default_factory=list)
    cpu: list[tuple[float, float]] = field(default_factory=list)
    files: list[tuple[float, int, int]] = field(default_factory=list)

    def sample(self) -> None:
        """Take one sample now."""
        values = read_memory_kb(self.pid)
        if values is not None:
            at = round(time.perf_counter() - self.started, 3)
            self.samples.append((at, values["VmRSS"]))
            self.detail.append((at, values.get("RssAnon", 0), values.get("RssFile", 0)))
            cpu = read_cpu_seconds(self.pid)
            if cpu is not None:
                self.cpu.append((at, cpu))
            files = read_file_rss_kb(self.pid)
            if files is not None:
                self.files.append((at, *files))

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            self.sample()
            await asyncio.sleep(self.interval)


class StartedServer:
    """The server as a child process, its output in ``<data_dir>/server.log``.

    Args:
        data_dir: ``TMWS_DATA_DIR`` of the server.
        embedder: ``TMWS_EMBEDDER``.
    """

    def __init__(self, data_dir: Path, embedder: str) -> None:
        self.data_dir = data_dir
        self.embedder = embedder
        self.log_path = data_dir / "server.log"
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self, within: float = 300.0) -> str:
        """Start the server and wait for its "serving ... on host:PORT" line; returns ``host:port``.

        Raises:
            RuntimeError: The server exited or did not serve within ``within`` seconds.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            TMWS_GRPC_ADDRESS="127.0.0.1:0",
            TMWS_METRICS_ADDRESS="",
            TMWS_DATA_DIR=str(self.data_dir),
            TMWS_EMBEDDER=self.embedder,
            TMWS_LOG_LEVEL="INFO",
            PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
        )
        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "pattern_service",
                "serve",
                env=env,
                cwd=str(REPO),
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if found := SERVING.search(self.log_path.read_text(errors="replace")):
                self.port = int(found.group(1))
                return f"127.0.0.1:{self.port}"
            if self.process.returncode is not None:
                break
            await asyncio.sleep(0.2)
        await self.stop()
        raise RuntimeError(f"server did not start; its log:\n{self.log_path.read_text(errors='replace')[-4000:]}")

    @property
    def pid(self) -> int:
        """Process id of the server."""
        assert self.process is not None
        return self.process.pid

    async def stop(self, within: float = 60.0) -> int | None:
        """SIGTERM the server (SIGKILL after ``within`` seconds); returns its exit code."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), within)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        return self.process.returncode


# ----------------------------------------------------------------------------- the run


async def seed(ctx: LoadContext) -> None:
    """Create the resources the operations lease (recorded under ``setup/...``, not in the RPC stats)."""
    for i in range(SEED_MEMORIES):
        topic = TOPICS[i % len(TOPICS)]
        await ctx.client.execute(f"store seed note {i} of run {ctx.run_id} about {topic}", context={"agent": "soak"})
    for _ in range(SEED_SUCCESS_PATTERNS):
        created = await ctx.client.create_success_pattern(_success_pattern(ctx))
        ctx.success_patterns.append(created.pattern_id)
    names = [f"soak_{ctx.run_id}_{ctx.next_n()}" for _ in range(SEED_DEFINITIONS)]
    await ctx.client.register_batch([_definition(n) for n in names])
    ctx.definitions.extend(names)


async def drive(ctx: LoadContext, *, rate: float, duration: float, max_in_flight: int) -> dict[str, Any]:
    """Send requests at ``rate`` per second for ``duration`` seconds, then wait for the outstanding ones.

    The first requests are one of each operation; then operations are drawn by
    weight, and ``GetStats`` is sent about once a second.

    Returns:
        Facts about the schedule: requests sent, late sends, achieved rate.
    """
    loop = asyncio.get_running_loop()
    ops = [op for op, _ in MIX]
    weights = [w for _, w in MIX]
    coverage = list(ops)
    stats_every = max(1, round(rate))
    slots = asyncio.Semaphore(max_in_flight)
    tasks: set[asyncio.Task[None]] = set()
    interval = 1.0 / rate
    start = loop.time()
    sent = late = 0

    async def one(op: Callable[[LoadContext], Awaitable[None]]) -> None:
        try:
            await op(ctx)
        finally:
            slots.release()

    while True:
        due = start + sent * interval
        if due - start >= duration or loop.time() - start >= duration:
            break  # bounded in time even when the server falls behind (then fewer requests are sent)
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if slots.locked():
            late += 1
        await slots.acquire()
        if coverage:
            op = coverage.pop(0)
        elif sent % stats_every == stats_every - 1:
            op = op_get_stats
        else:
            op = ctx.rng.choices(ops, weights)[0]
        task = asyncio.create_task(one(op))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
    send_window = loop.time() - start
    if tasks:
        await asyncio.wait(set(tasks))
    return {
        "planned": math.ceil(duration * rate),
        "sent": sent,
        "late_sends": late,
        "send_window_s": round(send_window, 3),
        "achieved_rate": round(sent / send_window, 2) if send_window > 0 else 0.0,
        "drain_s": round(loop.time() - start - send_window, 3),
    }


def percentile(values: list[float], q: float) -> float:
    """The ``q`` percentile (0-100) of ``values`` by linear interpolation (0.0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize(samples: list[Sample], warmup: float) -> dict[str, Any]:
    """Count, errors by code and latency percentiles (ms, steady state after ``warmup`` when there is any)."""
    steady = [s.latency_ms for s in samples if s.at >= warmup] or [s.latency_ms for s in samples]
    codes = Counter(s.code for s in samples if s.code != "OK")
    return {
        "count": len(samples),
        "errors": sum(codes.values()),
        "errors_by_code": dict(sorted(codes.items())),
        "latency_ms": {
            "samples": len(steady),
            "p50": round(percentile(steady, 50), 3),
            "p95": round(percentile(steady, 95), 3),
            "p99": round(percentile(steady, 99), 3),
            "max": round(max(steady), 3) if steady else 0.0,
            "mean": round(statistics.fmean(steady), 3) if steady else 0.0,
        },
    }


def timeline(
    samples: Sequence[Sample],
    interval: float,
    rss: Sequence[tuple[float, int]] = (),
    cpu: Sequence[tuple[float, float]] = (),
) -> list[dict[str, Any]]:
    """Per ``interval`` seconds of send time: requests, errors, latency percentiles (ms) of every
    request, and the server's CPU use (% of one core) and RSS (MiB) at the end of the interval.

    A soak is steady when these rows stay level: latency that climbs row after row
    means a queue is growing (the rate is past what the server sustains).
    """
    if not samples or interval <= 0:
        return []
    buckets: dict[int, list[Sample]] = {}
    for s in samples:
        buckets.setdefault(int(s.at // interval), []).append(s)
    rows: list[dict[str, Any]] = []
    for index in range(max(buckets) + 1):
        group = buckets.get(index, [])
        start, end = index * interval, (index + 1) * interval
        latencies = [s.latency_ms for s in group]
        row: dict[str, Any] = {
            "start_s": start,
            "requests": len(group),
            "errors": sum(1 for s in group if s.code != "OK"),
            "p50_ms": round(percentile(latencies, 50), 2),
            "p95_ms": round(percentile(latencies, 95), 2),
            "p99_ms": round(percentile(latencies, 99), 2),
        }
        inside = [c for c in cpu if start <= c[0] <= end]
        if len(inside) >= 2 and inside[-1][0] > inside[0][0]:
            row["server_cpu_pct"] = round(100 * (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0]), 1)
        before = [kb for at, kb in rss if at <= end]
        if before:
            row["rss_mib"] = round(before[-1] / 1024, 1)
        rows.append(row)
    return rows


def rss_report(
    samples: list[tuple[float, int]],
    warmup: float,
    pid: int | None,
    detail: Sequence[tuple[float, int, int]] = (),
    files: Sequence[tuple[float, int, int]] = (),
) -> dict[str, Any]:
    """Baseline (first sample after warm-up), end, max, growth % and the steady-state slope (of ``VmRSS``);
    ``RssAnon``/``RssFile`` at the baseline and the end."""
    if not samples:
        return {"pid": pid, "samples": []}
    steady_detail = [d for d in detail if d[0] >= warmup] or list(detail[-1:])
    split: dict[str, Any] = {}
    if steady_detail:
        split = {
            "anon_baseline_kb": steady_detail[0][1],
            "anon_end_kb": steady_detail[-1][1],
            "file_baseline_kb": steady_detail[0][2],
            "file_end_kb": steady_detail[-1][2],
            "anon_file_samples": [list(d) for d in detail],
        }
    steady_files = [f for f in files if f[0] >= warmup] or list(files[-1:])
    if steady_files:
        split.update(
            libraries_baseline_kb=steady_files[0][1],
            libraries_end_kb=steady_files[-1][1],
            data_files_baseline_kb=steady_files[0][2],
            data_files_end_kb=steady_files[-1][2],
        )
    steady = [s for s in samples if s[0] >= warmup] or samples[-1:]
    baseline, end = steady[0][1], steady[-1][1]
    slope = 0.0
    if len(steady) >= 2:
        xs, ys = [s[0] for s in steady], [float(s[1]) for s in steady]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        denominator = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / denominator if denominator else 0.0
    return {
        "pid": pid,
        "warmup_s": warmup,
        "first_kb": samples[0][1],
        "baseline_kb": baseline,
        "baseline_at_s": steady[0][0],
        "end_kb": end,
        "end_at_s": steady[-1][0],
        "max_kb": max(s[1] for s in samples),
        "growth_pct": round((end - baseline) * 100.0 / baseline, 2) if baseline else 0.0,
        "slope_kb_per_min": round(slope * 60.0, 1),
        "samples": [[t, kb] for t, kb in samples],
        **split,
    }


def build_report(
    args: argparse.Namespace,
    recorder: Recorder,
    schedule: dict[str, Any],
    rss: dict[str, Any],
    stats: dict[str, Any] | None,
    server: dict[str, Any],
    warmup: float,
    rows: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The JSON report."""
    all_samples = [s for group in recorder.samples.values() for s in group]
    by_rpc: dict[str, list[Sample]] = {}
    for label, group in recorder.samples.items():
        by_rpc.setdefault(recorder.rpc_of[label], []).extend(group)
    codes = Counter(s.code for s in all_samples if s.code != "OK")
    rpcs: dict[str, Any] = {}
    for rpc in ALL_RPCS:
        entry = summarize(by_rpc.get(rpc, []), warmup)
        entry["operations"] = {
            label: summarize(group, warmup)
            for label, group in sorted(recorder.samples.items())
            if recorder.rpc_of[label] == rpc and label != rpc
        }
        rpcs[rpc] = entry
    return {
        "config": {
            "rate": args.rate,
            "duration_s": args.duration,
            "warmup_s": warmup,
            "max_in_flight": args.max_in_flight,
            "call_timeout_s": args.call_timeout,
            "seed": args.seed,
            "target": args.target or "started by the script",
            "embedder": args.embedder if not args.target else "(server's)",
            "latency_window": f"requests sent after the first {warmup:g} s (all, if none)",
        },
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "requests_total": len(all_samples),
        "errors_total": sum(codes.values()),
        "errors_by_code": dict(sorted(codes.items())),
        "first_errors": recorder.first_errors,
        "schedule": schedule,
        "rpcs": rpcs,
        "rss": rss,
        "timeline": rows or [],
        "server": server,
        "server_stats_at_end": stats,
    }


def print_summary(report: dict[str, Any]) -> None:
    """A human-readable summary on stdout."""
    print(f"requests {report['requests_total']}  errors {report['errors_total']} {report['errors_by_code']}")
    print(f"schedule {report['schedule']}")
    print(f"{'rpc':28} {'count':>7} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")

    def row(name: str, entry: dict[str, Any]) -> str:
        lat = entry["latency_ms"]
        counts = f"{entry['count']:7d} {entry['errors']:6d}"
        return f"{name:28} {counts} {lat['p50']:8.2f} {lat['p95']:8.2f} {lat['p99']:8.2f}"

    for rpc, entry in report["rpcs"].items():
        print(row(rpc, entry))
        for label, sub in entry["operations"].items():
            print(row(f"  {label}", sub))
    rss = report["rss"]
    if rss.get("baseline_kb"):
        print(
            f"RSS first {rss['first_kb'] / 1024:.1f} MiB, baseline {rss['baseline_kb'] / 1024:.1f} MiB "
            f"(t={rss['baseline_at_s']:.0f} s), end {rss['end_kb'] / 1024:.1f} MiB (t={rss['end_at_s']:.0f} s), "
            f"growth {rss['growth_pct']:.2f} %, slope {rss['slope_kb_per_min']:.0f} kB/min"
        )
    if "anon_baseline_kb" in rss:
        print(
            f"  anonymous {rss['anon_baseline_kb'] / 1024:.1f} -> {rss['anon_end_kb'] / 1024:.1f} MiB, "
            f"file-backed {rss['file_baseline_kb'] / 1024:.1f} -> {rss['file_end_kb'] / 1024:.1f} MiB"
        )
    if "libraries_baseline_kb" in rss:
        print(
            f"  file-backed: shared libraries {rss['libraries_baseline_kb'] / 1024:.1f} -> "
            f"{rss['libraries_end_kb'] / 1024:.1f} MiB, other mapped files (vector index, WAL) "
            f"{rss['data_files_baseline_kb'] / 1024:.1f} -> {rss['data_files_end_kb'] / 1024:.1f} MiB"
        )
    if report["timeline"]:
        heads = ("from s", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "cpu %", "RSS MiB")
        print(" ".join(f"{h:>{w}}" for h, w in zip(heads, (7, 8, 6, 8, 8, 8, 6, 8), strict=True)))
        for r in report["timeline"]:
            cpu, mib = r.get("server_cpu_pct"), r.get("rss_mib")
            print(
                f"{r['start_s']:7.0f} {r['requests']:8d} {r['errors']:6d} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f} "
                f"{r['p99_ms']:8.2f} {'' if cpu is None else f'{cpu:.0f}':>6} {'' if mib is None else f'{mib:.1f}':>8}"
            )
    for line in report["first_errors"]:
        print("error:", line)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start (or target) the server, seed, drive the load, sample RSS, and build the report."""
    warmup = args.warmup if args.warmup is not None else min(60.0, args.duration / 4)
    data_dir: Path | None = None
    server: StartedServer | None = None
    target = args.target
    pid = args.server_pid
    server_facts: dict[str, Any] = {}
    if not target:
        data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="tmws-load-"))
        server = StartedServer(data_dir, args.embedder)
        target = await server.start()
        pid = server.pid
        server_facts.update(data_dir=str(data_dir), log=str(server.log_path))
    host = target.rpartition(":")[0]
    if host not in ("127.0.0.1", "localhost", "[::1]", "::1"):
        raise SystemExit(f"--target must be a loopback address, got {target!r}")
    server_facts.update(target=target, pid=pid)
    try:
        async with PatternClient.connect(
            target, default_timeout=args.call_timeout, metadata=(("x-tenant-id", TENANT),)
        ) as client:
            await client.wait_until_ready(120)
            recorder = Recorder()
            ctx = LoadContext(client, recorder, random.Random(args.seed), uuid.uuid4().hex[:8])
            await seed(ctx)
            recorder.started = time.perf_counter()
            sampler = RssSampler(pid, args.rss_interval, recorder.started) if pid else None
            sampling = asyncio.create_task(sampler.run()) if sampler else None
            try:
                schedule = await drive(ctx, rate=args.rate, duration=args.duration, max_in_flight=args.max_in_flight)
            finally:
                if sampling is not None:
                    sampling.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sampling
            if sampler is not None:
                sampler.sample()
            stats: dict[str, Any] | None = None
            with contextlib.suppress(PatternServiceError):
                stats = json_format.MessageToDict(await client.get_stats())
        rss = rss_report(
            sampler.samples if sampler else [],
            warmup,
            pid,
            sampler.detail if sampler else [],
            sampler.files if sampler else [],
        )
    finally:
        if server is not None:
            server_facts["exit_code"] = await server.stop()
            if data_dir is not None and not args.keep and not args.data_dir:
                server_facts["data_dir"] = server_facts["log"] = "(removed)"
                if args.out:
                    kept_log = Path(args.out).with_suffix(".server.log")
                    kept_log.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(server.log_path, kept_log)
                    server_facts["log"] = str(kept_log)
                shutil.rmtree(data_dir, ignore_errors=True)
    rows = timeline(
        [s for group in recorder.samples.values() for s in group],
        args.timeline_interval,
        sampler.samples if sampler else (),
        sampler.cpu if sampler else (),
    )
    return build_report(args, recorder, schedule, rss, stats, server_facts, warmup, rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--target", help="host:port of a running server (loopback); default: start one")
    parser.add_argument("--server-pid", type=int, help="pid of the --target server, to sample its RSS")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second in total (default 100)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument(
        "--warmup", type=float, help="seconds excluded from the RSS baseline and latencies (default min(60, dur/4))"
    )
    parser.add_argument("--rss-interval", type=float, default=5.0, help="seconds between RSS samples (default 5)")
    parser.add_argument(
        "--timeline-interval", type=float, default=60.0, help="seconds per row of the timeline (default 60)"
    )
    parser.add_argument("--max-in-flight", type=int, default=256, help="outstanding requests at most (default 256)")
    parser.add_argument("--call-timeout", type=float, default=30.0, help="deadline of each call, seconds (default 30)")
    parser.add_argument("--embedder", choices=("onnx", "hashing"), default="onnx", help="of the started server")
    parser.add_argument("--data-dir", help="data directory of the started server (kept); default: a temp dir")
    parser.add_argument("--keep", action="store_true", help="keep the temp data directory")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the mix")
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--max-rss-growth", type=float, help="exit 2 if RSS grew by more than this many percent")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.rss_interval <= 0 or args.max_in_flight < 1:
        parser.error("--rate, --duration and --rss-interval must be positive, --max-in-flight at least 1")
    if args.duration > 24 * 3600:
        parser.error("--duration is bounded to 24 h")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the load; returns the exit status (see the module docstring)."""
    args = parse_args(argv)
    report = asyncio.run(run(args))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    print_summary(report)
    if report["errors_total"]:
        return 1
    growth = report["rss"].get("growth_pct")
    if args.max_rss_growth is not None and growth is not None and growth > args.max_rss_growth:
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
