"""Every unary method of PatternClient: request sent, response returned, deadline and metadata applied."""

from __future__ import annotations

import pytest
from google.protobuf import field_mask_pb2, struct_pb2

from fake_pattern_server import CANNED, SUCCESS_PATTERN, TestServer
from tmws.pattern.client import (
    DEFAULT,
    ExecutionMode,
    PatternClient,
    PatternType,
    SuccessPatternStatus,
    parse_execution_mode,
    parse_pattern_type,
    parse_success_pattern_status,
)
from tmws.pattern.v1 import (
    EXECUTION_MODE_BALANCED,
    EXECUTION_MODE_COMPREHENSIVE,
    EXECUTION_MODE_FAST,
    EXECUTION_MODE_UNSPECIFIED,
    PATTERN_TYPE_HYBRID,
    PATTERN_TYPE_MEMORY,
    SUCCESS_PATTERN_STATUS_ACTIVE,
    SUCCESS_PATTERN_STATUS_ARCHIVED,
    SUCCESS_PATTERN_STATUS_DRAFT,
    ExecuteRequest,
    GetStatsRequest,
    ListPatternDefinitionsRequest,
    ListPatternDefinitionsResponse,
    ListSuccessPatternsRequest,
    ListSuccessPatternsResponse,
    MatchPatternsRequest,
    PatternDefinition,
    PatternMatchFilters,
    RecordPatternOutcomeRequest,
    RegisterBatchRequest,
    RouteRequest,
    SuccessPattern,
    UpdateSuccessPatternRequest,
)


def _struct(value: dict[str, object]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


async def test_execute_builds_request_and_returns_result(client: PatternClient, server: TestServer) -> None:
    result = await client.execute(
        "check health", execution_mode="fast", context={"agent": "ops", "tags": ["a", "b"], "limit": 5}, use_cache=False
    )
    assert result == CANNED["Execute"].result  # type: ignore[attr-defined]
    request = server.recorder.last("Execute")
    assert request == ExecuteRequest(
        query="check health",
        execution_mode=ExecutionMode.Value("EXECUTION_MODE_FAST"),
        context=_struct({"agent": "ops", "tags": ["a", "b"], "limit": 5}),
        use_cache=False,
    )


async def test_execute_defaults_leave_optional_fields_unset(client: PatternClient, server: TestServer) -> None:
    await client.execute("q")
    request = server.recorder.last("Execute")
    assert request.execution_mode == EXECUTION_MODE_UNSPECIFIED
    assert not request.HasField("context")
    assert not request.HasField("use_cache")


async def test_execute_accepts_enum_values_and_struct(client: PatternClient, server: TestServer) -> None:
    await client.execute("q", execution_mode=EXECUTION_MODE_COMPREHENSIVE, context=_struct({"x": 1}))
    request = server.recorder.last("Execute")
    assert request.execution_mode == EXECUTION_MODE_COMPREHENSIVE
    assert request.context == _struct({"x": 1})


async def test_execute_rejects_bad_arguments_locally(client: PatternClient, server: TestServer) -> None:
    with pytest.raises(ValueError, match="expected one of: fast, balanced, comprehensive"):
        await client.execute("q", execution_mode="turbo")
    with pytest.raises(TypeError):
        await client.execute("q", context={"when": object()})
    assert "Execute" not in server.recorder.requests


async def test_route(client: PatternClient, server: TestServer) -> None:
    decision = await client.route("recall notes", execution_mode="balanced", context={"agent": "a"})
    assert decision == CANNED["Route"].decision  # type: ignore[attr-defined]
    assert server.recorder.last("Route") == RouteRequest(
        query="recall notes", execution_mode=EXECUTION_MODE_BALANCED, context=_struct({"agent": "a"})
    )


async def test_register_batch(client: PatternClient, server: TestServer) -> None:
    definition = PatternDefinition(name="p", pattern_type=PATTERN_TYPE_MEMORY, trigger_pattern="x")
    response = await client.register_batch([definition], validate_only=True)
    assert response == CANNED["RegisterBatch"]
    assert server.recorder.last("RegisterBatch") == RegisterBatchRequest(
        pattern_definitions=[definition], validate_only=True
    )


async def test_list_and_delete_pattern_definitions(client: PatternClient, server: TestServer) -> None:
    page = await client.list_pattern_definitions(page_size=10, page_token="t", pattern_type="hybrid")
    assert page == CANNED["ListPatternDefinitions"]
    assert server.recorder.last("ListPatternDefinitions") == ListPatternDefinitionsRequest(
        page_size=10, page_token="t", pattern_type=PATTERN_TYPE_HYBRID
    )
    deleted = await client.delete_pattern_definition("p")
    assert deleted.registry_version == 8
    assert server.recorder.last("DeletePatternDefinition").name == "p"


async def test_iter_all_pattern_definitions_follows_page_tokens(client: PatternClient, server: TestServer) -> None:
    server.recorder.pages["ListPatternDefinitions"] = [
        ListPatternDefinitionsResponse(
            pattern_definitions=[PatternDefinition(name="a"), PatternDefinition(name="b")],
            next_page_token="2",
        ),
        ListPatternDefinitionsResponse(pattern_definitions=[PatternDefinition(name="c")]),
    ]
    names = [d.name async for d in client.iter_all_pattern_definitions(page_size=2, pattern_type="memory")]
    assert names == ["a", "b", "c"]
    tokens = [r.page_token for r in server.recorder.requests["ListPatternDefinitions"]]
    assert tokens == ["", "2"]
    assert all(r.page_size == 2 for r in server.recorder.requests["ListPatternDefinitions"])


async def test_get_stats(client: PatternClient, server: TestServer) -> None:
    stats = await client.get_stats()
    assert stats.engine.total_executions == 3
    assert server.recorder.last("GetStats") == GetStatsRequest()


async def test_match_patterns(client: PatternClient, server: TestServer) -> None:
    response = await client.match_patterns(
        "speed up api",
        context="p99 too high",
        requirements=["< 50 ms"],
        pattern_types=["api_optimization"],
        statuses=["active", "draft"],
        tags=["api"],
        min_quality_score=0.5,
        min_success_rate=0.6,
        limit=5,
        min_confidence=0.4,
    )
    assert response == CANNED["MatchPatterns"]
    assert server.recorder.last("MatchPatterns") == MatchPatternsRequest(
        intent="speed up api",
        context="p99 too high",
        requirements=["< 50 ms"],
        filters=PatternMatchFilters(
            pattern_types=["api_optimization"],
            statuses=[SUCCESS_PATTERN_STATUS_ACTIVE, SUCCESS_PATTERN_STATUS_DRAFT],
            tags=["api"],
            min_quality_score=0.5,
            min_success_rate=0.6,
        ),
        limit=5,
        min_confidence=0.4,
    )


async def test_match_patterns_optional_filters_unset(client: PatternClient, server: TestServer) -> None:
    await client.match_patterns("x")
    request = server.recorder.last("MatchPatterns")
    assert not request.HasField("min_confidence")
    assert not request.filters.HasField("min_quality_score")


async def test_success_pattern_crud(client: PatternClient, server: TestServer) -> None:
    new = SuccessPattern(name="cache_api", pattern_type="api_optimization")
    assert await client.create_success_pattern(new) == SUCCESS_PATTERN
    assert server.recorder.last("CreateSuccessPattern").success_pattern == new

    assert await client.get_success_pattern("id-1") == SUCCESS_PATTERN
    assert server.recorder.last("GetSuccessPattern").pattern_id == "id-1"

    page = await client.list_success_patterns(page_size=3, page_token="t", pattern_type="x", statuses=["archived"])
    assert page == CANNED["ListSuccessPatterns"]
    assert server.recorder.last("ListSuccessPatterns") == ListSuccessPatternsRequest(
        page_size=3, page_token="t", pattern_type="x", statuses=[SUCCESS_PATTERN_STATUS_ARCHIVED]
    )

    updated = SuccessPattern(pattern_id="id-1", tags=["t"])
    assert await client.update_success_pattern(updated, ["tags", "status"]) == SUCCESS_PATTERN
    assert server.recorder.last("UpdateSuccessPattern") == UpdateSuccessPatternRequest(
        success_pattern=updated, update_mask=field_mask_pb2.FieldMask(paths=["tags", "status"])
    )
    await client.update_success_pattern(updated, "name, tags")
    assert list(server.recorder.last("UpdateSuccessPattern").update_mask.paths) == ["name", "tags"]

    assert await client.delete_success_pattern("id-1") == ["id-2"]
    assert server.recorder.last("DeleteSuccessPattern").pattern_id == "id-1"
    await client.delete_success_pattern("id-1", force=True)
    assert server.recorder.last("DeleteSuccessPattern").force

    await client.list_success_patterns(parent_pattern_id="id-0", tags=["a", "b"], name_prefix="cache")
    assert server.recorder.last("ListSuccessPatterns") == ListSuccessPatternsRequest(
        parent_pattern_id="id-0", tags=["a", "b"], name_prefix="cache"
    )

    assert await client.record_pattern_outcome("id-1", True) == SUCCESS_PATTERN
    assert server.recorder.last("RecordPatternOutcome") == RecordPatternOutcomeRequest(pattern_id="id-1", success=True)


async def test_iter_all_success_patterns(client: PatternClient, server: TestServer) -> None:
    server.recorder.pages["ListSuccessPatterns"] = [
        ListSuccessPatternsResponse(success_patterns=[SUCCESS_PATTERN], next_page_token="n"),
        ListSuccessPatternsResponse(success_patterns=[SUCCESS_PATTERN]),
    ]
    patterns = [p async for p in client.iter_all_success_patterns(statuses=["active"])]
    assert len(patterns) == 2
    assert [r.page_token for r in server.recorder.requests["ListSuccessPatterns"]] == ["", "n"]


async def test_default_deadline_is_applied(client: PatternClient, server: TestServer) -> None:
    await client.get_stats()
    remaining = server.recorder.time_remaining["GetStats"]
    assert remaining is not None and 5.0 < remaining <= 10.5  # 10 s default; wide margin for a loaded machine


async def test_per_call_deadline_overrides_default(client: PatternClient, server: TestServer) -> None:
    await client.get_stats(timeout=30.0)
    remaining = server.recorder.time_remaining["GetStats"]
    assert remaining is not None and 20.0 < remaining <= 30.5
    await client.get_stats(timeout=None)
    assert server.recorder.time_remaining["GetStats"] is None
    await client.get_stats(timeout=DEFAULT)
    remaining = server.recorder.time_remaining["GetStats"]
    assert remaining is not None and 5.0 < remaining <= 10.5


async def test_client_default_timeout_is_configurable(server: TestServer) -> None:
    async with PatternClient.connect(server.target, default_timeout=None) as c:
        await c.get_stats()
        assert server.recorder.time_remaining["GetStats"] is None
    async with PatternClient.connect(server.target, default_timeout=30) as c:
        await c.get_stats()
        remaining = server.recorder.time_remaining["GetStats"]
        assert remaining is not None and 20.0 < remaining <= 30.5
    with pytest.raises(ValueError):
        PatternClient.connect(server.target, default_timeout=0)


async def test_metadata_client_and_per_call(server: TestServer) -> None:
    async with PatternClient.connect(server.target, metadata={"authorization": "Bearer t"}) as c:
        await c.execute("q", metadata=[("x-request-id", "r1"), ("x-trace-bin", b"\x00\x01")])
    sent = server.recorder.metadata["Execute"]
    assert ("authorization", "Bearer t") in sent
    assert ("x-request-id", "r1") in sent
    assert ("x-trace-bin", b"\x00\x01") in sent
    assert any(k == "user-agent" and "tmws-pattern-client/" in str(v) for k, v in sent)


async def test_wait_until_ready(client: PatternClient) -> None:
    await client.wait_until_ready(timeout=5)
    assert client.default_timeout == 10.0
    assert client.execution_stub is not None and client.learning_stub is not None


def test_enum_helpers() -> None:
    assert parse_execution_mode("FAST") == ExecutionMode.Value("EXECUTION_MODE_FAST")
    assert parse_execution_mode(" comprehensive ") == EXECUTION_MODE_COMPREHENSIVE
    assert parse_execution_mode("EXECUTION_MODE_BALANCED") == EXECUTION_MODE_BALANCED
    assert parse_execution_mode(None) == EXECUTION_MODE_UNSPECIFIED
    assert parse_execution_mode(1) == EXECUTION_MODE_FAST
    assert parse_pattern_type("infrastructure") == PatternType.Value("PATTERN_TYPE_INFRASTRUCTURE")
    assert parse_success_pattern_status("deprecated") == SuccessPatternStatus.Value("SUCCESS_PATTERN_STATUS_DEPRECATED")
    with pytest.raises(ValueError):
        parse_execution_mode(9)
    with pytest.raises(ValueError):
        parse_pattern_type("quantum")
    with pytest.raises(TypeError):
        parse_execution_mode(True)
