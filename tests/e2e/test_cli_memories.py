"""``tmws-pattern memories …`` against a real server: JSONL output, import through BatchCreateMemories."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import sys
from dataclasses import dataclass
from typing import Any


@dataclass
class Run:
    code: int
    out: str
    err: str

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]


async def cli(target: str, *args: str) -> Run:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tmws.pattern.client",
        "--target",
        target,
        "memories",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def test_memories_commands(target: str, tmp_path: pathlib.Path) -> None:
    created = await cli(target, "create", "the ops wiki holds the runbooks", "--agent", "ops", "--tag", "wiki")
    assert created.code == 0, created.err
    (memory,) = created.lines()
    memory_id = memory["memory_id"]
    assert memory["tags"] == ["wiki"] and memory["importance"] == 0.5

    got = await cli(target, "get", memory_id)
    assert got.lines() == [memory]
    updated = await cli(target, "update", memory_id, "--json", '{"importance": 0.9, "tags": ["wiki", "ops"]}')
    assert updated.code == 0, updated.err
    assert updated.lines()[0]["importance"] == 0.9 and updated.lines()[0]["tags"] == ["wiki", "ops"]

    path = tmp_path / "memories.jsonl"
    rows = [{"content": f"imported note {i} about the billing service", "agentId": "importer"} for i in range(2300)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    imported = await cli(target, "import", str(path), "--progress", "always")
    assert imported.code == 0, imported.err
    assert len(imported.lines()) == 2300 and "2300/2300" in imported.err  # three chunks, a finished bar

    listed = await cli(target, "list", "--agent", "importer", "--limit", "5")
    assert [m["agent_id"] for m in listed.lines()] == ["importer"] * 5
    assert len((await cli(target, "list", "--all-tag", "wiki", "--all-tag", "ops")).lines()) == 1

    found = await cli(target, "search", "where are the runbooks", "--agent", "ops")
    assert found.code == 0, found.err
    assert [hit["memory"]["memory_id"] for hit in found.lines()] == [memory_id] and found.lines()[0]["score"] > 0.2

    refused = await cli(target, "purge")
    assert refused.code == 2 and "--all" in refused.err
    preview = await cli(target, "purge", "--agent", "importer")
    assert preview.lines()[0]["purge_count"] == 2300 and not preview.lines()[0]["forced"]
    purged = await cli(target, "purge", "--agent", "importer", "--force")
    assert purged.lines()[0]["purge_count"] == 2300
    assert (await cli(target, "list")).lines() == [updated.lines()[0]]

    deleted = await cli(target, "delete", memory_id)
    assert deleted.lines() == [{"deleted": memory_id}]
    missing = await cli(target, "get", memory_id)
    assert missing.code == 1 and "NOT_FOUND" in missing.err


async def test_import_stops_at_a_bad_chunk(target: str, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps({"content": f"good {i}"}) for i in range(3)]
    lines += [json.dumps({"content": "bad importance", "importance": 7}), json.dumps({"content": "good 4"})]
    path.write_text("\n".join(lines) + "\n")
    run = await cli(target, "import", str(path), "--batch-size", "3", "--progress", "never")
    assert run.code == 1
    assert "requests[0].memory.importance" in run.err and "bad file lines: [4]" in run.err
    assert len(run.lines()) == 3  # the first chunk was stored and printed; the bad chunk was not
    assert len((await cli(target, "list")).lines()) == 3

    unparsable = tmp_path / "broken.jsonl"
    unparsable.write_text('{"content": "fine"}\nnot json\n')
    broken = await cli(target, "import", str(unparsable))
    assert broken.code == 2 and "line 2" in broken.err
