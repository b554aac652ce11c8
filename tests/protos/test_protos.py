"""The protos pass buf lint (STANDARD) and the committed generated code is current."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tool(name: str) -> str:
    found = Path(sys.executable).parent / name
    return str(found) if found.exists() else (shutil.which(name) or name)


def test_buf_lint_standard_rules_pass() -> None:
    proc = subprocess.run([_tool("buf"), "lint"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_buf_config_uses_standard_rules() -> None:
    text = (ROOT / "buf.yaml").read_text()
    assert "STANDARD" in text


def test_generated_code_is_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate_protos.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_server_imports_the_client_distributions_messages() -> None:
    import tmws.pattern.v1.pattern_execution_service_pb2 as pe
    from pattern_service.api import convert

    assert convert.pe is pe
    assert Path(pe.__file__).resolve().is_relative_to(ROOT / "clients" / "python" / "src")
