"""The ``tmws-pattern`` command line, run as a subprocess against the fake server (and in-process for usage errors)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2

from fake_pattern_server import TestServer, rich_status
from tmws.pattern.client._cli import main
from tmws.pattern.v1 import EXECUTION_MODE_COMPREHENSIVE, EXECUTION_MODE_FAST


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]


async def cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Run:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tmws.pattern.client",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), 60)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def test_execute(server: TestServer) -> None:
    run = await cli(
        "--target",
        server.target,
        "--metadata",
        "authorization=Bearer t",
        "--timeout",
        "25",
        "execute",
        "check health",
        "--mode",
        "fast",
        "--context",
        '{"agent": "ops"}',
        "--no-cache",
    )
    assert run.code == 0, run.err
    out = run.json()
    assert out["pattern_name"] == "health_check"
    assert out["pattern_type"] == "PATTERN_TYPE_INFRASTRUCTURE"
    assert out["result"] == {"status": "ok"}
    assert out["tokens_used"] == 50
    assert out["cache_hit"] is False  # fields without presence are printed too
    assert out["routing"]["match_source"] == "trigger"
    request = server.recorder.last("Execute")
    assert request.query == "check health"
    assert request.execution_mode == EXECUTION_MODE_FAST
    assert dict(request.context) == {"agent": "ops"}
    assert request.HasField("use_cache") and not request.use_cache
    assert ("authorization", "Bearer t") in server.recorder.metadata["Execute"]
    remaining = server.recorder.time_remaining["Execute"]
    assert remaining is not None and 15.0 < remaining <= 25.5  # the --timeout, not the CLI's 10 s default


async def test_target_from_environment(server: TestServer) -> None:
    run = await cli("stats", env={"TMWS_TARGET": server.target})
    assert run.code == 0, run.err
    assert run.json()["engine"]["total_executions"] == "3"  # int64 is a JSON string


async def test_route(server: TestServer) -> None:
    run = await cli("--target", server.target, "route", "recall notes", "--mode", "comprehensive")
    assert run.code == 0, run.err
    out = run.json()
    assert out["pattern_name"] == "recall"
    assert out["pattern_type"] == "PATTERN_TYPE_MEMORY"
    assert out["alternative_routes"][0]["pattern_name"] == "search"
    assert server.recorder.last("Route").execution_mode == EXECUTION_MODE_COMPREHENSIVE


async def test_match(server: TestServer) -> None:
    run = await cli(
        "--target",
        server.target,
        "match",
        "speed up api",
        "--context",
        "p99 is high",
        "--requirement",
        "r1",
        "--requirement",
        "r2",
        "--limit",
        "5",
        "--min-confidence",
        "0.5",
        "--tag",
        "api",
        "--pattern-type",
        "api_optimization",
        "--status",
        "active",
    )
    assert run.code == 0, run.err
    out = run.json()
    assert out["total_matches"] == 1
    assert out["matched_patterns"][0]["recommendations"] == ["add cache"]
    assert out["query_metadata"]["embedding_model"] == "test-model"
    request = server.recorder.last("MatchPatterns")
    assert request.intent == "speed up api" and request.context == "p99 is high"
    assert list(request.requirements) == ["r1", "r2"]
    assert request.limit == 5 and request.min_confidence == 0.5
    assert list(request.filters.tags) == ["api"]
    assert list(request.filters.pattern_types) == ["api_optimization"]
    assert list(request.filters.statuses) == [1]


async def test_error_status_exit_1_with_details_on_stderr(server: TestServer) -> None:
    server.recorder.errors["Execute"] = rich_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid request",
        error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field="query", description="too long")]
        ),
        reason="INVALID_ARGUMENT",
    )
    run = await cli("--target", server.target, "execute", "x")
    assert run.code == 1
    assert run.out == ""
    assert "error: INVALID_ARGUMENT: invalid request" in run.err
    assert "reason: INVALID_ARGUMENT (pattern.tmws.dev)" in run.err
    assert "field violation: query: too long" in run.err


async def test_unreachable_server_exit_1() -> None:
    run = await cli("--target", "127.0.0.1:1", "--timeout", "2", "stats")
    assert run.code == 1
    assert "UNAVAILABLE" in run.err


async def test_execute_many_plain_lines_from_stdin(server: TestServer) -> None:
    run = await cli("--target", server.target, "execute-many", "--mode", "fast", stdin="check health\n\nrecall notes\n")
    assert run.code == 0, run.err
    lines = sorted(run.lines(), key=lambda line: line["request_id"])
    assert [line["request_id"] for line in lines] == ["1", "3"]  # request_id = line number; blank lines skipped
    assert lines[0]["result"]["pattern_name"] == "check health"
    assert lines[1]["result"]["pattern_name"] == "recall notes"
    assert all(r.execution_mode == EXECUTION_MODE_FAST for r in server.recorder.requests["ExecuteMany"])
    assert run.err == ""  # no progress bar when stderr is not a terminal


async def test_execute_many_jsonl_file_with_errors(server: TestServer, tmp_path: Path) -> None:
    path = tmp_path / "queries.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"request_id": "a", "query": "check health", "mode": "comprehensive", "context": {"k": 1}}),
                "plain query",
                json.dumps({"query": "bad one"}),
                "{not json",
                json.dumps({"request_id": "z", "query": "q", "mode": "turbo"}),
            ]
        )
        + "\n"
    )
    run = await cli("--target", server.target, "execute-many", str(path), "--window", "2", "--no-cache")
    assert run.code == 1  # some items failed
    by_id = {line["request_id"]: line for line in run.lines()}
    # A line that fails locally keeps its own request_id ("z"); one without a valid id is named by its line.
    assert set(by_id) == {"a", "2", "3", "4", "z"}
    assert by_id["a"]["result"]["pattern_name"] == "check health"
    # Integers are printed as integers (Struct numbers arrive as doubles).
    assert by_id["a"]["result"]["metadata"] == {"mode": "EXECUTION_MODE_COMPREHENSIVE", "context": {"k": 1}}
    assert by_id["2"]["result"]["pattern_name"] == "plain query"
    error = by_id["3"]["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert error["message"] == "query is invalid"
    types = [d["@type"] for d in error["details"]]
    assert types == ["type.googleapis.com/google.rpc.ErrorInfo", "type.googleapis.com/google.rpc.BadRequest"]
    assert error["details"][1]["field_violations"] == [{"field": "query", "description": "bad query"}]
    assert (
        by_id["4"]["error"]["code"] == "INVALID_ARGUMENT" and "line 4: invalid JSON" in by_id["4"]["error"]["message"]
    )
    assert "line 5" in by_id["z"]["error"]["message"] and "turbo" in by_id["z"]["error"]["message"]
    sent = {r.request_id: r for r in server.recorder.requests["ExecuteMany"]}
    assert set(sent) == {"a", "2", "3"}
    assert all(not r.use_cache and r.HasField("use_cache") for r in sent.values())
    lenient = await cli("--target", server.target, "execute-many", str(path), "--exit-zero")
    assert lenient.code == 0 and len(lenient.lines()) == 5


async def test_execute_many_stream_error_exit_1(server: TestServer) -> None:
    run = await cli("--target", server.target, "execute-many", "-", stdin="fine\nabort-stream\nnever\n")
    assert run.code == 1
    assert "error: RESOURCE_EXHAUSTED: stream quota exhausted" in run.err


async def test_execute_many_many_lines(server: TestServer) -> None:
    n = 2000
    run = await cli("--target", server.target, "execute-many", stdin="".join(f"query {i}\n" for i in range(n)))
    assert run.code == 0, run.err
    ids = {line["request_id"] for line in run.lines()}
    assert ids == {str(i) for i in range(1, n + 1)}


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad_args = [
        [],
        ["execute"],
        ["execute", "q", "--mode", "turbo"],
        ["execute", "q", "--context", "[1, 2]"],
        ["execute", "q", "--context", "{oops"],
        ["--metadata", "novalue", "stats"],
        ["--timeout", "-1", "stats"],
        ["execute-many", "--window", "0"],
    ]
    for argv in bad_args:
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2, argv
    with pytest.raises(SystemExit) as caught:
        main(["--target", "127.0.0.1:1", "execute-many", str(tmp_path / "missing.txt")])
    assert caught.value.code == 2
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["--target", "127.0.0.1:1", "match", "x", "--status", "sleeping"])
    assert caught.value.code == 2


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "tmws-pattern"
    assert script.exists()


async def test_execute_many_progress_bar_only_on_a_terminal(server: TestServer, tmp_path: Path) -> None:
    import pty

    path = tmp_path / "q.txt"
    path.write_text("".join(f"q{i}\n" for i in range(20)))
    master, slave = pty.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tmws.pattern.client",
            "--target",
            server.target,
            "execute-many",
            str(path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=slave,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if slave != -1:
            os.close(slave)
        os.close(master)
    assert proc.returncode == 0
    assert len(out.decode().splitlines()) == 20
    progress = b"".join(chunks).decode()
    # tqdm: count, rate, ETA and the error count.
    assert "20/20" in progress and "q/s" in progress and "errors=0" in progress and "100%" in progress
