"""The server process with TMWS_LOG_FORMAT=json and OTLP export to a real (in-test) OTLP/gRPC collector."""

from __future__ import annotations

import json
import pathlib

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from process_helpers import ServerProcess, poll, server_env

from tmws.pattern.v1 import ExecuteRequest
from tmws.pattern.v1 import pattern_execution_service_pb2_grpc as pe_grpc

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps every span exported to it."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str]] = []  # (trace id hex, name)

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.aio.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend((s.trace_id.hex(), s.name) for s in scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


async def test_json_logs_and_otlp_export(tmp_path: pathlib.Path) -> None:
    collector = Collector()
    otlp = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, otlp)
    otlp_port = otlp.add_insecure_port("127.0.0.1:0")
    await otlp.start()
    env = server_env(
        tmp_path / "data",
        TMWS_LOG_FORMAT="json",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{otlp_port}",
        OTEL_EXPORTER_OTLP_INSECURE="true",
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_SERVICE_NAME="pattern-service-under-test",
    )
    server = await ServerProcess(env).start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = pe_grpc.PatternExecutionServiceStub(channel)
            response = await stub.Execute(
                ExecuteRequest(query="calculate 6 * 7"), metadata=[("traceparent", TRACEPARENT)], timeout=30
            )
            assert response.result.success

        async def exported() -> set[str] | None:
            names = {name for trace_id, name in collector.spans if trace_id == TRACE_ID}
            return names if "tmws.pattern.v1.PatternExecutionService/Execute" in names else None

        names = await poll(exported, "the Execute span at the OTLP collector", within=30)
        assert {"route", "tool.run"} <= names
    finally:
        server.proc.terminate()
        await server.wait()
        await otlp.stop(0)
    records = [line for line in server.lines if line.strip()]
    assert records
    parsed = [json.loads(line) for line in records if line.startswith("{")]
    # Every line of the server is one JSON object (grpc core's own C logging aside).
    assert len(parsed) == len([line for line in records if not line.startswith(("I1", "W1", "E1"))])
    assert any("serving tmws.pattern.v1" in record["message"] for record in parsed)
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in parsed)
    assert any(record["message"] == "stopped" for record in parsed)
