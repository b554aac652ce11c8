"""Start-up failures: one line naming the setting and the fix, a distinct exit code, no traceback unless DEBUG."""

from __future__ import annotations

import asyncio
import pathlib
import socket
import sys

import pytest
from process_helpers import REPO, server_env
from server_helpers import drop_server_database, make_settings, start_server

from pattern_service.startup import EXIT_CONFIG, EXIT_OSERR, EXIT_UNAVAILABLE


async def run_server(env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pattern_service",
        "serve",
        env=env,
        cwd=str(REPO),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    # grpc core's own C log lines aside.
    text = "\n".join(line for line in out.decode().splitlines() if not line.startswith(("I1", "W1", "E1")))
    return proc.returncode, text


def _the_error_line(output: str) -> str:
    errors = [line for line in output.splitlines() if "CRITICAL" in line]
    assert len(errors) == 1, output
    assert "Traceback" not in output, output
    return errors[0]


@pytest.mark.parametrize(
    ("variables", "code", "setting"),
    [
        ({"TMWS_CACHE_TTL": "abc"}, EXIT_CONFIG, "TMWS_CACHE_TTL"),
        ({"TMWS_EMBEDDER": "bert"}, EXIT_CONFIG, "TMWS_EMBEDDER"),
        ({"TMWS_API_KEYS_FILE": "/nonexistent/keys.json"}, EXIT_CONFIG, "TMWS_API_KEYS_FILE"),
        ({"TMWS_TLS_CERT_FILE": "/nonexistent/cert.pem"}, EXIT_CONFIG, "TMWS_TLS_CERT_FILE"),
        ({"TMWS_GRPC_ADDRESS": "0.0.0.0:0"}, EXIT_CONFIG, "TMWS_GRPC_ADDRESS"),
        ({"TMWS_PATTERNS_FILE": "/nonexistent/patterns.yaml"}, EXIT_CONFIG, "TMWS_PATTERNS_FILE"),
        (
            {"TMWS_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/nothing", "TMWS_DB_CONNECT_TIMEOUT": "2"},
            EXIT_UNAVAILABLE,
            "TMWS_DATABASE_URL",
        ),
    ],
)
async def test_one_line_and_exit_code(
    tmp_path: pathlib.Path, variables: dict[str, str], code: int, setting: str
) -> None:
    env = server_env(tmp_path / "data", **variables)
    returncode, output = await run_server(env)
    line = _the_error_line(output)
    assert returncode == code, output
    assert setting in line and "fix:" in line


async def test_address_in_use(tmp_path: pathlib.Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        returncode, output = await run_server(server_env(tmp_path / "data", TMWS_GRPC_ADDRESS=f"127.0.0.1:{port}"))
    line = _the_error_line(output)
    assert returncode == EXIT_OSERR and "TMWS_GRPC_ADDRESS" in line


async def test_bad_pattern_file_and_debug_traceback(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "patterns.yaml"
    bad.write_text("patterns:\n  - name: x\n    pattern_type: teleport\n    cost_tokens: 1\n")
    env = server_env(tmp_path / "data", TMWS_PATTERNS_FILE=str(bad))
    returncode, output = await run_server(env)
    assert returncode == EXIT_CONFIG
    assert "TMWS_PATTERNS_FILE" in _the_error_line(output) and "teleport" in output
    returncode, output = await run_server({**env, "TMWS_LOG_LEVEL": "DEBUG"})
    assert returncode == EXIT_CONFIG and "Traceback" in output


async def test_embedder_that_does_not_match_the_stored_vectors(tmp_path: pathlib.Path) -> None:
    settings = make_settings(tmp_path / "data", embedder="hashing")
    server = await start_server(settings)
    await server.stop(0)
    try:
        env = server_env(tmp_path / "data", TMWS_EMBEDDER="onnx")
        if settings.database_url:
            env["TMWS_DATABASE_URL"] = settings.database_url
        returncode, output = await run_server(env)
        line = _the_error_line(output)
        assert returncode == EXIT_CONFIG and "TMWS_EMBEDDER" in line
    finally:
        await drop_server_database(settings)
