"""Undecodable requests become ``INVALID_ARGUMENT`` (not grpc's ``UNKNOWN``/``INTERNAL``).

grpc deserializes a request before any servicer code runs; bytes that are not
a valid message (corrupt wire format, a string field with invalid UTF-8, …)
make the deserializer raise, which grpc reports as ``UNKNOWN`` with the Python
exception text (unary) or surfaces inside the request stream. The call guard
(:mod:`pattern_service.api.guard`) swaps in a deserializer that turns such
bytes into an :class:`Undecodable` marker, and refuses the marker through
:mod:`pattern_service.api.status`: ``INVALID_ARGUMENT`` with reason
``MALFORMED_REQUEST`` and the violation ``request``. For a request stream the
stream ends with that status when the bad message is reached (the messages
before it are answered).

The same deserializer enforces the request size limit (``TMWS_MAX_MESSAGE_BYTES``):
a larger message becomes an :class:`Undecodable` marked ``too_large``, refused
with ``RESOURCE_EXHAUSTED`` (reason ``MESSAGE_TOO_LARGE``, ``ErrorInfo`` metadata
``limit_bytes`` and ``size_bytes``). grpc's own transport limit is set above it
(see :mod:`pattern_service.api.transport`), so that the service, not the
transport, answers with the rich details.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from pattern_service.errors import InvalidArgumentError, PatternServiceError, ResourceExhaustedError


@dataclass(frozen=True, slots=True)
class Undecodable:
    """Stands for a request message that could not be parsed.

    Attributes:
        reason: Why (the parser's message, for the log and the error text).
        too_large: The message was not parsed because it exceeds the size limit.
        size: Its size in bytes (set with ``too_large``).
        limit: The size limit in bytes (set with ``too_large``).
    """

    reason: str
    too_large: bool = False
    size: int = 0
    limit: int = 0


def malformed(marker: Undecodable) -> PatternServiceError:
    """The error reported for an undecodable (or oversized) request."""
    if marker.too_large:
        return ResourceExhaustedError(
            f"the request message is {marker.size} bytes; the limit is {marker.limit} bytes",
            reason="MESSAGE_TOO_LARGE",
            metadata={"limit_bytes": str(marker.limit), "size_bytes": str(marker.size)},
        )
    return InvalidArgumentError.single(
        "request", f"is not a valid message of this method: {marker.reason}", reason="MALFORMED_REQUEST"
    )


def safe_deserializer(
    deserializer: Callable[[bytes], Any] | None, max_bytes: int | None = None
) -> Callable[[bytes], Any] | None:
    """``deserializer`` returning an :class:`Undecodable` marker instead of raising on bad bytes.

    Args:
        deserializer: The method's request deserializer.
        max_bytes: Largest request accepted; a larger one becomes a ``too_large`` marker (``None`` = no limit).
    """
    if deserializer is None:
        return None
    limit = max_bytes if max_bytes is not None else -1

    def parse(data: bytes) -> Any:
        if limit >= 0 and len(data) > limit:
            return Undecodable("message too large", too_large=True, size=len(data), limit=limit)
        try:
            return deserializer(data)
        except (DecodeError, UnicodeDecodeError, ValueError) as exc:
            return Undecodable(str(exc)[:200])

    return parse


async def checked_requests(requests: AsyncIterator[Any], received: Any = None) -> AsyncIterator[Any]:
    """``requests``, raising the error of :func:`malformed` when an undecodable one is reached.

    Args:
        requests: The request stream.
        received: A counter incremented per message read (``grpc_server_msg_received_total``), or ``None``.
    """
    async for request in requests:
        if received is not None:
            received.inc()
        if request.__class__ is Undecodable:
            raise malformed(request)
        yield request
