"""A process killed between the SQL commit and the vector upsert loses nothing: the restarted server repairs it."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from pathlib import Path

from process_helpers import (
    REPO,
    ServerProcess,
    open_vector_index,
    poll,
    server_env,
    settings_of,
    struct_to_dict,
)

from pattern_service.store.embeddings import create_embedder
from pattern_service.store.learning_binding import PATTERN_BINDING
from pattern_service.store.memory_binding import MEMORY_BINDING
from pattern_service.store.vector_bindings import VECTOR_BINDINGS
from tmws.pattern.client import PatternClient

MEMORY_COLLECTION = MEMORY_BINDING.collection
PATTERN_COLLECTION = PATTERN_BINDING.collection

MEMORY_TEXT = "the lighthouse keeper logs tide heights every dawn"
PATTERN_TEXT = "replay the write ahead journal after an unexpected power failure"


async def _crash_write(env: dict[str, str]) -> dict[str, str]:
    """Run ``crash_writer.py``; returns the ids it committed (by collection) before SIGKILLing itself."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("crash_writer.py")),
        MEMORY_TEXT,
        PATTERN_TEXT,
        env=env,
        cwd=str(REPO),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(180):
        out, _ = await proc.communicate()
    output = out.decode(errors="replace")
    assert proc.returncode == -signal.SIGKILL, output
    committed = {parts[1]: parts[2] for parts in map(str.split, output.splitlines()) if parts[:1] == ["COMMITTED"]}
    assert set(committed) == {MEMORY_COLLECTION, PATTERN_COLLECTION}, output
    return committed


def _sql_state(db_file: Path) -> tuple[set[str], set[str], int]:
    """(memory ids, success pattern ids, pending outbox rows), read straight from the SQLite file."""
    with sqlite3.connect(f"file:{db_file}?mode=ro", uri=True) as conn:
        memories = {r[0] for r in conn.execute("SELECT memory_id FROM memories")}
        patterns = {r[0] for r in conn.execute("SELECT pattern_id FROM success_patterns")}
        pending = int(conn.execute("SELECT count(*) FROM vector_outbox").fetchone()[0])
    return memories, patterns, pending


async def _index_ids(env: dict[str, str]) -> tuple[set[str], set[str]]:
    """Point ids of both collections, read straight from the vector index (no reconciliation)."""
    settings = settings_of(env)
    embedder = create_embedder("hashing")
    index = open_vector_index(settings)
    try:
        for spec in (b.spec(embedder.dimension, embedder.model_id) for b in VECTOR_BINDINGS):
            await index.ensure_collection(spec)
        return await index.list_ids(MEMORY_COLLECTION), await index.list_ids(PATTERN_COLLECTION)
    finally:
        await index.close()


async def test_write_killed_between_commit_and_upsert_is_synced_after_restart(tmp_path: Path) -> None:
    env = server_env(tmp_path / "data")
    committed = await _crash_write(env)
    memory_id, pattern_id = committed[MEMORY_COLLECTION], committed[PATTERN_COLLECTION]

    # Both rows committed, both outbox rows pending, neither vector written: the crash really hit the gap.
    memories, patterns, pending = _sql_state(tmp_path / "data" / "pattern_service.db")
    assert memory_id in memories and pattern_id in patterns
    assert pending == 2
    memory_points, pattern_points = await _index_ids(env)
    assert memory_id not in memory_points and pattern_id not in pattern_points

    server = await ServerProcess(env).start()
    try:
        async with PatternClient.connect(server.target, default_timeout=60.0) as client:

            async def recalled() -> str | None:
                result = await client.execute("recall memories about tide heights at dawn", use_cache=False)
                found = struct_to_dict(result.result)["memory"]["memories"]
                return found[0]["memory_id"] if found else None

            assert await poll(recalled, "the memory to be recalled by meaning") == memory_id

            async def matched() -> str | None:
                response = await client.match_patterns("journal replay after a power failure", min_confidence=0.1)
                return response.matched_patterns[0].pattern_id if response.matched_patterns else None

            assert await poll(matched, "the success pattern to be matched") == pattern_id
            stored = await client.get_success_pattern(pattern_id)
            assert stored.description == PATTERN_TEXT

        async def outbox_drained() -> bool | None:
            return True if _sql_state(tmp_path / "data" / "pattern_service.db")[2] == 0 else None

        await poll(outbox_drained, "the outbox to drain")
    finally:
        await server.close()
