"""Success-pattern lineage in the SQL learning store (SQLite and PostgreSQL): versions, guarded deletes, filters."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from pattern_service.domain import SuccessPatternInput
from pattern_service.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from pattern_service.store.learning import SqlLearningStore

A, B = "tenant-a", "tenant-b"
ROOT = SuccessPatternInput(
    pattern_type="caching",
    name="cache-aside v1",
    description="Cache hot reads with a short ttl",
    execution_trace={"steps": ["add a redis client", "invalidate on write"]},
    success_criteria={"metric": "hit_rate", "threshold": 0.8},
    tags=("redis", "cache"),
)


async def test_a_child_is_its_parents_version_plus_one_unless_given(sql_learning: SqlLearningStore) -> None:
    root = await sql_learning.create(A, ROOT)
    assert root.version == 1
    child = await sql_learning.create(A, replace(ROOT, name="cache-aside v2", parent_pattern_id=root.pattern_id))
    assert child.version == 2
    grandchild = await sql_learning.create(A, replace(ROOT, name="cache-aside v3", parent_pattern_id=child.pattern_id))
    assert grandchild.version == 3
    pinned = await sql_learning.create(
        A, replace(ROOT, name="cache-aside fork", parent_pattern_id=root.pattern_id, version=7)
    )
    assert pinned.version == 7
    assert (await sql_learning.create(A, replace(ROOT, name="standalone", version=4))).version == 4


async def test_updates_that_change_what_the_pattern_is_increment_the_version(sql_learning: SqlLearningStore) -> None:
    p = await sql_learning.create(A, ROOT)
    same = await sql_learning.update(A, p.pattern_id, {"description": ROOT.description, "tags": ["x"]})
    assert same.version == 1  # an unchanged description and a tag change are not a new version
    for field, value in (
        ("description", "Cache hot reads with a 30 s ttl"),
        ("execution_trace", {"steps": ["add a redis client"]}),
        ("success_criteria", {"metric": "hit_rate", "threshold": 0.9}),
    ):
        before = (await sql_learning.get(A, p.pattern_id)).version
        assert (await sql_learning.update(A, p.pattern_id, {field: value})).version == before + 1
    assert (await sql_learning.get(A, p.pattern_id)).version == 4
    for field, value in (
        ("quality_metrics", {"accuracy": 0.5}),
        ("performance_data", {"p99_ms": 3}),
        ("context", {"env": "prod"}),
        ("status", "deprecated"),
        ("name", "renamed"),
        ("success_rate", 0.5),
    ):
        assert (await sql_learning.update(A, p.pattern_id, {field: value})).version == 4, field
    # Two changes in one update are one new version; an explicit version wins.
    both = await sql_learning.update(A, p.pattern_id, {"description": "d2", "execution_trace": {"steps": []}})
    assert both.version == 5
    assert (await sql_learning.update(A, p.pattern_id, {"description": "d3", "version": 9})).version == 9


async def test_concurrent_identity_updates_never_lose_an_increment(sql_learning: SqlLearningStore) -> None:
    p = await sql_learning.create(A, ROOT)
    await asyncio.gather(*(sql_learning.update(A, p.pattern_id, {"description": f"text {i}"}) for i in range(8)))
    assert (await sql_learning.get(A, p.pattern_id)).version == 9


async def test_deleting_a_parent_needs_force_which_detaches_the_children(sql_learning: SqlLearningStore) -> None:
    root = await sql_learning.create(A, ROOT)
    kids = [
        await sql_learning.create(A, replace(ROOT, name=f"child {i}", parent_pattern_id=root.pattern_id))
        for i in range(2)
    ]
    with pytest.raises(FailedPreconditionError) as info:
        await sql_learning.delete(A, root.pattern_id)
    assert info.value.reason == "HAS_CHILD_PATTERNS" and info.value.metadata["child_count"] == "2"
    assert (await sql_learning.get(A, root.pattern_id)).pattern_id == root.pattern_id  # nothing changed
    assert [(await sql_learning.get(A, k.pattern_id)).parent_pattern_id for k in kids] == [root.pattern_id] * 2

    detached = await sql_learning.delete(A, root.pattern_id, force=True)
    assert detached == tuple(k.pattern_id for k in kids)
    with pytest.raises(NotFoundError):
        await sql_learning.get(A, root.pattern_id)
    for k in kids:
        after = await sql_learning.get(A, k.pattern_id)
        assert after.parent_pattern_id is None and after.updated_at >= k.updated_at
    assert await sql_learning.delete(A, kids[0].pattern_id) == ()  # a leaf needs no force


async def test_a_parent_cannot_make_a_cycle(sql_learning: SqlLearningStore) -> None:
    root = await sql_learning.create(A, ROOT)
    child = await sql_learning.create(A, replace(ROOT, name="c", parent_pattern_id=root.pattern_id))
    grandchild = await sql_learning.create(A, replace(ROOT, name="g", parent_pattern_id=child.pattern_id))
    with pytest.raises(InvalidArgumentError):
        await sql_learning.update(A, root.pattern_id, {"parent_pattern_id": grandchild.pattern_id})
    assert (await sql_learning.get(A, root.pattern_id)).parent_pattern_id is None


async def test_list_filters_by_parent_tag_and_name_prefix(sql_learning: SqlLearningStore) -> None:
    root = await sql_learning.create(A, ROOT)
    c1 = await sql_learning.create(
        A, replace(ROOT, name="cache-aside v2", parent_pattern_id=root.pattern_id, tags=("redis",))
    )
    c2 = await sql_learning.create(
        A, replace(ROOT, name="Write-through", parent_pattern_id=root.pattern_id, tags=("memcached", "x_y"))
    )
    other = await sql_learning.create(A, replace(ROOT, name="cache_100%", tags=()))
    await sql_learning.create(B, replace(ROOT, parent_pattern_id=None))  # another tenant's pattern

    async def names(**filters: object) -> list[str]:
        page = await sql_learning.list(A, page_size=100, **filters)  # type: ignore[arg-type]
        assert page.total_size == len(page.items)
        return sorted(p.name for p in page.items)

    assert await names(parent_pattern_id=root.pattern_id) == sorted([c1.name, c2.name])
    assert await names(parent_pattern_id=c1.pattern_id) == []
    assert await names(tags=["redis"]) == sorted([root.name, c1.name])
    assert await names(tags=["memcached", "cache"]) == sorted([root.name, c2.name])
    assert await names(tags=["x"]) == []  # exact tags, not substrings
    assert await names(name_prefix="cache-aside") == sorted([root.name, c1.name])
    assert await names(name_prefix="Cache") == []  # case-sensitive on every backend
    assert await names(name_prefix="cache_") == [other.name]  # _ and % are not wildcards
    assert await names(name_prefix="cache-aside", tags=["cache"], parent_pattern_id=root.pattern_id) == []
    assert await names(name_prefix="cache-", tags=["redis"], parent_pattern_id=root.pattern_id) == [c1.name]

    first = await sql_learning.list(A, page_size=1, parent_pattern_id=root.pattern_id)
    assert first.total_size == 2 and first.next_cursor is not None
    second = await sql_learning.list(A, page_size=1, after=first.next_cursor, parent_pattern_id=root.pattern_id)
    assert {first.items[0].name, second.items[0].name} == {c1.name, c2.name}
