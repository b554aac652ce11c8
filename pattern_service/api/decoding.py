"""Undecodable requests become ``INVALID_ARGUMENT`` (not grpc's ``UNKNOWN``/``INTERNAL``).

grpc deserializes a request before any servicer code runs; bytes that are not
a valid message (corrupt wire format, a string field with invalid UTF-8, …)
make the deserializer raise, which grpc reports as ``UNKNOWN`` with the Python
exception text (unary) or surfaces inside the request stream. This interceptor
swaps in a deserializer that turns such bytes into an :class:`Undecodable`
marker, and a behaviour that refuses the marker through
:mod:`pattern_service.api.status`: ``INVALID_ARGUMENT`` with reason
``MALFORMED_REQUEST`` and the violation ``request``. For a request stream the
stream ends with that status when the bad message is reached (the messages
before it are answered).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from pattern_service.api.handlers import Handler, ServicerContext
from pattern_service.api.status import abort
from pattern_service.errors import InvalidArgumentError


@dataclass(frozen=True, slots=True)
class Undecodable:
    """Stands for a request message that could not be parsed.

    Attributes:
        reason: Why (the parser's message, for the log and the error text).
    """

    reason: str


def malformed(marker: Undecodable) -> InvalidArgumentError:
    """The error reported for an undecodable request."""
    return InvalidArgumentError.single(
        "request", f"is not a valid message of this method: {marker.reason}", reason="MALFORMED_REQUEST"
    )


def _safe(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except (DecodeError, UnicodeDecodeError, ValueError) as exc:
            return Undecodable(str(exc)[:200])

    return parse


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Undecodable):
            raise malformed(request)
        yield request


class DecodeErrorInterceptor(grpc.aio.ServerInterceptor):
    """Reports undecodable requests as ``INVALID_ARGUMENT`` (install it last: innermost)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        """Wrap the handler's deserializer and behaviour (see the module docstring)."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return _rebuild(handler)


def _rebuild(handler: Handler) -> Handler:
    deserializer = _safe(handler.request_deserializer)
    serializer = handler.response_serializer
    if handler.request_streaming:
        stream_behavior: Callable[..., Any] | None = (
            handler.stream_stream if handler.response_streaming else handler.stream_unary
        )
        if stream_behavior is None:
            return handler

        if handler.response_streaming:

            async def stream_stream(requests: AsyncIterator[Any], context: ServicerContext) -> AsyncIterator[Any]:
                result = stream_behavior(_checked(requests), context)
                if hasattr(result, "__anext__"):
                    async for item in result:
                        yield item
                else:
                    await result

            return grpc.stream_stream_rpc_method_handler(stream_stream, deserializer, serializer)

        async def stream_unary(requests: AsyncIterator[Any], context: ServicerContext) -> Any:
            return await stream_behavior(_checked(requests), context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, deserializer, serializer)

    unary_behavior: Callable[..., Any] | None = (
        handler.unary_stream if handler.response_streaming else handler.unary_unary
    )
    if unary_behavior is None:
        return handler

    if handler.response_streaming:

        async def unary_stream(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
            if isinstance(request, Undecodable):
                await abort(context, malformed(request))
            result = unary_behavior(request, context)
            if hasattr(result, "__anext__"):
                async for item in result:
                    yield item
            else:
                await result

        return grpc.unary_stream_rpc_method_handler(unary_stream, deserializer, serializer)

    async def unary_unary(request: Any, context: ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            await abort(context, malformed(request))
        return await unary_behavior(request, context)

    return grpc.unary_unary_rpc_method_handler(unary_unary, deserializer, serializer)
