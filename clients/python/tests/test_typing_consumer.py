"""The wheel, installed with its ``typing`` extra in a fresh virtualenv, type-checks a consumer under ``mypy --strict``.

Builds the client wheel (no build isolation: the running interpreter's
setuptools), creates a new virtualenv, installs ``wheel[typing]`` and mypy from
the package index (pip's cache when warm), and runs ``mypy --strict`` on a
consumer of the typed client and the generated stubs; a consumer with a type
error must be refused, so the check is not vacuous (stubs typed as ``Any``
would let it through).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[1]

CONSUMER = textwrap.dedent(
    """
    from __future__ import annotations

    import grpc

    from tmws.pattern.client import PatternClient, PatternServiceError
    from tmws.pattern.v1 import ExecuteRequest, ExecutionResult, PatternDefinition
    from tmws.pattern.v1 import pattern_execution_service_pb2_grpc as pe_grpc


    async def typed_client(target: str) -> int:
        async with PatternClient.connect(target) as client:
            try:
                result: ExecutionResult = await client.execute("calculate 1 + 1")
            except PatternServiceError as error:
                return error.code.value[0]
            definition: PatternDefinition = await client.get_pattern_definition("quick_calculation")
            return result.tokens_used + definition.priority


    async def generated_stub(target: str) -> str:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pe_grpc.PatternExecutionServiceStub(channel)
            response = await stub.Execute(ExecuteRequest(query="calculate 2 + 2"))
            return response.result.pattern_name
    """
)

WRONG = CONSUMER + textwrap.dedent(
    """

    async def wrong(target: str) -> int:
        async with PatternClient.connect(target) as client:
            result = await client.execute("x")
            return result.pattern_name  # a str, not an int
    """
)


def _run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MYPYPATH")}
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_wheel_with_typing_extra_type_checks_a_strict_consumer(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", dist, CLIENT)
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("tmws_pattern_client-*.whl")
    venv = tmp_path / "venv"
    assert _run(sys.executable, "-m", "venv", venv).returncode == 0
    python = venv / "bin" / "python"
    installed = _run(python, "-m", "pip", "install", "-q", f"{wheel}[typing]", "mypy>=1.10")
    assert installed.returncode == 0, installed.stderr
    project = tmp_path / "consumer"
    project.mkdir()
    (project / "consumer.py").write_text(CONSUMER)
    (project / "wrong.py").write_text(WRONG)
    ok = _run(python, "-m", "mypy", "--strict", "--no-incremental", "consumer.py", cwd=project)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    refused = _run(python, "-m", "mypy", "--strict", "--no-incremental", "wrong.py", cwd=project)
    assert refused.returncode == 1, refused.stdout
    assert 'Incompatible return value type (got "str", expected "int")' in refused.stdout
