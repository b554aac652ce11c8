"""Profile the service under one scenario's load with py-spy: ``python -m bench.profile SCENARIO [...]``.

Starts the service (embedded default, optional seeded store), warms it, then records the server
process with ``py-spy record`` while the load generator (a separate process) runs the scenario at
the given concurrency. Prints the functions with the most inclusive and self samples and writes
the collapsed stacks (``<out>/<scenario>-c<N>.folded``) for flame-graph tools.
py-spy is in the ``bench`` optional dependencies.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import corpus
from bench.harness import ServiceProcess
from bench.loadgen import Job, Target, run_job
from bench.run import RESPONSE_TYPES, _raw_stream, _raw_unary
from bench.scenarios import SCENARIOS, requests_for
from bench.seed import seed_store


def _spawn_pyspy(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    beside = Path(sys.executable).parent / "py-spy"  # the interpreter's own environment, even when not on PATH
    exe = shutil.which("py-spy") or str(beside)
    args = ["record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250", "--format", "raw"]
    return subprocess.Popen(
        [exe, *args, "--output", str(out), "--nonblocking", "--threads"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarize(folded: Path, top: int) -> str:
    """Top functions by inclusive and self samples of a collapsed-stack file."""
    inclusive: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = stack.split(";")
        total += count
        for f in set(frames):
            inclusive[f] += count
        self_[frames[-1]] += count
    lines = [f"{total} samples (all threads)", "", "inclusive:"]
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in self_.most_common(top)]
    return "\n".join(lines)


async def profile(scenario: str, concurrency: int, seconds: int, items: int, out: Path, top: int) -> None:
    """Run the profile (see the module docstring)."""
    s = next(x for x in SCENARIOS if x.name == scenario)
    work = Path(tempfile.mkdtemp(prefix="pattern-profile-"))
    if items:
        await seed_store(work / "data", items, corpus.vectors(items))
    svc = await ServiceProcess(work / "data", log_file=work / "service.log").start()
    try:
        reqs = requests_for(s, 200_000 if s.unique else 0)
        if s.kind == "stream":
            await _raw_stream(svc.address, s.path, reqs[:32])
        else:
            reply = await _raw_unary(svc.address, s.path, reqs[0], s.metadata)
            RESPONSE_TYPES[s.method].FromString(reply)
        job = Job(
            scenario=s.name,
            method=s.path,
            kind=s.kind,
            requests=reqs,
            targets=[Target("service", svc.address)],
            concurrency=concurrency,
            warmup=0,
            count=10_000_000 if s.kind == "unary" else 2_000_000,
            max_seconds=float(seconds + 2),
            repetitions=1,
            metadata=s.metadata,
            offset=1,
        )
        await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
        folded = out / f"{scenario}-c{concurrency}.folded"
        loop = asyncio.get_running_loop()
        load = loop.run_in_executor(None, run_job, job)
        await asyncio.sleep(1.0)
        spy = await asyncio.to_thread(_spawn_pyspy, svc.pid, seconds, folded)
        summary = (await load)["service"]
        await asyncio.to_thread(spy.wait, seconds + 30)
        print(
            f"{scenario} c={concurrency}: {summary.throughput:.0f}/s, p50 {summary.p50_ms} ms, p95 {summary.p95_ms} ms"
        )
        print(summarize(folded, top))
        print(f"\ncollapsed stacks: {folded}")
    finally:
        svc.stop()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("scenario", choices=[s.name for s in SCENARIOS])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--items", type=int, default=0, help="seed this many memories and success patterns first")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "profiles")
    opts = parser.parse_args(argv)
    asyncio.run(profile(opts.scenario, opts.concurrency, opts.seconds, opts.items, opts.out, opts.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
