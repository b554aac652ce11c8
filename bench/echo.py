"""The limit: a bare grpc.aio server with the Pattern Service's interface and precomputed answers.

It serves ``PatternExecutionService`` (``Execute``, ``Route``, ``ExecuteMany``, ``RegisterBatch``)
and ``PatternLearningService`` (``MatchPatterns``, ``CreateSuccessPattern``) through the generated
servicer base classes, so requests and responses go through the same protobuf (de)serialization as
the real service. Each answer is a precomputed response captured from the real service for the same
scenario, so message sizes match; the scenario is named by the ``x-bench-scenario`` request metadata
(the load generator sends it to both servers). ``/bench.RequestEcho/<Method>`` answers each request
with itself (:func:`request_echo_handler`). Same event loop as the service's default (``--loop``).

Run: ``python -m bench.echo --address 127.0.0.1:0 --responses FILE --port-file FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import signal
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import grpc

from pattern_service.config import Settings
from tmws.pattern.v1 import pattern_execution_service_pb2 as pe
from tmws.pattern.v1 import pattern_execution_service_pb2_grpc as pe_grpc
from tmws.pattern.v1 import pattern_learning_service_pb2 as pl
from tmws.pattern.v1 import pattern_learning_service_pb2_grpc as pl_grpc

ServicerContext = grpc.aio.ServicerContext[Any, Any]
SCENARIO_KEY = "x-bench-scenario"
#: Service of the request echo: each method parses its request (same type as the real method's)
#: and answers with that message, so the reply is the request's bytes (``/bench.RequestEcho/Execute``).
REQUEST_ECHO = "bench.RequestEcho"

#: Response message type of each echoed method (full method name → class).
RESPONSE_TYPES: dict[str, Any] = {
    "Execute": pe.ExecuteResponse,
    "Route": pe.RouteResponse,
    "ExecuteMany": pe.ExecuteManyResponse,
    "RegisterBatch": pe.RegisterBatchResponse,
    "MatchPatterns": pl.MatchPatternsResponse,
    "CreateSuccessPattern": pl.CreateSuccessPatternResponse,
}


def _scenario(context: ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == SCENARIO_KEY:
            return str(value)
    return ""


class _Answers:
    """Precomputed responses by (method, scenario); the first of a method is its default."""

    def __init__(self, raw: Mapping[tuple[str, str], bytes]):
        self._by: dict[tuple[str, str], Any] = {}
        self._default: dict[str, Any] = {}
        for (method, scenario), data in raw.items():
            msg = RESPONSE_TYPES[method].FromString(data)
            self._by[(method, scenario)] = msg
            self._default.setdefault(method, msg)

    def get(self, method: str, context: ServicerContext) -> Any:
        msg = self._by.get((method, _scenario(context)))
        if msg is None:
            msg = self._default.get(method)
        if msg is None:
            return RESPONSE_TYPES[method]()
        return msg


class EchoExecution(pe_grpc.PatternExecutionServiceServicer):
    """``PatternExecutionService`` answering every call with a precomputed response."""

    def __init__(self, answers: _Answers):
        self._answers = answers

    async def Execute(self, request: pe.ExecuteRequest, context: ServicerContext) -> pe.ExecuteResponse:
        """Return the precomputed ``ExecuteResponse`` of the scenario."""
        return self._answers.get("Execute", context)

    async def Route(self, request: pe.RouteRequest, context: ServicerContext) -> pe.RouteResponse:
        """Return the precomputed ``RouteResponse`` of the scenario."""
        return self._answers.get("Route", context)

    async def RegisterBatch(
        self, request: pe.RegisterBatchRequest, context: ServicerContext
    ) -> pe.RegisterBatchResponse:
        """Return the precomputed ``RegisterBatchResponse`` of the scenario."""
        return self._answers.get("RegisterBatch", context)

    async def ExecuteMany(
        self, request_iterator: AsyncIterator[pe.ExecuteManyRequest], context: ServicerContext
    ) -> AsyncIterator[pe.ExecuteManyResponse]:
        """Answer each request in order with the precomputed response carrying its ``request_id``."""
        answer = pe.ExecuteManyResponse()
        answer.CopyFrom(self._answers.get("ExecuteMany", context))
        async for request in request_iterator:
            # Serialized synchronously when yielded, so reusing one message per stream is safe.
            answer.request_id = request.request_id
            yield answer


class EchoLearning(pl_grpc.PatternLearningServiceServicer):
    """``PatternLearningService.MatchPatterns`` answering with a precomputed response."""

    def __init__(self, answers: _Answers):
        self._answers = answers

    async def MatchPatterns(
        self, request: pl.MatchPatternsRequest, context: ServicerContext
    ) -> pl.MatchPatternsResponse:
        """Return the precomputed ``MatchPatternsResponse`` of the scenario."""
        return self._answers.get("MatchPatterns", context)

    async def CreateSuccessPattern(
        self, request: pl.CreateSuccessPatternRequest, context: ServicerContext
    ) -> pl.CreateSuccessPatternResponse:
        """Return the precomputed ``CreateSuccessPatternResponse`` of the scenario."""
        return self._answers.get("CreateSuccessPattern", context)


def request_echo_handler() -> grpc.GenericRpcHandler:
    """``/bench.RequestEcho/<Method>``: parse the request as the real method does and send it back.

    The second limit of the cache-hit target: an echo of the *request* bytes (the service's cache hit
    must also come close to it), beside the echo of a captured response served by the servicers above.
    """

    async def echo(request: Any, context: ServicerContext) -> Any:
        return request

    requests: dict[str, Any] = {
        "Execute": pe.ExecuteRequest,
        "Route": pe.RouteRequest,
        "MatchPatterns": pl.MatchPatternsRequest,
    }
    return grpc.method_handlers_generic_handler(
        REQUEST_ECHO,
        {
            name: grpc.unary_unary_rpc_method_handler(
                echo, request_deserializer=cls.FromString, response_serializer=lambda m: m.SerializeToString()
            )
            for name, cls in requests.items()
        },
    )


async def serve(address: str, responses: Mapping[tuple[str, str], bytes], port_file: Path | None) -> None:
    """Serve until SIGTERM/SIGINT; write the bound port to ``port_file`` once listening."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ("grpc.max_send_message_length", 16 * 1024 * 1024),
            ("grpc.so_reuseport", 0),
        ]
    )
    answers = _Answers(responses)
    # Only the measured RPCs are implemented; the base classes answer UNIMPLEMENTED for the rest.
    pe_grpc.add_PatternExecutionServiceServicer_to_server(EchoExecution(answers), server)  # type: ignore[abstract]
    pl_grpc.add_PatternLearningServiceServicer_to_server(EchoLearning(answers), server)  # type: ignore[abstract]
    server.add_generic_rpc_handlers((request_echo_handler(),))
    port = server.add_insecure_port(address)
    await server.start()
    if port_file is not None:
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(port))
        tmp.replace(port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


def main(argv: list[str] | None = None) -> int:
    """Command line of the echo server."""
    parser = argparse.ArgumentParser(prog="bench.echo")
    parser.add_argument("--address", default="127.0.0.1:0")
    parser.add_argument("--responses", type=Path, help="pickled {(method, scenario): response bytes}")
    parser.add_argument("--port-file", type=Path)
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default=Settings.model_fields["event_loop"].default,
        help="event loop (default: the service's default, TMWS_EVENT_LOOP)",
    )
    opts = parser.parse_args(argv)
    responses: dict[tuple[str, str], bytes] = {}
    if opts.responses is not None:
        responses = pickle.loads(opts.responses.read_bytes())
    if opts.loop == "uvloop":
        import uvloop

        uvloop.run(serve(opts.address, responses, opts.port_file))
    else:
        asyncio.run(serve(opts.address, responses, opts.port_file))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
