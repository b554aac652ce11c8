"""The server SIGKILLed in the middle of a stream of writes keeps every write it acknowledged, in SQL and the index."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from process_helpers import ServerProcess, poll, server_env, struct_to_dict

from tmws.pattern.client import PatternClient, PatternServiceError
from tmws.pattern.v1 import SuccessPattern

MEMORY_ACKS = 30  # kill once this many memories ...
PATTERN_ACKS = 8  # ... and this many success patterns were acknowledged
PATTERN_WRITERS = 2
MAX_ITEMS = 100_000  # the stream ends itself only if the kill never comes


def _words(n: int = 3) -> str:
    """``n`` words that occur in no other text of the test (the hashing embedder is lexical)."""
    return " ".join(f"w{uuid.uuid4().hex[:10]}" for _ in range(n))


@dataclass
class Acks:
    """Writes the server acknowledged: memory id -> (content, tag) and pattern id -> description."""

    memories: dict[str, tuple[str, str]] = field(default_factory=dict)
    patterns: dict[str, str] = field(default_factory=dict)
    enough: asyncio.Event = field(default_factory=asyncio.Event)

    def check(self) -> None:
        """Set :attr:`enough` once both counts are reached."""
        if len(self.memories) >= MEMORY_ACKS and len(self.patterns) >= PATTERN_ACKS:
            self.enough.set()


async def _stream_memories(client: PatternClient, acks: Acks) -> None:
    """``ExecuteMany`` of "store ..." items until the server dies; records each acknowledged write."""
    sent: dict[str, tuple[str, str]] = {}

    async def requests() -> AsyncIterator[tuple[str, str, None, dict[str, object]]]:
        for i in range(MAX_ITEMS):
            tag = f"crash{i}x{uuid.uuid4().hex[:6]}"
            content = f"crash note {i} {_words()}"
            sent[str(i)] = (content, tag)
            yield str(i), f"store {content}", None, {"tags": [tag]}

    with contextlib.suppress(PatternServiceError):
        async for outcome in client.execute_many(requests(), max_in_flight=16):
            if outcome.ok and outcome.result is not None and outcome.result.success:
                memory = struct_to_dict(outcome.result.result)["memory"]["memory"]
                assert memory["content"] == sent[outcome.request_id][0]
                acks.memories[memory["memory_id"]] = sent[outcome.request_id]
                acks.check()


async def _create_patterns(client: PatternClient, acks: Acks, writer: int) -> None:
    """``CreateSuccessPattern`` calls one after another until the server dies; records each acknowledged one."""
    for i in range(MAX_ITEMS):
        description = f"crash recipe {writer}-{i} {_words()}"
        try:
            created = await client.create_success_pattern(
                SuccessPattern(pattern_type="crash_test", name=f"crash {writer}-{i}", description=description)
            )
        except PatternServiceError:
            return
        assert created.description == description
        acks.patterns[created.pattern_id] = description
        acks.check()


async def _write_until_killed(server: ServerProcess) -> Acks:
    acks = Acks()
    async with PatternClient.connect(server.target, default_timeout=60.0) as client:
        writers = [asyncio.create_task(_stream_memories(client, acks))]
        writers += [asyncio.create_task(_create_patterns(client, acks, w)) for w in range(PATTERN_WRITERS)]
        try:
            async with asyncio.timeout(300):
                await acks.enough.wait()
            assert await server.kill() == -9
            async with asyncio.timeout(120):
                await asyncio.gather(*writers)
        finally:
            for task in writers:
                task.cancel()
            await asyncio.gather(*writers, return_exceptions=True)
    return acks


async def _check_memory(client: PatternClient, memory_id: str, content: str, tag: str) -> None:
    """In SQL (listed by its tag) and in the index (recalled by its own text as the top hit)."""
    tagged = await client.execute(f"memories tagged with {tag}", use_cache=False)
    listed = struct_to_dict(tagged.result)["memory"]["memories"]
    assert [m["memory_id"] for m in listed] == [memory_id], listed

    async def recalled_first() -> bool | None:
        result = await client.execute(f"recall memories about {content}", use_cache=False)
        found = struct_to_dict(result.result)["memory"]["memories"]
        return True if found and found[0]["memory_id"] == memory_id else None

    await poll(recalled_first, f"memory {memory_id} to be recalled by its text")


async def _check_pattern(client: PatternClient, pattern_id: str, description: str) -> None:
    """In SQL (get) and in the index (matched by its own description as the top hit)."""
    stored = await client.get_success_pattern(pattern_id)
    assert stored.description == description

    async def matched_first() -> bool | None:
        response = await client.match_patterns(description, limit=1, min_confidence=0.1)
        found = response.matched_patterns
        return True if found and found[0].pattern_id == pattern_id else None

    await poll(matched_first, f"pattern {pattern_id} to be matched by its description")


async def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    env = server_env(tmp_path / "data")
    first = await ServerProcess(env).start()
    try:
        acks = await _write_until_killed(first)
    finally:
        await first.close()
    assert len(acks.memories) >= MEMORY_ACKS and len(acks.patterns) >= PATTERN_ACKS

    second = await ServerProcess(env).start()
    try:
        async with PatternClient.connect(second.target, default_timeout=60.0) as client:
            for memory_id, (content, tag) in acks.memories.items():
                await _check_memory(client, memory_id, content, tag)
            for pattern_id, description in acks.patterns.items():
                await _check_pattern(client, pattern_id, description)
    finally:
        await second.close()
