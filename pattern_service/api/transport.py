"""Transport settings of the gRPC server: keepalive, message size, compression, unknown methods.

Keepalive (HTTP/2 PING) has two sides, both set from ``TMWS_KEEPALIVE_*``:

* **client pings the server accepts** (the enforcement policy): a client may ping
  every ``TMWS_KEEPALIVE_MIN_PING_INTERVAL`` seconds (default 5) with or without
  calls in flight (``TMWS_KEEPALIVE_PERMIT_WITHOUT_CALLS``, default true). grpc's
  defaults (5 minutes, and none at all without calls) make a grpc-js channel with
  ``grpc.keepalive_time_ms=10000`` receive ``GOAWAY too_many_pings`` after its
  third ping, killing e.g. a health ``Watch`` at 40 s;
* **server pings** (``TMWS_KEEPALIVE_TIME``, default 60 s, ``TMWS_KEEPALIVE_TIMEOUT``,
  default 20 s): the server pings a connection quiet for that long and closes it
  when the ack does not come in time, so dead peers (a crashed client, a NAT that
  dropped the flow) release their calls and resources.

Compression: responses are compressed at the level ``TMWS_RESPONSE_COMPRESSION``
(``none``, ``low``, ``medium`` (default), ``high``); grpc chooses gzip or deflate
from the client's ``grpc-accept-encoding`` and sends identity to a client that
accepts neither. The call guard keeps compression only on the methods of
:data:`COMPRESSED_METHODS`, whose responses are large (small ones do not pay).
Compressed requests (gzip, deflate) are always accepted.

Message size: grpc's own receive limit is set to :data:`TRANSPORT_SIZE_FACTOR` times
``TMWS_MAX_MESSAGE_BYTES`` so that requests between the two are refused by the
service with ``ErrorInfo`` (reason ``MESSAGE_TOO_LARGE``, see
:mod:`pattern_service.api.decoding`); only a larger one gets the transport's bare
``RESOURCE_EXHAUSTED``.

Unknown methods: :func:`unimplemented_handler` answers any method no service
registers with ``UNIMPLEMENTED`` and ``ErrorInfo`` (reason ``METHOD_NOT_FOUND``)
instead of grpc's bare status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from pattern_service.api.status import ERROR_DOMAIN
from pattern_service.config import Settings

#: grpc's transport receive limit, as a multiple of ``TMWS_MAX_MESSAGE_BYTES``.
TRANSPORT_SIZE_FACTOR = 4
_MAX_INT32 = 2**31 - 1
#: Methods whose responses can be large, compressed at ``TMWS_RESPONSE_COMPRESSION``'s level.
#: Not ``ExecuteMany``: gRPC compresses each message on its own, and its items (a few hundred
#: bytes) gain little while costing 10-20 % of the stream's throughput (measured: 12k vs 10k items/s).
COMPRESSED_METHODS = frozenset({"ListPatternDefinitions", "ListSuccessPatterns", "MatchPatterns"})
#: grpc core's compression levels (``grpc_compression_level``).
COMPRESSION_LEVELS = {"none": 0, "low": 1, "medium": 2, "high": 3}


def server_options(settings: Settings, *, reuse_port: bool = False) -> list[tuple[str, Any]]:
    """The ``grpc.aio.server`` channel arguments of ``settings``.

    Args:
        settings: ``TMWS_KEEPALIVE_*``, ``TMWS_MAX_MESSAGE_BYTES`` and ``TMWS_RESPONSE_COMPRESSION``.
        reuse_port: Bind with ``SO_REUSEPORT``.

    Returns:
        ``(name, value)`` pairs for ``grpc.aio.server(options=...)``.
    """
    transport_limit = min(settings.max_message_bytes * TRANSPORT_SIZE_FACTOR, _MAX_INT32)
    return [
        ("grpc.max_receive_message_length", transport_limit),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        ("grpc.keepalive_time_ms", int(settings.keepalive_time * 1000)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout * 1000)),
        # grpc core times the ack of each ping with this one (default 60 s), not the keepalive timeout.
        ("grpc.http2.ping_timeout_ms", int(settings.keepalive_timeout * 1000)),
        ("grpc.keepalive_permit_without_calls", 1 if settings.keepalive_permit_without_calls else 0),
        # grpc core's name for the shortest interval between *received* pings it tolerates.
        ("grpc.http2.min_ping_interval_without_data_ms", int(settings.keepalive_min_ping_interval * 1000)),
        # A level, not an algorithm: grpc then compresses with an algorithm the client's
        # grpc-accept-encoding lists (identity for a client that lists none); an algorithm
        # would be sent to every client, whether it can decompress it or not.
        ("grpc.default_compression_level", COMPRESSION_LEVELS[settings.response_compression]),
        # Server keepalive pings continue on a connection that carries no data (an idle or Watch-only one).
        ("grpc.http2.max_pings_without_data", 0),
    ]


def _unimplemented_status(method: str) -> Any:
    from google.protobuf import any_pb2
    from google.rpc import error_details_pb2, status_pb2
    from grpc_status import rpc_status

    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="METHOD_NOT_FOUND", domain=ERROR_DOMAIN, metadata={"method": method}))
    status = status_pb2.Status(
        code=grpc.StatusCode.UNIMPLEMENTED.value[0], message=f"method {method} is not implemented", details=[info]
    )
    return rpc_status.to_status(status)


class _Unimplemented(grpc.GenericRpcHandler):
    """Answers every method with ``UNIMPLEMENTED`` + ``ErrorInfo``; registered after every service."""

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method

        async def refuse(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await context.abort_with_status(_unimplemented_status(method))
            yield b""  # pragma: no cover - abort raises

        return grpc.stream_stream_rpc_method_handler(refuse)


def unimplemented_handler() -> grpc.GenericRpcHandler:
    """The generic handler of unknown methods (add it after every service)."""
    return _Unimplemented()
