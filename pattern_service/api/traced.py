"""Server spans around guarded method behaviours (installed only when tracing is on).

The call guard (:mod:`pattern_service.api.guard`) passes each behaviour it built
through :func:`traced`; with tracing off it returns the behaviour itself, so an
untraced server pays nothing per call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from pattern_service import tracing

ServicerContext = grpc.aio.ServicerContext[Any, Any]


def traced(
    full_method: str,
    behavior: Callable[..., Any],
    *,
    response_streaming: bool,
    final_code: Callable[[ServicerContext, BaseException | None], str],
) -> Callable[..., Any]:
    """``behavior`` inside a SERVER span (see :func:`pattern_service.tracing.server_span`), or itself when off.

    Args:
        full_method: ``/package.Service/Method``.
        behavior: The guarded behaviour (a coroutine function, or an async generator function
            when ``response_streaming``).
        response_streaming: The method streams responses.
        final_code: Maps ``(context, exception or None)`` to the status code name the call ended with.
    """
    if not tracing.enabled():
        return behavior

    if response_streaming:

        async def stream(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
            with tracing.server_span(full_method, context.invocation_metadata()) as span:
                ended: BaseException | None = None
                try:
                    async for item in behavior(request, context):
                        yield item
                except BaseException as exc:
                    ended = exc
                    raise
                finally:
                    tracing.end_server_span(span, final_code(context, ended))

        return stream

    async def unary(request: Any, context: ServicerContext) -> Any:
        with tracing.server_span(full_method, context.invocation_metadata()) as span:
            ended: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as exc:
                ended = exc
                raise
            finally:
                tracing.end_server_span(span, final_code(context, ended))

    return unary
