"""``buf breaking`` against the image of the last released protos (``api-baseline/``), as ``make lint`` runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUF = shutil.which("buf") or str(Path(sys.executable).parent / "buf")
BASELINE = REPO / "api-baseline" / "tmws.pattern.v1.binpb"


def _breaking(workspace: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BUF, "breaking", str(workspace), "--against", str(BASELINE)], capture_output=True, text=True, timeout=120
    )


def test_protos_are_compatible_with_the_last_release() -> None:
    result = _breaking(REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_breaking_change_is_caught(tmp_path: Path) -> None:
    for part in ("protos", "third_party", "buf.yaml"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, tmp_path / part)
        else:
            shutil.copy(source, tmp_path / part)
    proto = tmp_path / "protos" / "tmws" / "pattern" / "v1" / "pattern_execution_service.proto"
    text = proto.read_text()
    assert "  rpc Route(RouteRequest) returns (RouteResponse);\n" in text
    proto.write_text(text.replace("  rpc Route(RouteRequest) returns (RouteResponse);\n", ""))
    result = _breaking(tmp_path)
    assert result.returncode != 0
    assert "Route" in result.stdout
