"""A nearly full filesystem: writes are refused with RESOURCE_EXHAUSTED, a start exits with one line; no SIGBUS.

The data directory is a small tmpfs mounted in a mount namespace of the server's
own (``unshare -rm``: a user namespace, so no privilege is needed where
unprivileged user namespaces are allowed); where mounting is not permitted the
tests are skipped with the reason. Before the free-space checks, the embedded
vector index died of ``SIGBUS`` on both (no log line, no error to the caller).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from process_helpers import REPO, server_env

from pattern_service.startup import EXIT_CANTCREAT

HERE = Path(__file__).parent


def _mount_refusal() -> str | None:
    """Why a tmpfs cannot be mounted in a private mount namespace here, or ``None`` when it can."""
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"cannot mount a tmpfs in a private mount namespace: {probe.stderr.strip() or probe.returncode}"
    return None


pytestmark = pytest.mark.skipif(_mount_refusal() is not None, reason=str(_mount_refusal()))


async def _in_small_filesystem(size: str, mount: Path, env: dict[str, str], *command: str) -> tuple[int, str]:
    """Run ``command`` in a new mount namespace where ``mount`` is a tmpfs of ``size``."""
    mount.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - one mkdir before the subprocess
    script = 'mount -t tmpfs -o size="$0" tmpfs "$1" && mkdir -p "$1/data" && shift && exec "$@"'
    proc = await asyncio.create_subprocess_exec(
        "unshare",
        "-rm",
        "sh",
        "-c",
        script,
        size,
        str(mount),
        *command,
        env=env,
        cwd=str(REPO),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 600)
    except TimeoutError:  # leave nothing running
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    lines = [line for line in out.decode().splitlines() if not line.startswith(("I1", "W1", "E1"))]
    return proc.returncode, "\n".join(lines)


async def test_a_start_on_a_nearly_full_filesystem_exits_with_one_line(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    env = server_env(mount / "data")  # the default TMWS_MIN_FREE_DISK_MB (256) on a 16 MiB filesystem
    code, output = await _in_small_filesystem("16m", mount, env, sys.executable, "-m", "pattern_service", "serve")
    assert code == EXIT_CANTCREAT, (code, output)  # before: -7 (SIGBUS) and nothing logged
    errors = [line for line in output.splitlines() if "CRITICAL" in line]
    assert len(errors) == 1 and "Traceback" not in output, output
    assert "MiB free" in errors[0] and "TMWS_MIN_FREE_DISK_MB" in errors[0], errors[0]


async def test_writes_on_a_filling_disk_are_refused_and_nothing_acknowledged_is_lost(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    env = server_env(mount / "data")
    env["PYTHONPATH"] = f"{HERE.parent}{':'}{env['PYTHONPATH']}"
    scenario = str(HERE / "disk_full_scenario.py")
    code, output = await _in_small_filesystem("160m", mount, env, sys.executable, scenario, str(mount / "data"))
    assert code == 0, (code, output)  # before: the server died of SIGBUS (or SQLite failed the writes INTERNAL)
    result = json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[7:])
    refusal = result["refusal"]
    assert refusal["code"] == "RESOURCE_EXHAUSTED" and refusal["reason"] == "INSUFFICIENT_DISK_SPACE", result
    assert refusal["stats_after"], result
    acknowledged = len(result["acknowledged"])
    assert acknowledged > 0, result
    assert result["after_restart"] == {"found": acknowledged, "points": acknowledged, "pending": 0}, result
    assert any("disk nearly full" in line and "MiB free" in line for line in result["warnings"]), result
