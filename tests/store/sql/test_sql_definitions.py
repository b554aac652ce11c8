"""SqlPatternDefinitionStore: batches, versions, seeding, persistence."""

from __future__ import annotations

import asyncio

import pytest

from pattern_service.domain import PatternDefinition, PatternType
from pattern_service.errors import NotFoundError
from pattern_service.store.db import Database
from pattern_service.store.definitions import SqlPatternDefinitionStore


def _definition(name: str, **kw: object) -> PatternDefinition:
    values: dict[str, object] = {
        "name": name,
        "pattern_type": PatternType.MEMORY,
        "trigger_pattern": rf"\b{name}\b",
        "cost_tokens": 150,
        "priority": 5,
        "cache_ttl": 60,
        "metadata": {"operation": "recall", "extra": {"k": [1, 2]}},
        "description": f"the {name} pattern",
        "examples": (f"please {name}", f"{name} now"),
    }
    values.update(kw)
    return PatternDefinition(**values)  # type: ignore[arg-type]


async def test_empty_store(sql_definitions: SqlPatternDefinitionStore) -> None:
    assert await sql_definitions.load() == ([], 0)
    assert await sql_definitions.version() == 0
    assert not await sql_definitions.is_seeded()


async def test_apply_batch_creates_then_replaces(sql_definitions: SqlPatternDefinitionStore) -> None:
    stored, created, replaced, version = await sql_definitions.apply_batch(
        [
            _definition("recall_memory"),
            _definition("health", pattern_type=PatternType.INFRASTRUCTURE, trigger_pattern=None),
        ],
        mark_seeded=True,
    )
    assert (created, replaced, version) == (2, 0, 1)
    assert [d.name for d in stored] == ["recall_memory", "health"]
    assert all(d.create_time is not None and d.create_time == d.update_time for d in stored)
    assert stored[1].trigger_pattern is None
    assert await sql_definitions.is_seeded()

    first_create = stored[0].create_time
    stored2, created, replaced, version = await sql_definitions.apply_batch(
        [_definition("recall_memory", priority=90, examples=("x",)), _definition("store_memory")]
    )
    assert (created, replaced, version) == (1, 1, 2)
    replaced_def = stored2[0]
    assert replaced_def.priority == 90 and replaced_def.examples == ("x",)
    assert replaced_def.create_time == first_create
    assert replaced_def.update_time is not None and first_create is not None
    assert replaced_def.update_time >= first_create

    loaded, v = await sql_definitions.load()
    assert v == 2
    by_name = {d.name: d for d in loaded}
    assert set(by_name) == {"health", "recall_memory", "store_memory"}
    assert by_name["recall_memory"].metadata == {"operation": "recall", "extra": {"k": [1, 2]}}
    assert by_name["health"].pattern_type is PatternType.INFRASTRUCTURE
    assert by_name["store_memory"].examples == ("please store_memory", "store_memory now")
    assert await sql_definitions.is_seeded()  # stays seeded


async def test_delete_bumps_version_once_and_unknown_changes_nothing(
    sql_definitions: SqlPatternDefinitionStore,
) -> None:
    await sql_definitions.apply_batch([_definition("a_one"), _definition("b_two")])
    assert await sql_definitions.delete("a_one") == 2
    with pytest.raises(NotFoundError) as info:
        await sql_definitions.delete("a_one")
    assert info.value.resource_type == "PatternDefinition"
    assert await sql_definitions.version() == 2
    assert [d.name for d in (await sql_definitions.load())[0]] == ["b_two"]


async def test_concurrent_batches_each_bump_the_version(sql_definitions: SqlPatternDefinitionStore) -> None:
    results = await asyncio.gather(
        *(sql_definitions.apply_batch([_definition(f"p_{i}"), _definition("shared")]) for i in range(8))
    )
    assert sorted(r[3] for r in results) == list(range(1, 9))
    assert sum(r[1] for r in results) == 9  # 8 distinct + "shared" created once
    assert sum(r[2] for r in results) == 7
    loaded, version = await sql_definitions.load()
    assert version == 8 and len(loaded) == 9


async def test_definitions_survive_a_new_database_object(sql_db: Database, sql_url: str) -> None:
    await SqlPatternDefinitionStore(sql_db).apply_batch([_definition("kept")], mark_seeded=True)
    other = Database(sql_url)
    try:
        store = SqlPatternDefinitionStore(other)
        loaded, version = await store.load()
        assert [d.name for d in loaded] == ["kept"] and version == 1
        assert await store.is_seeded()
    finally:
        await other.dispose()
