"""OpenTelemetry: the span tree of one Execute (in-memory exporter), trace context from the caller, JSON logs."""

from __future__ import annotations

import io
import json
import logging
import pathlib
from collections.abc import AsyncIterator

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from server_helpers import drop_server_database, make_settings, start_server

from pattern_service import tracing
from pattern_service.logs import TraceContextFilter, formatter
from pattern_service.server import PatternServer
from tmws.pattern.v1 import ExecuteManyRequest, ExecuteRequest
from tmws.pattern.v1 import pattern_execution_service_pb2_grpc as pe_grpc

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"


@pytest.fixture
def exporter() -> AsyncIterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.enable(provider)
    yield memory
    tracing.disable()


@pytest.fixture
async def traced_server(tmp_path: pathlib.Path, exporter: InMemorySpanExporter) -> AsyncIterator[PatternServer]:
    settings = make_settings(tmp_path / "data")
    server = await start_server(settings)  # after tracing.enable: the guard installs server spans
    yield server
    await server.stop(0)
    await drop_server_database(settings)


def tree(spans: list[ReadableSpan], root: ReadableSpan) -> list[str]:
    """``root`` and its descendants as indented lines (children in start order)."""
    lines: list[str] = []

    def walk(node: ReadableSpan, depth: int) -> None:
        lines.append("  " * depth + node.name)
        children = [s for s in spans if s.parent is not None and s.parent.span_id == node.context.span_id]
        for child in sorted(children, key=lambda s: s.start_time or 0):
            walk(child, depth + 1)

    walk(root, 0)
    return lines


def _execute_root(spans: list[ReadableSpan]) -> ReadableSpan:
    roots = [s for s in spans if s.name == "tmws.pattern.v1.PatternExecutionService/Execute"]
    assert len(roots) == 1, [s.name for s in spans]
    return roots[0]


async def test_span_tree_of_one_execute(traced_server: PatternServer, exporter: InMemorySpanExporter) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{traced_server.port}") as channel:
        stub = pe_grpc.PatternExecutionServiceStub(channel)
        exporter.clear()
        response = await stub.Execute(
            ExecuteRequest(query="calculate (2 + 3) * 4"), metadata=[("traceparent", TRACEPARENT)], timeout=30
        )
    assert response.result.success
    spans = list(exporter.get_finished_spans())
    root = _execute_root(spans)
    lines = tree(spans, root)
    print("\n" + "\n".join(lines))
    # The caller's trace continues: same trace id, the caller's span is the parent.
    assert format(root.context.trace_id, "032x") == TRACE_ID
    assert root.parent is not None and format(root.parent.span_id, "016x") == CALLER_SPAN_ID
    assert root.parent.is_remote
    assert root.kind is SpanKind.SERVER
    assert root.attributes is not None
    assert root.attributes["rpc.system"] == "grpc"
    assert root.attributes["rpc.method"] == "Execute"
    assert root.attributes["rpc.grpc.status_code"] == 0
    assert lines[:1] == ["tmws.pattern.v1.PatternExecutionService/Execute"]
    assert set(lines[1:]) >= {"  route", "  cache.lookup", "  tool.run"}
    assert all(s.context.trace_id == root.context.trace_id for s in spans)


async def test_memory_execute_traces_embed_vector_search_and_sql(
    traced_server: PatternServer, exporter: InMemorySpanExporter
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{traced_server.port}") as channel:
        stub = pe_grpc.PatternExecutionServiceStub(channel)
        await stub.Execute(ExecuteRequest(query="store the deploy checklist for the payments service"), timeout=30)
        exporter.clear()
        response = await stub.Execute(ExecuteRequest(query="recall memories about deploying payments"), timeout=30)
    assert response.result.success
    spans = list(exporter.get_finished_spans())
    lines = tree(spans, _execute_root(spans))
    print("\n" + "\n".join(lines))
    names = {line.strip() for line in lines}
    assert {"route", "embed", "vector.search", "sql"} <= names


async def test_errors_mark_the_server_span(traced_server: PatternServer, exporter: InMemorySpanExporter) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{traced_server.port}") as channel:
        stub = pe_grpc.PatternExecutionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Execute(ExecuteRequest(query="   "), timeout=30)
    root = _execute_root(list(exporter.get_finished_spans()))
    assert root.attributes is not None
    assert root.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]


def test_json_log_lines_carry_trace_and_span_ids(exporter: InMemorySpanExporter) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter("json"))
    handler.addFilter(TraceContextFilter())
    logger = logging.getLogger("tmws.test.json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("outside any span")
        with tracing.span("work"):
            logger.warning("inside a span", extra={"pattern_name": "quick_calculation"})
    finally:
        logger.removeHandler(handler)
    outside, inside = (json.loads(line) for line in stream.getvalue().splitlines())
    (work,) = exporter.get_finished_spans()
    assert outside["message"] == "outside any span" and "trace_id" not in outside
    assert inside["level"] == "WARNING" and inside["logger"] == "tmws.test.json"
    assert inside["pattern_name"] == "quick_calculation"
    assert inside["trace_id"] == format(work.context.trace_id, "032x")
    assert inside["span_id"] == format(work.context.span_id, "016x")
    assert inside["time"]


async def test_cancelled_and_expired_streams_end_their_spans(
    traced_server: PatternServer, exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    async with grpc.aio.insecure_channel(f"127.0.0.1:{traced_server.port}") as channel:
        stub = pe_grpc.PatternExecutionServiceStub(channel)
        queue: asyncio.Queue[ExecuteManyRequest | None] = asyncio.Queue()

        async def requests() -> AsyncIterator[ExecuteManyRequest]:
            while (item := await queue.get()) is not None:
                yield item

        expired = stub.ExecuteMany(requests(), timeout=1.0)
        await queue.put(ExecuteManyRequest(request_id="a", query="calculate 1 + 1"))
        assert (await expired.read()).request_id == "a"
        with pytest.raises(grpc.aio.AioRpcError):
            await expired.read()
        cancelled = stub.ExecuteMany(requests(), timeout=30)
        await queue.put(ExecuteManyRequest(request_id="b", query="calculate 2 + 2"))
        assert (await cancelled.read()).request_id == "b"
        cancelled.cancel()
    for _ in range(100):
        spans = [s for s in exporter.get_finished_spans() if s.name.endswith("/ExecuteMany")]
        if len(spans) == 2:
            break
        await asyncio.sleep(0.05)
    codes = sorted(s.attributes["rpc.grpc.status_code"] for s in spans if s.attributes is not None)
    assert codes == [grpc.StatusCode.CANCELLED.value[0], grpc.StatusCode.DEADLINE_EXCEEDED.value[0]]
    assert "Failed to detach context" not in caplog.text
