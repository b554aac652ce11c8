"""Run inside a mount namespace whose data directory is a small tmpfs (see test_fault_disk_full.py).

Fills the filesystem to just above ``TMWS_MIN_FREE_DISK_MB`` with a ballast file, writes
success patterns through a real server until one is refused, restarts on the same data
with the ballast gone, and prints what it saw as one JSON line:
``{"acknowledged": [...], "refusal": {...}, "after_restart": {...}, "warnings": [...]}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from server_helpers import make_settings, start_server

from pattern_service.store.learning_binding import PATTERN_BINDING
from tmws.pattern.client import PatternClient, PatternServiceError
from tmws.pattern.v1 import pattern_learning_service_pb2 as pl

MIB = 1024 * 1024
THRESHOLD_MB = 8
HEADROOM = 3 * MIB  # free space above the threshold left by the ballast


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _pattern(i: int) -> pl.SuccessPattern:
    msg = pl.SuccessPattern(pattern_type="ops", name=f"pattern {i}", description=f"tune service number {i}")
    msg.execution_trace.update({"log": "x" * 60_000})  # ≈ 60 KB a row: the disk fills in a few dozen writes
    return msg


async def main(data_dir: Path) -> dict[str, object]:
    warnings = _Warnings()
    logging.getLogger("pattern_service").addHandler(warnings)
    settings = make_settings(data_dir, embedder="hashing", min_free_disk_mb=THRESHOLD_MB)
    server = await start_server(settings)
    ballast = data_dir.parent / "ballast"
    acknowledged: list[str] = []
    refusal: dict[str, object] = {}
    try:
        free = shutil.disk_usage(data_dir).free
        with ballast.open("wb") as f:
            f.write(b"\0" * max(0, free - THRESHOLD_MB * MIB - HEADROOM))
            f.flush()
            os.fsync(f.fileno())
        async with PatternClient.connect(f"127.0.0.1:{server.port}", default_timeout=60.0) as client:
            for i in range(1000):
                try:
                    created = await client.create_success_pattern(_pattern(i))
                except PatternServiceError as exc:
                    refusal = {"code": exc.code.name, "reason": exc.reason, "message": str(exc)}
                    break
                acknowledged.append(created.pattern_id)
            # The server still answers after the refusal (it did not die).
            refusal["stats_after"] = (await client.get_stats()) is not None
    finally:
        await server.stop(0)
    ballast.unlink()

    again = await start_server(settings)
    try:
        async with PatternClient.connect(f"127.0.0.1:{again.port}", default_timeout=60.0) as client:
            found = 0
            for pattern_id in acknowledged:
                try:
                    await client.get_success_pattern(pattern_id)
                    found += 1
                except PatternServiceError:
                    pass
        for _ in range(600):  # the outbox applies what the index lacked (bounded wait, not a timing check)
            points = await again.app.index.count(PATTERN_BINDING.collection)
            if points == len(acknowledged) and await again.app.sync.pending_count() == 0:
                break
            await asyncio.sleep(0.1)
        after = {"found": found, "points": points, "pending": await again.app.sync.pending_count()}
    finally:
        await again.stop(0)
    return {"acknowledged": acknowledged, "refusal": refusal, "after_restart": after, "warnings": warnings.lines}


if __name__ == "__main__":
    grpc_logs = logging.getLogger("grpc")
    grpc_logs.setLevel(logging.ERROR)
    result = asyncio.run(main(Path(sys.argv[1])))
    print("RESULT " + json.dumps(result), flush=True)
