"""Quick probe of the fast unary scenarios (cache hit, uncached built-in tools, Route, repeated recall) against echo.

A development aid beside the full suite (``bench.run``): starts the service
(hashing embedder and empty store, or with ``--items N`` the MiniLM embedder
and N seeded memories and success patterns) and the echo server, runs each fast
scenario at the given concurrencies (3 alternating repetitions, median) and
prints throughput, p50, the ratio to echo and the server CPU per call of both.
Takes about a minute (plus seeding).

Usage::

    .venv/bin/python -m bench.probe [--concurrency 1 8] [--scenario execute_cache_hit route] [--items 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench import corpus
from bench.harness import EchoProcess, ServiceProcess
from bench.loadgen import Job, Target, run_job
from bench.run import _raw_unary
from bench.scenarios import SCENARIOS, requests_for
from bench.seed import seed_store

FAST = [s.name for s in SCENARIOS if s.weight == "fast" and s.kind == "unary"]


async def probe(
    names: list[str], levels: list[int], env: dict[str, str], items: int = 0, compare: dict[str, str] | None = None
) -> None:
    """Run the probe (see the module docstring); ``compare``: settings of a second service measured alongside."""
    work = Path(tempfile.mkdtemp(prefix="pattern-probe-"))
    if items:
        await seed_store(work / "data", items, corpus.vectors(items))
        if compare is not None:
            await seed_store(work / "data-b", items, corpus.vectors(items))
    svc = await ServiceProcess(work / "data", metrics=True, log_level="WARNING", env=env).start()
    other = None
    if compare is not None:
        other = await ServiceProcess(work / "data-b", metrics=True, log_level="WARNING", env={**env, **compare}).start()
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    echo: EchoProcess | None = None
    try:
        scenarios = [s for s in SCENARIOS if s.name in names]
        pools = {s.name: requests_for(s, 0) for s in scenarios}
        responses = {}
        for s in scenarios:
            await _raw_unary(svc.address, s.path, pools[s.name][0], s.metadata)
            responses[(s.method, s.name)] = await _raw_unary(svc.address, s.path, pools[s.name][0], s.metadata)
            if other is not None:
                await _raw_unary(other.address, s.path, pools[s.name][0], s.metadata)
        echo = await EchoProcess(responses, work).start()
        loop = asyncio.get_running_loop()
        for s in scenarios:
            for c in levels:
                job = Job(
                    scenario=s.name,
                    method=s.path,
                    kind="unary",
                    requests=pools[s.name],
                    targets=[Target("echo", echo.address, echo.pid), Target("service", svc.address, svc.pid)]
                    + ([Target("service_b", other.address, other.pid)] if other is not None else []),
                    concurrency=c,
                    warmup=100 if c == 1 else 300,
                    count=600 if c == 1 else 2000,
                    max_seconds=10.0,
                    repetitions=3,
                    metadata=s.metadata,
                )
                res = await loop.run_in_executor(pool, run_job, job)
                e, v = res["echo"], res["service"]
                assert e.p50_ms is not None and v.p50_ms is not None, "a window without latencies"
                print(
                    f"{s.name:<24} c={c:<3} service {v.throughput:7.0f}/s p50 {v.p50_ms:6.3f} ms | "
                    f"echo {e.throughput:7.0f}/s p50 {e.p50_ms:6.3f} ms | ratio {v.throughput / e.throughput:.2f} "
                    f"p50 +{v.p50_ms - e.p50_ms:.3f} ms | CPU/call service {v.server_cpu_us_per_request or 0:.0f} µs "
                    f"echo {e.server_cpu_us_per_request or 0:.0f} µs",
                    flush=True,
                )
                if other is not None:
                    b = res["service_b"]
                    print(
                        f"{'  with ' + ' '.join(f'{k}={v}' for k, v in compare.items()):<30} service "
                        f"{b.throughput:7.0f}/s p50 {b.p50_ms or 0:6.3f} ms | ratio {b.throughput / e.throughput:.2f} "
                        f"| CPU/call {b.server_cpu_us_per_request or 0:.0f} µs",
                        flush=True,
                    )
    finally:
        if echo is not None:
            echo.stop()
        if other is not None:
            other.stop()
        svc.stop()
        pool.shutdown()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.probe", description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--scenario", nargs="+", choices=FAST, default=FAST)
    parser.add_argument("--env", nargs="*", default=[], help="extra TMWS_* settings for the service, NAME=VALUE")
    parser.add_argument("--items", type=int, default=0, help="seed this many memories and success patterns (MiniLM)")
    parser.add_argument(
        "--compare-env", nargs="*", default=None, help="also run a second service with these settings, NAME=VALUE"
    )
    args = parser.parse_args(argv)
    env = {} if args.items else {"TMWS_EMBEDDER": "hashing"}
    env.update(item.split("=", 1) for item in args.env)
    compare = None if args.compare_env is None else dict(item.split("=", 1) for item in args.compare_env)
    asyncio.run(probe(args.scenario, args.concurrency, env, args.items, compare))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
