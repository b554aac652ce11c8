"""PatternLearningService end to end: the shipped client against a real server on real storage."""

from __future__ import annotations

import uuid

import pytest
from google.protobuf import field_mask_pb2

from tmws.pattern.client import AlreadyExists, InvalidArgument, NotFound, PatternClient
from tmws.pattern.v1 import SUCCESS_PATTERN_STATUS_ACTIVE, SUCCESS_PATTERN_STATUS_DEPRECATED, SuccessPattern

POOLING = SuccessPattern(
    pattern_type="api_optimization",
    name="Connection Pooling with Read Replicas",
    description="Optimize database queries using connection pooling and read replicas",
    tags=["postgresql", "optimization", "scaling", "replication"],
)
POOLING.execution_trace.update(
    {
        "steps": [
            "Configure connection pool (min=10, max=50)",
            "Setup read replicas (2 instances)",
            "Route read queries to replicas",
        ]
    }
)
POOLING.quality_metrics.update({"accuracy": 0.95, "latency_p99_ms": 45, "reliability": 0.99})
POOLING.context.update({"intent": "optimize API performance", "environment": "FastAPI + PostgreSQL"})

CACHING = SuccessPattern(
    pattern_type="frontend_performance",
    name="Lazy Image Loading",
    description="Defer offscreen images in the browser to cut initial page weight",
    tags=["frontend", "images"],
)


async def test_create_get_list_update_delete(client: PatternClient) -> None:
    created = await client.create_success_pattern(POOLING)
    assert uuid.UUID(created.pattern_id)
    assert created.version == 1 and created.status == SUCCESS_PATTERN_STATUS_ACTIVE
    assert len(created.context_hash) == 64
    assert created.quality_score == pytest.approx(0.97)
    assert created.HasField("created_at") and not created.HasField("last_matched_at")

    got = await client.get_success_pattern(created.pattern_id)
    assert got == created

    await client.create_success_pattern(CACHING)
    first = await client.list_success_patterns(page_size=1)
    assert first.total_size == 2 and len(first.success_patterns) == 1 and first.next_page_token
    second = await client.list_success_patterns(page_size=1, page_token=first.next_page_token)
    assert {first.success_patterns[0].name, second.success_patterns[0].name} == {POOLING.name, CACHING.name}
    assert not second.next_page_token

    change = SuccessPattern(pattern_id=created.pattern_id, status=SUCCESS_PATTERN_STATUS_DEPRECATED, version=2)
    updated = await client.update_success_pattern(change, field_mask_pb2.FieldMask(paths=["status", "version"]))
    assert updated.status == SUCCESS_PATTERN_STATUS_DEPRECATED and updated.version == 2
    assert updated.name == POOLING.name  # fields outside the mask are untouched

    await client.delete_success_pattern(created.pattern_id)
    with pytest.raises(NotFound):
        await client.get_success_pattern(created.pattern_id)
    with pytest.raises(NotFound):
        await client.delete_success_pattern(created.pattern_id)


async def test_duplicate_name_is_already_exists_and_changes_nothing(client: PatternClient) -> None:
    await client.create_success_pattern(POOLING)
    with pytest.raises(AlreadyExists):
        await client.create_success_pattern(POOLING)
    assert (await client.list_success_patterns()).total_size == 1


async def test_bad_input_reports_every_field(client: PatternClient) -> None:
    bad = SuccessPattern(pattern_type="", name="", version=-1, tags=[""], status=99)  # type: ignore[arg-type]
    bad.success_rate = 1.5
    with pytest.raises(InvalidArgument) as info:
        await client.create_success_pattern(bad)
    fields = {v.field for v in info.value.field_violations}
    assert {
        "success_pattern.pattern_type",
        "success_pattern.name",
        "success_pattern.version",
        "success_pattern.tags[0]",
        "success_pattern.status",
        "success_pattern.success_rate",
    } <= fields
    assert (await client.list_success_patterns()).total_size == 0

    with pytest.raises(InvalidArgument) as info:
        await client.get_success_pattern("not-a-uuid")
    assert info.value.field_violations[0].field == "pattern_id"

    with pytest.raises(InvalidArgument) as info:
        await client.match_patterns("x" * 1001, limit=101)
    assert {v.field for v in info.value.field_violations} == {"intent", "limit"}

    with pytest.raises(InvalidArgument):
        await client.list_success_patterns(page_token="garbage")

    created = await client.create_success_pattern(POOLING)
    with pytest.raises(InvalidArgument) as info:
        await client.update_success_pattern(
            SuccessPattern(pattern_id=created.pattern_id), field_mask_pb2.FieldMask(paths=["match_count"])
        )
    assert info.value.field_violations[0].field == "update_mask.paths[0]"


async def test_match_by_paraphrase_with_filters_and_recommendations(client: PatternClient) -> None:
    await client.create_success_pattern(POOLING)
    await client.create_success_pattern(CACHING)
    response = await client.match_patterns(
        "make slow postgres reads faster under heavy traffic", limit=5, min_confidence=0.2
    )
    assert response.matched_patterns[0].name == POOLING.name
    top = response.matched_patterns[0]
    assert 0.2 <= top.confidence_score <= 1.0
    assert top.recommendations[0] == "Configure connection pool (min=10, max=50)"
    assert response.query_metadata.embedding_model == "all-MiniLM-L6-v2-onnx-int8-dynamic"
    assert response.total_matches == len(response.matched_patterns)

    filtered = await client.match_patterns("make slow postgres reads faster", tags=["frontend"], min_confidence=0.0)
    assert [m.name for m in filtered.matched_patterns] == [CACHING.name]
    strict = await client.match_patterns("make slow postgres reads faster", min_quality_score=0.9, min_confidence=0.0)
    assert [m.name for m in strict.matched_patterns] == [POOLING.name]


async def test_record_outcome_running_success_rate(client: PatternClient) -> None:
    created = await client.create_success_pattern(POOLING)
    pattern = created
    for i in range(17):
        pattern = await client.record_pattern_outcome(created.pattern_id, success=i < 15)
    assert pattern.match_count == 17
    assert pattern.success_rate == pytest.approx(15 / 17)
    assert pattern.HasField("last_matched_at")
    low = await client.match_patterns("database read replicas", min_success_rate=0.9, min_confidence=0.0)
    assert low.total_matches == 0
    ok = await client.match_patterns("database read replicas", min_success_rate=0.85, min_confidence=0.0)
    assert [m.name for m in ok.matched_patterns] == [POOLING.name]


async def test_tenants_never_see_each_other(client: PatternClient, other_tenant: PatternClient) -> None:
    created = await client.create_success_pattern(POOLING)
    with pytest.raises(NotFound):
        await other_tenant.get_success_pattern(created.pattern_id)
    assert (await other_tenant.list_success_patterns()).total_size == 0
    assert (await other_tenant.match_patterns("database connection pooling", min_confidence=0.0)).total_matches == 0
    # The same name is free in another tenant.
    await other_tenant.create_success_pattern(POOLING)
