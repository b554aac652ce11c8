"""ExecuteMany: lazy streaming of requests, results and in-band statuses, stream errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

import tmws.pattern.client as pc
from fake_pattern_server import TestServer, rich_status
from tmws.pattern.client import ExecuteManyOutcome, PatternClient
from tmws.pattern.v1 import (
    EXECUTION_MODE_BALANCED,
    EXECUTION_MODE_COMPREHENSIVE,
    EXECUTION_MODE_FAST,
    ExecuteManyRequest,
    ExecuteManyResponse,
)


async def test_results_and_in_band_statuses(client: PatternClient, server: TestServer) -> None:
    items = [
        ("1", "check health"),
        ("2", "bad query", "fast"),
        ("3", "recall notes", "comprehensive", {"agent": "ops"}),
        ExecuteManyRequest(request_id="4", query="as message", execution_mode=EXECUTION_MODE_FAST),
    ]
    outcomes = {o.request_id: o async for o in client.execute_many(items, execution_mode="balanced", use_cache=False)}
    assert set(outcomes) == {"1", "2", "3", "4"}

    ok = outcomes["1"]
    assert ok.ok and ok.error is None and ok.result is not None
    assert ok.result.pattern_name == "check health"
    assert ok.unwrap() is ok.result
    assert ok.response.request_id == "1"

    failed = outcomes["2"]
    assert not failed.ok and failed.result is None
    assert isinstance(failed.error, pc.InvalidArgument)
    assert failed.error.field_violations == [pc.FieldViolation("query", "bad query")]
    assert failed.error.domain == "pattern.tmws.dev"
    with pytest.raises(pc.InvalidArgument):
        failed.unwrap()

    sent = {r.request_id: r for r in server.recorder.requests["ExecuteMany"]}
    assert sent["1"].execution_mode == EXECUTION_MODE_BALANCED  # the default for tuples
    assert sent["1"].HasField("use_cache") and sent["1"].use_cache is False
    assert sent["2"].execution_mode == EXECUTION_MODE_FAST
    assert sent["3"].execution_mode == EXECUTION_MODE_COMPREHENSIVE
    assert dict(sent["3"].context) == {"agent": "ops"}
    assert sent["4"].execution_mode == EXECUTION_MODE_FAST  # messages are sent as they are
    assert not sent["4"].HasField("use_cache")


async def test_accepts_async_iterables_and_metadata(server: TestServer) -> None:
    async def source() -> AsyncIterator[tuple[str, str]]:
        for i in range(5):
            await asyncio.sleep(0)
            yield (f"r{i}", f"query {i}")

    async with PatternClient.connect(server.target, metadata={"authorization": "Bearer x"}) as c:
        ids = sorted([o.request_id async for o in c.execute_many(source(), metadata={"x-batch": "7"})])
    assert ids == [f"r{i}" for i in range(5)]
    assert ("authorization", "Bearer x") in server.recorder.metadata["ExecuteMany"]
    assert ("x-batch", "7") in server.recorder.metadata["ExecuteMany"]
    # Streams have no deadline unless one is given.
    assert server.recorder.time_remaining["ExecuteMany"] is None


async def test_stream_deadline_when_given(client: PatternClient, server: TestServer) -> None:
    assert [o.request_id async for o in client.execute_many([("1", "q")], timeout=5)] == ["1"]
    remaining = server.recorder.time_remaining["ExecuteMany"]
    assert remaining is not None and remaining <= 5.5


async def test_requests_are_read_lazily_under_server_backpressure(client: PatternClient, server: TestServer) -> None:
    """The server reads one request and stops: the client must stop pulling from the source."""
    total = 500
    pulled = 0
    big = "x" * 200_000  # 100 MB in all: far more than the flow-control windows

    def source() -> Iterator[tuple[str, str]]:
        nonlocal pulled
        for i in range(total):
            pulled += 1
            yield (str(i), f"q{i} {big}")

    gate = asyncio.Event()
    server.recorder.stream_gate = gate
    stream = client.execute_many(source())
    first = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.5)
    assert 1 <= pulled < total // 2, pulled
    gate.set()
    outcomes = [await first] + [o async for o in stream]
    assert len(outcomes) == total
    assert pulled == total
    assert stream.sent == total and stream.received == total


async def test_max_in_flight_bounds_outstanding_requests(client: PatternClient, server: TestServer) -> None:
    server.recorder.stream_delay = 0.01
    pulled = 0
    worst = 0
    received = 0

    def source() -> Iterator[tuple[str, str]]:
        nonlocal pulled, worst
        for i in range(30):
            pulled += 1
            worst = max(worst, pulled - received)
            yield (str(i), f"q{i}")

    async for _ in client.execute_many(source(), max_in_flight=3):
        received += 1
    assert received == 30
    # Pulled-but-unanswered never exceeds the window (+1 item pulled while waiting for a slot).
    assert worst <= 4
    with pytest.raises(ValueError):
        client.execute_many([], max_in_flight=0)


async def test_empty_source(client: PatternClient) -> None:
    assert [o async for o in client.execute_many([])] == []


async def test_stream_level_error_is_typed(client: PatternClient, server: TestServer) -> None:
    items = [("1", "fine"), ("2", "abort-stream"), ("3", "never")]
    seen: list[str] = []
    with pytest.raises(pc.ResourceExhausted) as caught:
        async for outcome in client.execute_many(items):
            seen.append(outcome.request_id)
    assert seen == ["1"]
    assert caught.value.message == "stream quota exhausted"
    assert caught.value.error_info is not None


async def test_stream_abort_while_writing_keeps_the_server_status(client: PatternClient, server: TestServer) -> None:
    """A write racing the server's abort must not turn its status into INTERNAL (grpc/grpc#36066)."""
    for _ in range(30):
        items = [("1", "fine"), ("2", "abort-stream")] + [(str(i), "never") for i in range(3, 40)]
        with pytest.raises(pc.ResourceExhausted):
            async for _outcome in client.execute_many(items):
                pass


async def test_error_before_first_response(client: PatternClient, server: TestServer) -> None:
    server.recorder.errors["ExecuteMany"] = rich_status(grpc.StatusCode.UNAUTHENTICATED, "who are you")
    with pytest.raises(pc.Unauthenticated):
        async for _ in client.execute_many([("1", "q")]):
            pass


async def test_source_error_is_reraised_and_call_cancelled(client: PatternClient, server: TestServer) -> None:
    def source() -> Iterator[tuple[str, str]]:
        yield ("1", "ok")
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        async for _ in client.execute_many(source()):
            pass


async def test_bad_item_is_reraised(client: PatternClient) -> None:
    with pytest.raises(TypeError, match="ExecuteMany item"):
        async for _ in client.execute_many([("only-id",)]):  # type: ignore[list-item]
            pass
    with pytest.raises(ValueError, match="execution mode"):
        async for _ in client.execute_many([("1", "q", "turbo")]):
            pass


async def test_early_exit_cancels_the_call(client: PatternClient, server: TestServer) -> None:
    def endless() -> Iterator[tuple[str, str]]:
        i = 0
        while True:
            i += 1
            yield (str(i), f"q{i}")

    async with client.execute_many(endless()) as stream:
        async for _outcome in stream:
            break
    assert stream.received == 1
    # The stream is closed: iterating again ends at once.
    assert [o async for o in stream] == []
    # The channel still works.
    assert (await client.get_stats()).engine.total_executions == 3


def test_outcome_without_result_or_status() -> None:
    outcome = ExecuteManyOutcome.from_response(ExecuteManyResponse(request_id="x"))
    assert isinstance(outcome.error, pc.Unknown)
