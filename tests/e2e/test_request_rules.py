"""Each request rule has one source (issue 11): the API's settings, not a second copy in the engine."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest
from server_helpers import drop_server_database, make_settings, start_server

from tmws.pattern.client import InvalidArgument, PatternClient
from tmws.pattern.v1 import SuccessPattern

#: A query length above the engine's former own limit (10,000 characters).
LIMIT = 20_000


@pytest.fixture
async def long_query_client(tmp_path: pathlib.Path) -> AsyncIterator[PatternClient]:
    """A client of a server started with ``TMWS_MAX_QUERY_LENGTH`` = :data:`LIMIT`."""
    settings = make_settings(tmp_path / "data", max_query_length=LIMIT)
    server = await start_server(settings)
    try:
        async with PatternClient.connect(f"127.0.0.1:{server.port}", default_timeout=60.0) as client:
            yield client
    finally:
        await server.stop(0)
        await drop_server_database(settings)


def _query(length: int) -> str:
    head = "check service health "
    return head + "y" * (length - len(head))  # no trailing blank: trimming keeps every character


async def test_a_query_the_setting_allows_runs_past_the_former_engine_limit(
    long_query_client: PatternClient,
) -> None:
    query = _query(15_000)
    assert len(query) == 15_000
    decision = await long_query_client.route(query)
    assert decision.pattern_name == "health_check"
    result = await long_query_client.execute(query)
    assert result.pattern_name == "health_check" and result.success
    stats = await long_query_client.get_stats()
    assert stats.engine.total_executions == 1


async def test_a_query_over_the_setting_is_refused_with_a_field_violation(
    long_query_client: PatternClient,
) -> None:
    for call in (long_query_client.execute, long_query_client.route):
        with pytest.raises(InvalidArgument) as info:
            await call(_query(LIMIT + 1))
        assert [v.field for v in info.value.field_violations] == ["query"]
        assert str(LIMIT) in info.value.field_violations[0].description
    assert (await long_query_client.get_stats()).engine.total_executions == 0  # nothing ran


async def test_a_page_token_continues_its_own_list_only(client: PatternClient, other_tenant: PatternClient) -> None:
    for name in ("first", "second", "third"):
        await client.create_success_pattern(SuccessPattern(pattern_type="caching", name=name, tags=["redis"]))
    first = await client.list_success_patterns(page_size=2, tags=["redis"])
    assert len(first.success_patterns) == 2 and first.next_page_token
    rest = await client.list_success_patterns(page_size=2, tags=["redis"], page_token=first.next_page_token)
    assert [p.name for p in rest.success_patterns] == ["first"] and not rest.next_page_token
    for replay in (
        client.list_success_patterns(page_size=2, page_token=first.next_page_token),  # filters changed
        other_tenant.list_success_patterns(page_size=2, tags=["redis"], page_token=first.next_page_token),
    ):
        with pytest.raises(InvalidArgument) as info:
            await replay
        assert [v.field for v in info.value.field_violations] == ["page_token"]
        assert info.value.reason == "INVALID_PAGE_TOKEN"
    with pytest.raises(InvalidArgument) as info:  # the same codec for the definitions list
        await client.list_pattern_definitions(page_size=2, page_token=first.next_page_token)
    assert [v.field for v in info.value.field_violations] == ["page_token"]
