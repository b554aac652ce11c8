"""The image's command with the README's ``docker run`` settings, on a fresh data directory (no Docker engine here).

Reads ``CMD`` and the ``ENV`` of the Dockerfile, runs that command with a fresh
``TMWS_DATA_DIR`` and an inline ``TMWS_API_KEYS`` entry made by ``hash-key``
(as the README says), and calls the server with the key.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import socket
import subprocess
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = pathlib.Path(__file__).resolve().parents[2]


def _dockerfile() -> tuple[dict[str, str], list[str]]:
    text = (REPO / "Dockerfile").read_text()
    env_block = re.search(r"^ENV ((?:.*\\\n)*.*)$", text, re.MULTILINE)
    assert env_block is not None
    env = dict(re.findall(r"(\w+)=(\S+)", env_block.group(1)))
    cmd = re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert cmd is not None
    return env, json.loads(cmd.group(1))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_image_command_serves_on_a_fresh_volume(tmp_path: pathlib.Path) -> None:
    image_env, cmd = _dockerfile()
    assert cmd[:2] == ["sh", "-c"]
    made = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pattern_service", "hash-key", "--name", "ops", "--tenant", "default"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    key = (made.stdout + made.stderr).split("key (shown once): ")[1].split()[0]
    entry = made.stdout.strip().splitlines()[-1]
    port = _free_port()
    env = {
        **os.environ,
        **image_env,
        "TMWS_GRPC_ADDRESS": f"0.0.0.0:{port}",
        "TMWS_METRICS_ADDRESS": "",
        "TMWS_DATA_DIR": str(tmp_path / "fresh-volume"),
        # The image derives the int8 model at build time into /app/models; here the fast embedder stands in.
        "TMWS_EMBEDDER": "hashing",
        "TMWS_API_KEYS": f"[{entry}]",
        "PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("TMWS_MODEL_CACHE_DIR", None)
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=env, cwd=str(REPO), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(120):
            while True:
                line = (await proc.stdout.readline()).decode()
                assert line, "the command exited before serving"
                if "serving tmws.pattern.v1" in line:
                    break
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
            stats = channel.unary_unary("/tmws.pattern.v1.PatternExecutionService/GetStats")
            await stats(b"", metadata=[("authorization", f"Bearer {key}")], timeout=10)
            try:
                await stats(b"", timeout=10)
                raise AssertionError("a call without the key was answered")
            except grpc.aio.AioRpcError as exc:
                assert exc.code() is grpc.StatusCode.UNAUTHENTICATED
    finally:
        proc.terminate()
        await proc.wait()
