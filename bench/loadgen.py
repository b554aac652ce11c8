"""The load generator: runs in its own process (never the server's) with one asyncio loop and channel.

A :class:`Job` names the targets (the echo server and the service), the method, pre-serialized
requests and the load shape. :func:`run_job` runs, for every repetition, one warm-up and one
measured window per target, alternating targets, so drift on the shared machine hits both alike.
Requests go out as raw bytes and responses are not parsed (the same client cost for both targets).
Every loop is bounded by a request count and by a deadline, whichever comes first.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from dataclasses import dataclass, field

import grpc


@dataclass(frozen=True)
class Target:
    """A server to load.

    Attributes:
        name: ``echo`` or ``service`` (or any label).
        address: ``host:port``.
        pid: The server's process id (same machine): its CPU time per request is measured too.
        method: Full method path for this target instead of the job's (e.g. the echo server's
            request-echo methods, :data:`bench.echo.REQUEST_ECHO`).
    """

    name: str
    address: str
    pid: int = 0
    method: str = ""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all threads), from ``/proc``; 0.0 if unknown."""
    if pid <= 0:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


_CLK_TCK = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0


@dataclass(frozen=True)
class Job:
    """One scenario at one concurrency.

    Attributes:
        scenario: Scenario name (also sent as ``x-bench-scenario`` metadata).
        method: Full method path, e.g. ``/tmws.pattern.v1.PatternExecutionService/Execute``.
        kind: ``unary`` or ``stream`` (bidirectional, ``ExecuteMany``).
        requests: Serialized requests, used in order (cycling) from ``offset``.
        targets: Servers to load, in the order run within each repetition.
        concurrency: Unary: calls in flight. Stream: number of concurrent streams.
        warmup: Requests before measuring (per target and repetition).
        count: Requests measured per repetition (stream: messages per repetition, all streams).
        max_seconds: Deadline of one measured window (and of one warm-up).
        repetitions: Measured windows per target.
        metadata: Extra request metadata (e.g. ``x-tenant-id``).
        offset: First request index (so repeated jobs can use fresh requests).
        timeout: Per-call deadline, seconds.
    """

    scenario: str
    method: str
    kind: str
    requests: list[bytes]
    targets: list[Target]
    concurrency: int
    warmup: int
    count: int
    max_seconds: float
    repetitions: int
    metadata: tuple[tuple[str, str], ...] = ()
    offset: int = 0
    timeout: float = 30.0


@dataclass
class Window:
    """One measured window.

    Attributes:
        ok: Successful requests (stream: messages answered).
        errors: Failed requests (first error kept in ``error``).
        seconds: Wall time of the window.
        latencies_ms: Per-call latency (unary only).
        error: The first error's text.
        server_cpu_seconds: CPU time the server process used during the window (0 if unknown).
    """

    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    error: str = ""
    server_cpu_seconds: float = 0.0

    @property
    def throughput(self) -> float:
        """Successful requests (or messages) per second."""
        return self.ok / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Summary:
    """Median over repetitions of one target's windows.

    Attributes:
        target: Target name.
        p50_ms, p95_ms, p99_ms: Latency percentiles (median over repetitions; ``None`` for streams).
        throughput: Requests (messages) per second, median over repetitions.
        ok, errors: Totals over repetitions.
        repetitions: Windows measured.
        error: First error seen.
        throughputs: Every repetition's throughput.
        server_cpu_us_per_request: Server CPU µs per request (message), median over repetitions
            (``None`` without a pid): less sensitive to other load on the machine than throughput.
    """

    target: str
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    throughput: float
    ok: int
    errors: int
    repetitions: int
    error: str
    throughputs: list[float]
    server_cpu_us_per_request: float | None = None


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of ``values`` (non-empty)."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100.0 * len(ordered) + 0.5) - 1))
    return ordered[k]


def summarize(target: str, windows: list[Window]) -> Summary:
    """Median of each statistic over ``windows``."""
    has_lat = [w for w in windows if w.latencies_ms]

    def med(q: float) -> float | None:
        if not has_lat:
            return None
        return statistics.median(percentile(w.latencies_ms, q) for w in has_lat)

    return Summary(
        target=target,
        p50_ms=med(50),
        p95_ms=med(95),
        p99_ms=med(99),
        throughput=statistics.median(w.throughput for w in windows) if windows else 0.0,
        ok=sum(w.ok for w in windows),
        errors=sum(w.errors for w in windows),
        repetitions=len(windows),
        error=next((w.error for w in windows if w.error), ""),
        throughputs=[round(w.throughput, 1) for w in windows],
        server_cpu_us_per_request=(
            statistics.median(w.server_cpu_seconds * 1e6 / max(1, w.ok + w.errors) for w in windows)
            if windows and any(w.server_cpu_seconds for w in windows)
            else None
        ),
    )


class _Cursor:
    """Hands out request indexes (cycling) until a count or a deadline is reached."""

    def __init__(self, job: Job, start: int, count: int, deadline: float):
        self._job = job
        self._next = start
        self._end = start + count
        self._deadline = deadline

    def take(self) -> bytes | None:
        if self._next >= self._end or time.perf_counter() >= self._deadline:
            return None
        data = self._job.requests[self._next % len(self._job.requests)]
        self._next += 1
        return data

    @property
    def position(self) -> int:
        return self._next


async def _unary_window(
    channel: grpc.aio.Channel, job: Job, start: int, count: int, record: bool, method: str = ""
) -> tuple[Window, int]:
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method or job.method)
    metadata = (("x-bench-scenario", job.scenario), *job.metadata)
    window = Window()
    begin = time.perf_counter()
    cursor = _Cursor(job, start, count, begin + job.max_seconds)

    async def worker() -> None:
        while (data := cursor.take()) is not None:
            t0 = time.perf_counter()
            try:
                await call(data, metadata=metadata, timeout=job.timeout)
            except grpc.aio.AioRpcError as exc:
                window.errors += 1
                window.error = window.error or f"{exc.code().name}: {exc.details()}"
                continue
            window.ok += 1
            if record:
                window.latencies_ms.append((time.perf_counter() - t0) * 1000.0)

    await asyncio.gather(*(worker() for _ in range(job.concurrency)))
    window.seconds = time.perf_counter() - begin
    return window, cursor.position


async def _stream_window(
    channel: grpc.aio.Channel, job: Job, start: int, count: int, record: bool, method_path: str = ""
) -> tuple[Window, int]:
    method: grpc.aio.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(method_path or job.method)
    metadata = (("x-bench-scenario", job.scenario), *job.metadata)
    window = Window()
    per_stream = max(1, count // job.concurrency)
    begin = time.perf_counter()
    deadline = begin + job.max_seconds

    async def one(k: int) -> None:
        call = method(metadata=metadata, timeout=job.max_seconds + job.timeout)
        first = start + k * per_stream

        async def write() -> None:
            for i in range(per_stream):
                if time.perf_counter() >= deadline:
                    break
                await call.write(job.requests[(first + i) % len(job.requests)])
            await call.done_writing()

        writer = asyncio.create_task(write())
        try:
            async for _ in call:
                window.ok += 1
            await writer
        except grpc.aio.AioRpcError as exc:
            window.errors += 1
            window.error = window.error or f"{exc.code().name}: {exc.details()}"
            writer.cancel()

    await asyncio.gather(*(one(k) for k in range(job.concurrency)))
    window.seconds = time.perf_counter() - begin
    return window, start + per_stream * job.concurrency


async def _run(job: Job) -> dict[str, Summary]:
    run_window = _unary_window if job.kind == "unary" else _stream_window
    channels = {
        t.name: grpc.aio.insecure_channel(
            t.address,
            options=[
                ("grpc.max_receive_message_length", 16 * 1024 * 1024),
                ("grpc.max_send_message_length", 16 * 1024 * 1024),
            ],
        )
        for t in job.targets
    }
    windows: dict[str, list[Window]] = {t.name: [] for t in job.targets}
    try:
        for ch in channels.values():
            await asyncio.wait_for(ch.channel_ready(), 30)
        position = {t.name: job.offset for t in job.targets}
        for _ in range(job.repetitions):
            for t in job.targets:
                ch = channels[t.name]
                if job.warmup > 0:
                    _, position[t.name] = await run_window(ch, job, position[t.name], job.warmup, False, t.method)
                cpu0 = cpu_seconds(t.pid)
                window, position[t.name] = await run_window(ch, job, position[t.name], job.count, True, t.method)
                window.server_cpu_seconds = cpu_seconds(t.pid) - cpu0
                windows[t.name].append(window)
    finally:
        for ch in channels.values():
            await ch.close()
    return {name: summarize(name, ws) for name, ws in windows.items()}


def run_job(job: Job) -> dict[str, Summary]:
    """Run ``job`` on a fresh event loop (the entry point of the load-generator process)."""
    return asyncio.run(_run(job))
