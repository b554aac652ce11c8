"""SqlLearningStore against a migrated SQLite file and a real qdrant-edge index."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from pattern_service.domain import (
    MatchFilters,
    MatchQuery,
    SuccessPattern,
    SuccessPatternInput,
    SuccessPatternStatus,
)
from pattern_service.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from pattern_service.store.embeddings import HashingEmbedder
from pattern_service.store.learning import SqlLearningStore
from pattern_service.store.learning_binding import PATTERN_BINDING
from pattern_service.store.vectors.edge import EdgeVectorIndex

A, B = "tenant-a", "tenant-b"
ACTIVE, ARCHIVED, DRAFT = SuccessPatternStatus.ACTIVE, SuccessPatternStatus.ARCHIVED, SuccessPatternStatus.DRAFT

POOLING = SuccessPatternInput(
    pattern_type="api_optimization",
    name="Connection Pooling with Read Replicas",
    description="Optimize database queries using connection pooling and read replicas",
    execution_trace={
        "steps": [
            "Configure connection pool (min=10, max=50)",
            "Setup read replicas (2 instances)",
            "Route read queries to replicas",
        ]
    },
    success_criteria={"metric": "p99_latency_ms", "threshold": 50, "operator": "<"},
    quality_metrics={"accuracy": 0.95, "latency_p99_ms": 45, "reliability": 0.99},
    performance_data={"avg_runtime_ms": 38, "memory_mb": 128, "cpu_usage_pct": 15},
    tags=("postgresql", "optimization", "scaling", "replication"),
    context={"intent": "optimize API performance", "environment": "FastAPI + PostgreSQL"},
)
CACHING = SuccessPatternInput(
    pattern_type="caching",
    name="Redis cache aside",
    description="Cache hot reads in redis with a short ttl and invalidate on write",
    execution_trace={"steps": [{"description": "Add redis client"}, {"action": "Invalidate on write"}, {"x": 1}]},
    quality_metrics={"accuracy": 0.6},
    tags=("redis", "cache"),
)

PATTERN_COLLECTION = PATTERN_BINDING.collection
BACKPRESSURE = SuccessPatternInput(
    pattern_type="streaming",
    name="Bounded stream window",
    description="Apply backpressure to grpc streams with a bounded in-flight window",
    quality_metrics={"accuracy": 0.9},
    tags=("grpc",),
    success_rate=0.8,
)


async def _match(store: SqlLearningStore, tenant: str, intent: str, **filters: object) -> list[SuccessPattern]:
    result = await store.match(
        tenant,
        MatchQuery(intent=intent, filters=MatchFilters(**filters), limit=10, min_confidence=0.0),  # type: ignore[arg-type]
    )
    return [m.pattern for m in result.matches]


async def test_create_get_and_vector(sql_learning: SqlLearningStore, sql_index: EdgeVectorIndex) -> None:
    p = await sql_learning.create(A, POOLING)
    expected_hash = hashlib.sha256(json.dumps(dict(POOLING.context), sort_keys=True).encode()).hexdigest()
    assert p.context_hash == expected_hash
    assert p.quality_score == pytest.approx(0.97)
    assert (p.version, p.match_count, p.success_rate, p.last_matched_at, p.status) == (1, 0, None, None, ACTIVE)
    assert p.created_at == p.updated_at and p.created_at.tzinfo is not None
    assert await sql_learning.get(A, p.pattern_id) == p
    with pytest.raises(NotFoundError):
        await sql_learning.get(B, p.pattern_id)

    vector = (await HashingEmbedder().embed(["connection pooling"]))[0]
    hits = await sql_index.search(PATTERN_COLLECTION, vector, limit=5)
    assert [h.id for h in hits] == [p.pattern_id]
    payload = dict(hits[0].payload)
    assert payload == {
        "pattern_id": p.pattern_id,
        "tenant_id": A,
        "pattern_type": "api_optimization",
        "version": 1,
        "status": "active",
        "tags": ["postgresql", "optimization", "scaling", "replication"],
        "quality_score": pytest.approx(0.97),
        "match_count": 0,
        "created_at": int(p.created_at.timestamp()),
        "model_id": "hashing-v1-384",
    }


async def test_unique_names_per_tenant_and_parents(sql_learning: SqlLearningStore) -> None:
    parent = await sql_learning.create(A, POOLING)
    with pytest.raises(AlreadyExistsError):
        await sql_learning.create(A, POOLING)
    other = await sql_learning.create(B, POOLING)  # same name, other tenant
    with pytest.raises(NotFoundError):
        await sql_learning.create(A, replace(CACHING, parent_pattern_id="00000000-0000-0000-0000-000000000000"))
    with pytest.raises(NotFoundError):  # a parent of another tenant is not visible
        await sql_learning.create(A, replace(CACHING, parent_pattern_id=other.pattern_id))
    child = await sql_learning.create(A, replace(CACHING, parent_pattern_id=parent.pattern_id, version=2))
    assert child.parent_pattern_id == parent.pattern_id and child.version == 2
    assert await sql_learning.delete(A, parent.pattern_id, force=True) == (child.pattern_id,)
    assert (await sql_learning.get(A, child.pattern_id)).parent_pattern_id is None


async def test_list_pages_newest_first_with_tokens(sql_learning: SqlLearningStore) -> None:
    created = [
        await sql_learning.create(A, replace(CACHING, name=f"p{i}", status=DRAFT if i % 3 == 0 else ACTIVE))
        for i in range(7)
    ]
    await sql_learning.create(B, replace(CACHING, name="b-only"))
    newest_first = sorted(created, key=lambda p: (p.created_at, p.pattern_id), reverse=True)

    seen: list[str] = []
    cursor = None
    sizes = []
    while True:
        page = await sql_learning.list(A, page_size=3, after=cursor)
        assert page.total_size == 7
        seen += [p.pattern_id for p in page.items]
        sizes.append(len(page.items))
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sizes == [3, 3, 1]
    assert seen == [p.pattern_id for p in newest_first]

    drafts = await sql_learning.list(A, page_size=10, statuses=[DRAFT])
    assert [p.name for p in drafts.items] == ["p6", "p3", "p0"] and drafts.total_size == 3
    assert (await sql_learning.list(A, page_size=10, pattern_type="nope")).total_size == 0
    assert (await sql_learning.list(B, page_size=10)).total_size == 1


async def test_a_page_continues_after_its_cursor_whatever_was_inserted_since(sql_learning: SqlLearningStore) -> None:
    for i in range(3):
        await sql_learning.create(A, replace(CACHING, name=f"p{i}"))
    first = await sql_learning.list(A, page_size=2)
    assert first.next_cursor is not None and first.next_cursor.id == first.items[-1].pattern_id
    await sql_learning.create(A, replace(CACHING, name="newer"))  # lands before the cursor: not repeated
    rest = await sql_learning.list(A, page_size=2, after=first.next_cursor)
    assert [p.name for p in rest.items] == ["p0"] and rest.next_cursor is None and rest.total_size == 4


async def test_update(sql_learning: SqlLearningStore) -> None:
    p = await sql_learning.create(A, POOLING)
    await sql_learning.create(A, CACHING)
    updated = await sql_learning.update(
        A,
        p.pattern_id,
        {"description": "new text", "quality_metrics": {"accuracy": 0.5}, "context": {"a": 1}, "tags": ["x"]},
    )
    assert updated.description == "new text" and updated.quality_score == 0.5 and updated.tags == ("x",)
    assert updated.context_hash == hashlib.sha256(b'{"a": 1}').hexdigest()
    assert updated.name == p.name and updated.execution_trace == p.execution_trace
    assert updated.updated_at >= p.updated_at and updated.created_at == p.created_at
    assert await sql_learning.get(A, p.pattern_id) == updated
    with pytest.raises(AlreadyExistsError):
        await sql_learning.update(A, p.pattern_id, {"name": CACHING.name})
    with pytest.raises(InvalidArgumentError):
        await sql_learning.update(A, p.pattern_id, {"match_count": 3})
    with pytest.raises(InvalidArgumentError):
        await sql_learning.update(A, p.pattern_id, {"parent_pattern_id": p.pattern_id})
    with pytest.raises(NotFoundError):
        await sql_learning.update(B, p.pattern_id, {"description": "x"})
    assert (await sql_learning.get(A, p.pattern_id)).description == "new text"


async def test_record_outcome_running_rate(sql_learning: SqlLearningStore) -> None:
    p = await sql_learning.create(A, POOLING)
    outcomes = [True] * 8 + [False] + [True] * 7 + [False]
    last = p
    for ok in outcomes:
        last = await sql_learning.record_outcome(A, p.pattern_id, ok)
    assert last.match_count == 17
    assert last.success_rate == 15 / 17
    assert last.last_matched_at is not None
    with pytest.raises(NotFoundError):
        await sql_learning.record_outcome(B, p.pattern_id, True)
    with pytest.raises(NotFoundError):
        await sql_learning.record_outcome(A, "00000000-0000-0000-0000-000000000000", True)


async def test_outcome_rewrites_the_payload_only_and_a_text_change_the_vector(
    sql_learning: SqlLearningStore, sql_index: EdgeVectorIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = await sql_learning.create(A, POOLING)
    before = (await sql_index.retrieve_vectors(PATTERN_COLLECTION, [p.pattern_id]))[p.pattern_id]
    upserts: list[int] = []
    original = sql_index.upsert

    async def counting_upsert(collection: str, points: Any) -> None:
        upserts.append(len(points))
        await original(collection, points)

    monkeypatch.setattr(sql_index, "upsert", counting_upsert)
    for ok in (True, True, False):
        await sql_learning.record_outcome(A, p.pattern_id, ok)
    assert upserts == []  # the embedded text did not change: payload rewritten, vector kept
    hit = (await sql_index.search(PATTERN_COLLECTION, before, limit=1))[0]
    assert hit.id == p.pattern_id and hit.payload["match_count"] == 3
    assert hit.payload["success_rate"] == pytest.approx(2 / 3)
    kept = await sql_learning.match(
        A, MatchQuery(intent=POOLING.description, filters=MatchFilters(min_success_rate=0.6), min_confidence=0.0)
    )
    assert [m.pattern.pattern_id for m in kept.matches] == [p.pattern_id]  # filter pushed down on the new payload

    await sql_learning.update(A, p.pattern_id, {"description": "a different text entirely"})
    assert upserts == [1]  # the text changed: a new vector
    after = (await sql_index.retrieve_vectors(PATTERN_COLLECTION, [p.pattern_id]))[p.pattern_id]
    assert float(np.dot(before, after)) < 0.99


async def test_record_outcome_is_safe_under_concurrency(sql_learning: SqlLearningStore) -> None:
    p = await sql_learning.create(A, POOLING)
    await asyncio.gather(*(sql_learning.record_outcome(A, p.pattern_id, i % 4 != 0) for i in range(20)))
    final = await sql_learning.get(A, p.pattern_id)
    assert final.match_count == 20
    assert final.success_rate == pytest.approx(15 / 20)


async def test_match_ranking_recommendations_and_metadata(sql_learning: SqlLearningStore) -> None:
    pooling = await sql_learning.create(A, POOLING)
    caching = await sql_learning.create(A, CACHING)
    await sql_learning.create(B, replace(POOLING, name="b pooling"))
    result = await sql_learning.match(
        A,
        MatchQuery(
            intent="optimize database connection pooling",
            context="postgresql read replicas",
            requirements=("low latency",),
            limit=5,
            min_confidence=0.0,
        ),
    )
    assert result.embedding_model == "hashing-v1-384" and result.query_time_ms >= 0.0
    assert result.matches[0].pattern.pattern_id == pooling.pattern_id
    assert all(m.pattern.tenant_id == A for m in result.matches)
    assert result.matches[0].recommendations == tuple(POOLING.execution_trace["steps"])
    scores = [m.confidence_score for m in result.matches]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    by_id = {m.pattern.pattern_id: m for m in result.matches}
    assert by_id[caching.pattern_id].recommendations == ("Add redis client", "Invalidate on write")

    strict = await sql_learning.match(A, MatchQuery(intent="optimize database connection pooling", min_confidence=0.99))
    assert strict.matches == ()


async def test_match_filters_are_applied(sql_learning: SqlLearningStore) -> None:
    pooling = await sql_learning.create(A, POOLING)
    caching = await sql_learning.create(A, CACHING)
    stream = await sql_learning.create(A, BACKPRESSURE)
    archived = await sql_learning.create(A, replace(CACHING, name="old cache", status=ARCHIVED))
    q = "database cache grpc stream pooling redis"

    def ids(ps: list[SuccessPattern]) -> set[str]:
        return {p.pattern_id for p in ps}

    assert ids(await _match(sql_learning, A, q)) == {pooling.pattern_id, caching.pattern_id, stream.pattern_id}
    assert ids(await _match(sql_learning, A, q, statuses=(ARCHIVED,))) == {archived.pattern_id}
    assert ids(await _match(sql_learning, A, q, pattern_types=("caching", "streaming"))) == {
        caching.pattern_id,
        stream.pattern_id,
    }
    assert ids(await _match(sql_learning, A, q, tags=("redis", "grpc"))) == {caching.pattern_id, stream.pattern_id}
    assert ids(await _match(sql_learning, A, q, min_quality_score=0.9)) == {pooling.pattern_id, stream.pattern_id}
    assert ids(await _match(sql_learning, A, q, min_success_rate=0.5)) == {stream.pattern_id}  # no rate fails
    assert await _match(sql_learning, B, q) == []

    # changes are visible to match through the outbox
    await sql_learning.update(A, caching.pattern_id, {"status": "deprecated"})
    assert caching.pattern_id not in ids(await _match(sql_learning, A, q))
    for _ in range(3):
        await sql_learning.record_outcome(A, pooling.pattern_id, True)
    assert ids(await _match(sql_learning, A, q, min_success_rate=0.9)) == {pooling.pattern_id}


async def test_delete_removes_row_and_vector(sql_learning: SqlLearningStore, sql_index: EdgeVectorIndex) -> None:
    p = await sql_learning.create(A, POOLING)
    with pytest.raises(NotFoundError):
        await sql_learning.delete(B, p.pattern_id)
    await sql_learning.delete(A, p.pattern_id)
    assert await sql_index.list_ids(PATTERN_COLLECTION) == set()
    with pytest.raises(NotFoundError):
        await sql_learning.get(A, p.pattern_id)
    with pytest.raises(NotFoundError):
        await sql_learning.delete(A, p.pattern_id)
