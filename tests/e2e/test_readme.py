"""Every code block of README.md runs: against a real server, or is listed here with why it cannot.

Blocks are matched by their first line. Python blocks run in a fresh interpreter,
shell blocks line by line in bash (with ``.venv/bin`` on ``PATH``, as after
``make install``) in a scratch directory; ``127.0.0.1:50051`` and ``127.0.0.1:9464``
become the test server's ports. ``text`` blocks are sample output and ``json``
and ``yaml`` blocks must parse.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import yaml
from process_helpers import REPO
from server_helpers import drop_server_database, make_settings, start_server

from pattern_service.server import PatternServer

README = REPO / "README.md"
BIN = pathlib.Path(sys.executable).parent

#: First lines of the blocks a test cannot run, and why.
NOT_RUN = {
    "tmws-pattern eval pattern_service/evaluation/data/routing_default.jsonl --fit --dry-run --plot report.png": (
        "a path in the repository (the blocks run in a scratch directory); "
        "tests/e2e/test_routing_api.py::test_cli_eval_prints_the_table_and_writes_the_plot runs the same command"
    ),
    ".venv/bin/python -m bench.routing                 # the targets below, against baselines, ≈ 15 s": (
        "a benchmark: starts its own server and prints the targets"
    ),
    "make serve   # creates .venv, installs, starts the server on 127.0.0.1:50051 (data in ./var)": (
        "installs and starts the service itself: what every other test does"
    ),
    "export TMWS_API_KEYS='[<entry printed by: python -m pattern_service.api.keys>]'   # it listens on 0.0.0.0": (
        "needs Docker; tests/deploy/test_compose.py checks the compose file"
    ),
    "make bench                        # = python -m bench.run --quick (≈ 7 min)": "benchmarks run minutes",
    "python -m pattern_service reembed --embedder onnx            # while the server keeps serving on the old index": (
        "needs a store written with another embedder; tests/e2e/test_reembed.py runs these three steps"
    ),
    "docker build -t pattern-service .": (
        "no Docker engine in the test environment; tests/deploy/test_docker_run.py runs the image's command"
    ),
    "buf generate --template buf.gen.yaml    # remote plugins: needs access to buf.build": (
        "remote plugins need the network; the include paths are checked by the protoc block"
    ),
    ".venv/bin/python scripts/generate_protos.py          # regenerate stubs + .pyi after editing protos/": (
        "tests/protos runs the same checks (generation, buf lint); make lint is the CI lint step"
    ),
}


@dataclass
class Block:
    language: str
    text: str
    line: int

    @property
    def first(self) -> str:
        return self.text.splitlines()[0] if self.text else ""


def blocks() -> list[Block]:
    found, current, language, start = [], None, "", 0
    for number, line in enumerate(README.read_text().splitlines(), 1):
        if line.startswith("```"):
            if current is None:
                current, language, start = [], line[3:].strip(), number
            else:
                found.append(Block(language, "\n".join(current), start))
                current = None
        elif current is not None:
            current.append(line)
    return found


def commands(text: str) -> list[str]:
    """Shell commands of a block: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture
async def readme_server(tmp_path: pathlib.Path) -> AsyncIterator[tuple[PatternServer, int]]:
    settings = make_settings(tmp_path / "data")
    server = await start_server(settings)
    metrics_port = server.metrics.serve("127.0.0.1:0")
    yield server, metrics_port
    server.metrics.close()
    await server.stop(0)
    await drop_server_database(settings)


async def sh(command: str, cwd: pathlib.Path, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-o",
        "pipefail",
        "-c",
        command,
        cwd=str(cwd),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode()


def test_every_block_is_run_or_listed() -> None:
    firsts = {b.first for b in blocks() if b.language in ("bash", "python")}
    assert set(NOT_RUN) <= firsts, "a NOT_RUN entry no longer matches a README block"


async def test_readme_blocks_run(readme_server: tuple[PatternServer, int], tmp_path: pathlib.Path) -> None:
    server, metrics_port = readme_server
    target = f"127.0.0.1:{server.port}"

    def localize(text: str) -> str:
        return text.replace("127.0.0.1:50051", target).replace("127.0.0.1:9464", f"127.0.0.1:{metrics_port}")

    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "TMWS_TARGET": target}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "clients" / "python" / "src"), str(REPO)])
    work = tmp_path / "work"
    work.mkdir()
    (work / "queries.txt").write_text("calculate 6 * 7\ncheck service health\n")
    for tree in ("protos", "third_party"):  # the protoc block's include paths, relative to a checkout
        (work / tree).symlink_to(REPO / tree)
    ran = 0
    for block in blocks():
        if block.language in ("text", ""):
            continue
        if block.language == "json":
            json.loads(block.text)
            continue
        if block.language == "yaml":
            assert yaml.safe_load(block.text), f"README.md:{block.line}: empty YAML"
            continue
        if block.first in NOT_RUN:
            continue
        if block.language == "python":
            code, out = await sh(f"{sys.executable} - <<'PY'\n{localize(block.text)}\nPY", work, env)
            assert code == 0, f"README.md:{block.line}: python block failed:\n{out}"
            ran += 1
            continue
        assert block.language == "bash", f"README.md:{block.line}: unknown block language {block.language!r}"
        prelude = ""
        uuid = ""
        memory_id = ""
        for command in commands(localize(block.text)):
            if command.startswith("G=") or command.startswith("export "):
                prelude += command + "\n"
                continue
            if "<uuid>" in command:
                command = command.replace("<uuid>", uuid)
            command = command.replace("<memory_id>", memory_id)
            code, out = await sh(prelude + command, work, env)
            expected = (0, 3) if command.startswith("tmws-pattern health") else (0,)
            assert code in expected, f"README.md:{block.line}: `{command}` exited {code}:\n{out}"
            if "CreateSuccessPattern" in command:
                found = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", out)
                assert found, out
                uuid = found.group(0)
            if "/CreateMemory" in command:
                created = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", out)
                assert created, out
                memory_id = created.group(0)
            ran += 1
    assert ran >= 30
