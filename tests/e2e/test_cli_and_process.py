"""The shipped CLI against a real server, the metrics endpoint, and the server as a process (SIGTERM)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import urllib.request
from pathlib import Path

from pattern_service.server import PatternServer
from tmws.pattern.client import PatternClient
from tmws.pattern.v1 import SuccessPattern


async def cli(target: str, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """Run ``tmws-pattern`` without blocking the server's event loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tmws.pattern.client",
        "--target",
        target,
        "--timeout",
        "30",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli_execute_route_match_stats(target: str, client: PatternClient) -> None:
    rc, out, err = await cli(target, "execute", "store the pager rota for December", "--context", '{"agent": "ops"}')
    assert rc == 0, err
    assert json.loads(out)["pattern_name"] == "store_memory"

    rc, out, err = await cli(target, "execute", "recall memories about the pager rota")
    assert rc == 0, err
    memories = json.loads(out)["result"]["memory"]["memories"]
    assert memories[0]["content"] == "the pager rota for December"

    rc, out, err = await cli(target, "route", "analyze the system architecture", "--mode", "fast")
    assert rc == 0, err
    decision = json.loads(out)
    assert decision["pattern_name"] == "analyze_codebase" and decision["pattern_type"] == "PATTERN_TYPE_INFRASTRUCTURE"

    await client.create_success_pattern(
        SuccessPattern(
            pattern_type="ops", name="Follow-the-sun on-call", description="Rotate pager duty across time zones"
        )
    )
    rc, out, err = await cli(target, "match", "share on-call duty between regions", "--min-confidence", "0.1")
    assert rc == 0, err
    assert json.loads(out)["matched_patterns"][0]["name"] == "Follow-the-sun on-call"

    rc, out, err = await cli(target, "stats")
    assert rc == 0, err
    assert int(json.loads(out)["engine"]["total_executions"]) == 2


async def test_cli_execute_many_from_stdin_plain_and_jsonl(target: str) -> None:
    lines = [
        "check service health",
        json.dumps({"request_id": "calc", "query": "calculate 7 * 6"}),
        json.dumps({"request_id": "bad", "query": ""}),
        json.dumps({"request_id": "mem", "query": "recall memories", "mode": "fast"}),
    ]
    rc, out, err = await cli(target, "execute-many", "-", stdin="\n".join(lines) + "\n")
    assert rc == 1  # some items failed
    rows = {row["request_id"]: row for row in map(json.loads, out.splitlines())}
    assert set(rows) == {"1", "calc", "bad", "mem"}
    assert rows["1"]["result"]["pattern_name"] == "health_check"
    assert rows["calc"]["result"]["result"]["infrastructure"]["output"]["result"] == 42
    assert rows["bad"]["error"]["code"] == "INVALID_ARGUMENT"
    assert rows["mem"]["error"]["code"] == "FAILED_PRECONDITION"
    assert "[" not in err  # no progress bar when stderr is not a terminal


async def test_cli_reports_errors_with_exit_code(target: str) -> None:
    rc, out, err = await cli(target, "execute", "")
    assert rc == 1 and out == ""
    assert "INVALID_ARGUMENT" in err and "query" in err


async def test_metrics_endpoint_counts_executions(server: PatternServer, client: PatternClient) -> None:
    port = server.metrics.serve("127.0.0.1:0")
    try:
        await client.execute("calculate 2 + 2")
        await client.execute("calculate 2 + 2")
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        )
    finally:
        server.metrics.close()
    assert 'tmws_pattern_executions_total{cache_hit="false",pattern_type="infrastructure",success="true"} 1.0' in body
    assert 'tmws_pattern_executions_total{cache_hit="true",pattern_type="infrastructure",success="true"} 1.0' in body
    assert "tmws_pattern_execution_duration_seconds_bucket" in body
    assert "pattern_sync_lag_seconds" in body


async def test_server_process_serves_then_stops_on_sigterm(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        TMWS_GRPC_ADDRESS="127.0.0.1:0",
        TMWS_METRICS_ADDRESS="",
        TMWS_DATA_DIR=str(tmp_path / "data"),
        TMWS_EMBEDDER="hashing",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pattern_service",
        "serve",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    port = 0
    log: list[str] = []
    async with asyncio.timeout(120):
        while not port:
            line = (await proc.stdout.readline()).decode()
            assert line, "server exited early:\n" + "".join(log)
            log.append(line)
            if found := re.search(r"serving tmws\.pattern\.v1 on [\d.]+:(\d+)", line):
                port = int(found.group(1))
    async with PatternClient.connect(f"127.0.0.1:{port}") as client:
        result = await client.execute("calculate 3 * 3")
        assert result.success
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(60):
        rest = (await proc.stdout.read()).decode()
        assert await proc.wait() == 0
    assert "stopped" in rest
    assert (tmp_path / "data" / "pattern_service.db").is_file()
