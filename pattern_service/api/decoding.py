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
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

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


def safe_deserializer(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserializer`` returning an :class:`Undecodable` marker instead of raising on bad bytes."""
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except (DecodeError, UnicodeDecodeError, ValueError) as exc:
            return Undecodable(str(exc)[:200])

    return parse


async def checked_requests(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """``requests``, raising the ``INVALID_ARGUMENT`` error when an undecodable one is reached."""
    async for request in requests:
        if isinstance(request, Undecodable):
            raise malformed(request)
        yield request
