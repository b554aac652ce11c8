"""Every example sentence of every default pattern succeeds on that pattern's own tool and memory operation.

The sentences are read from the bundled ``patterns.yaml`` (not listed here), and
each runs directly on what its pattern names (``metadata.tool`` through the tool
registry, ``metadata.operation`` through the memory executor), with the subject
the pattern's own trigger leaves (the whole sentence when the trigger does not
match it): routing is not involved.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest
import yaml

from pattern_service.domain import MemoryOperation, NewMemory
from pattern_service.engine import PatternExecutionEngine
from pattern_service.engine.executors import InfrastructureExecutor, MemoryExecutor, tags_in
from pattern_service.engine.memory_context import parse_memory_context
from pattern_service.engine.text import command_span, subject_of
from pattern_service.engine.tools import ToolServices
from pattern_service.engine.validation import compile_trigger
from pattern_service.store.embeddings import HashingEmbedder
from pattern_service.store.memories import SqlMemoryStore

TENANT = "examples"


def _examples() -> list[tuple[str, str]]:
    text = resources.files("pattern_service.engine").joinpath("patterns.yaml").read_text(encoding="utf-8")
    patterns: list[dict[str, Any]] = yaml.safe_load(text)["patterns"]
    return [(p["name"], example) for p in patterns for example in p.get("examples") or ()]


EXAMPLES = _examples()


def _subject(trigger: str | None, query: str) -> str:
    if not trigger:
        return subject_of(query, None)
    regex = compile_trigger(trigger)

    def search(text: str) -> tuple[int, int] | None:
        m = regex.search(text)
        return None if m is None else (m.start(), m.end())

    span = search(query)
    return subject_of(query, None if span is None else command_span(search, query, span))


async def _probe() -> dict[str, Any]:
    return {"memory_store": {"healthy": True}}


def test_the_pattern_set_has_examples() -> None:
    assert len(EXAMPLES) >= 40 and len({name for name, _ in EXAMPLES}) == 14


@pytest.mark.parametrize(("pattern", "example"), EXAMPLES, ids=[f"{n}:{e}" for n, e in EXAMPLES])
async def test_example_succeeds_on_its_own_pattern(
    pattern: str,
    example: str,
    eng_engine: PatternExecutionEngine,
    eng_memories: SqlMemoryStore,
    eng_embedder: HashingEmbedder,
) -> None:
    definition = eng_engine.registry.get(pattern)
    assert definition is not None
    for content, tags in (
        ("security audit found an expired TLS certificate", ("security",)),
        ("the deployment of payments finished after a database migration", ("deployment", "performance")),
        ("caching with a short ttl cut read latency", ("performance",)),
    ):
        await eng_memories.store(NewMemory(tenant_id=TENANT, content=content, tags=tags, importance=0.9))
    named = tags_in(example, {})
    if named:  # a memory carrying the tags the example names, for search_by_tag to find
        await eng_memories.store(NewMemory(tenant_id=TENANT, content=f"notes on {example}", tags=named))
    subject = _subject(definition.trigger_pattern, example)
    if definition.tool is not None:
        services = ToolServices(
            eng_engine.registries.for_tenant,
            _probe,
            lambda t: eng_engine.get_stats(t).as_dict(),
            eng_embedder,
            eng_engine.tools,
        )
        part = await InfrastructureExecutor(eng_engine.tools, services).run(
            definition.tool, query=example, subject=subject, context={}, tenant_id=TENANT
        )
        assert part.success, f"{definition.tool} failed on {example!r} (subject {subject!r}): {part.error}"
    if definition.operation is not None:
        memory = MemoryExecutor(eng_memories)
        call = memory.prepare(definition.operation, parse_memory_context({}), query=example, subject=subject)
        part = await memory.run(call, TENANT)
        assert part.success
        if definition.operation is MemoryOperation.SEARCH_BY_TAG:
            assert part.data["count"] >= 1, f"no memory tagged {call.tags} for {example!r}"
