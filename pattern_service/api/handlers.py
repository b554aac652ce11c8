"""Rewrapping gRPC method handlers, for the server interceptors (auth, limits).

An interceptor sees a call before its handler runs; to act *around* the
handler (in the handler's own task, so context variables and ``finally``
blocks apply to the whole call, streaming included) it returns a new handler
whose behaviour wraps the original. :func:`wrap_handler` does that for the
four RPC kinds; :func:`rejecting_handler` makes a handler that only aborts
with the status of a domain error (through :mod:`pattern_service.api.status`).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeAlias

import grpc

from pattern_service.api.status import abort

ServicerContext = grpc.aio.ServicerContext[Any, Any]
#: Makes the context manager that surrounds one call (entered in the handler's task).
Around = Callable[[ServicerContext], AbstractAsyncContextManager[None]]


#: A method handler of any request and response types.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def _behavior(handler: Handler) -> Callable[..., Any]:
    behavior: Callable[..., Any] | None
    if handler.request_streaming and handler.response_streaming:
        behavior = handler.stream_stream
    elif handler.request_streaming:
        behavior = handler.stream_unary
    elif handler.response_streaming:
        behavior = handler.unary_stream
    else:
        behavior = handler.unary_unary
    if behavior is None:
        raise ValueError("the method handler has no behaviour of its kind")
    return behavior


def _rebuild(handler: Handler, behavior: Callable[..., Any]) -> Handler:
    factory: Callable[..., Handler]
    if handler.request_streaming and handler.response_streaming:
        factory = grpc.stream_stream_rpc_method_handler
    elif handler.request_streaming:
        factory = grpc.stream_unary_rpc_method_handler
    elif handler.response_streaming:
        factory = grpc.unary_stream_rpc_method_handler
    else:
        factory = grpc.unary_unary_rpc_method_handler
    return factory(
        behavior, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )


def wrap_handler(handler: Handler, around: Around) -> Handler:
    """A handler that runs ``handler``'s behaviour inside ``around(context)``.

    For a streaming response the context manager stays entered until the
    stream ends (normally, by an error, or by cancellation).

    Args:
        handler: The original handler.
        around: Context-manager factory, given the call's servicer context.

    Returns:
        The wrapped handler (same kind, same (de)serializers).

    Raises:
        ValueError: ``handler`` lacks the behaviour its kind names.
    """
    behavior = _behavior(handler)

    if handler.response_streaming:

        async def streaming(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
            async with around(context):
                result = behavior(request, context)
                if inspect.isasyncgen(result) or hasattr(result, "__anext__"):
                    async for item in result:
                        yield item
                else:  # a coroutine that writes with context.write()
                    await result

        return _rebuild(handler, streaming)

    async def unary(request: Any, context: ServicerContext) -> Any:
        async with around(context):
            response: Awaitable[Any] = behavior(request, context)
            return await response

    return _rebuild(handler, unary)


def rejecting_handler(handler: Handler, error: BaseException) -> Handler:
    """A handler of ``handler``'s kind that aborts every call with the status of ``error``.

    Args:
        handler: The handler whose kind and (de)serializers to keep.
        error: The domain error to report (mapped by :mod:`pattern_service.api.status`).

    Returns:
        The rejecting handler (the original behaviour never runs).
    """
    if handler.response_streaming:

        async def reject_stream(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
            await abort(context, error)
            yield  # pragma: no cover - abort raises

        return _rebuild(handler, reject_stream)

    async def reject(request: Any, context: ServicerContext) -> Any:
        await abort(context, error)

    return _rebuild(handler, reject)
