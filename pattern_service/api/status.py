"""The one place that maps domain errors to gRPC status codes and ``google.rpc`` details.

Every error carries ``google.rpc.ErrorInfo`` (reason, domain ``pattern.tmws.dev``,
metadata); ``INVALID_ARGUMENT`` also carries ``google.rpc.BadRequest`` with one
field violation per invalid field; ``NOT_FOUND``/``ALREADY_EXISTS`` carry
``google.rpc.ResourceInfo``; ``UNAVAILABLE``/``RESOURCE_EXHAUSTED`` carry
``google.rpc.RetryInfo`` (AIP-193); ``UNAUTHENTICATED``/``PERMISSION_DENIED``
carry the ``ErrorInfo`` only (``PERMISSION_DENIED`` names the missing scope in
its metadata).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from pattern_service import errors

log = logging.getLogger(__name__)

ERROR_DOMAIN = "pattern.tmws.dev"

_CODES: tuple[tuple[type[errors.PatternServiceError], grpc.StatusCode], ...] = (
    (errors.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (errors.FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (errors.ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
)


def status_code_of(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status code for an exception (``INTERNAL`` for anything unexpected)."""
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    if isinstance(exc, TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.INTERNAL


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_rpc_status(exc: BaseException) -> status_pb2.Status:
    """Build the ``google.rpc.Status`` for an exception.

    Unexpected exceptions become ``INTERNAL`` with a generic message (the
    detail is logged, not sent).

    Args:
        exc: A :class:`~pattern_service.errors.PatternServiceError` or any exception.

    Returns:
        The status with its details packed.
    """
    code = status_code_of(exc)
    details: list[any_pb2.Any] = []
    if isinstance(exc, errors.PatternServiceError):
        message = exc.message
        details.append(
            _pack(error_details_pb2.ErrorInfo(reason=exc.reason, domain=ERROR_DOMAIN, metadata=exc.metadata))
        )
        if isinstance(exc, errors.InvalidArgumentError):
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in exc.violations
                ]
            )
            details.append(_pack(bad))
        elif isinstance(exc, errors.NotFoundError | errors.AlreadyExistsError):
            details.append(
                _pack(
                    error_details_pb2.ResourceInfo(
                        resource_type=exc.resource_type, resource_name=exc.resource_name, description=exc.message
                    )
                )
            )
        elif isinstance(exc, errors.UnavailableError | errors.ResourceExhaustedError):
            details.append(_pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1))))
    elif code is grpc.StatusCode.DEADLINE_EXCEEDED:
        message = "deadline exceeded"
        details.append(_pack(error_details_pb2.ErrorInfo(reason="DEADLINE_EXCEEDED", domain=ERROR_DOMAIN)))
    else:
        message = "internal error"
        details.append(_pack(error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN)))
    return status_pb2.Status(code=code.value[0], message=message, details=details)


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> NoReturn:
    """Abort the call with the status of ``exc`` (rich details in the trailers)."""
    await context.abort_with_status(rpc_status.to_status(to_rpc_status(exc)))
    raise AssertionError("unreachable: abort_with_status raises")  # pragma: no cover


def _record(servicer: object, method: str, exc: BaseException) -> None:
    code = status_code_of(exc)
    if code is grpc.StatusCode.INTERNAL:
        log.error("unexpected error in %s", method, exc_info=exc)
    metrics = getattr(servicer, "metrics", None)
    if metrics is not None:
        metrics.observe_error(method, code.name)


Req = TypeVar("Req")
Resp = TypeVar("Resp")
Self_ = TypeVar("Self_")


def unary_errors(
    method: Callable[[Self_, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]],
) -> Callable[[Self_, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]]:
    """Decorate a unary servicer method so that domain errors abort with their status."""

    @functools.wraps(method)
    async def wrapper(self: Self_, request: Req, context: grpc.aio.ServicerContext[Any, Any]) -> Resp:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            _record(self, method.__name__, exc)
            await abort(context, exc)

    return wrapper


def stream_errors(
    method: Callable[[Self_, Req, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Resp]],
) -> Callable[[Self_, Req, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Resp]]:
    """Decorate a streaming servicer method so that a stream-level error aborts with its status."""

    @functools.wraps(method)
    async def wrapper(self: Self_, request: Req, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Resp]:
        try:
            async for item in method(self, request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            _record(self, method.__name__, exc)
            await abort(context, exc)

    return wrapper
