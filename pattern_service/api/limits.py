"""Limits and back-pressure: every bound a caller can hit, and the two enforced here.

====================================  ==========================  =========================================
limit                                 default (setting)           when exceeded
====================================  ==========================  =========================================
query length (Execute, ExecuteMany,   10,000 characters           ``INVALID_ARGUMENT``, violation ``query``
Route)                                (``TMWS_MAX_QUERY_LENGTH``)
request context size                  65,536 bytes serialized     ``INVALID_ARGUMENT``, violation ``context``
                                      (``TMWS_MAX_CONTEXT_BYTES``)
MatchPatterns intent                  1-1,000 characters          ``INVALID_ARGUMENT``, violation ``intent``
RegisterBatch size                    1-1,000 definitions         ``INVALID_ARGUMENT``, ``pattern_definitions``
trigger regex                         1,000 characters, RE2       ``INVALID_ARGUMENT``, violation
                                      program ≤ 20,000            ``pattern_definitions[i].trigger_pattern``
                                      instructions, 8 MiB RE2
                                      memory; linear-time RE2
                                      only (no backreferences)
ExecuteMany in flight                 64 per stream               back-pressure: the server stops reading
                                      (``TMWS_STREAM_WINDOW``)    the stream until results are taken
ExecuteMany stream length             100,000 requests            the first 100,000 are answered, then the
                                      (``TMWS_STREAM_MAX_ITEMS``)  stream ends ``RESOURCE_EXHAUSTED``
                                                                  (reason ``STREAM_TOO_LONG``)
message size                          16 MiB each way             ``RESOURCE_EXHAUSTED`` (gRPC transport)
concurrent RPCs per process           256                         ``RESOURCE_EXHAUSTED`` at once (reason
                                      (``TMWS_MAX_CONCURRENT_     ``TOO_MANY_CONCURRENT_RPCS``) with
                                      RPCS``)                     ``google.rpc.RetryInfo``; health and
                                                                  reflection are never refused
call deadline                         the client's                ``DEADLINE_EXCEEDED``; the work is cancelled
page size (List*)                     1-1,000 (0 = 50)            ``INVALID_ARGUMENT``, ``page_size``
====================================  ==========================  =========================================

The concurrency limit is :class:`pattern_service.api.guard.ConcurrencyLimit`
(health and reflection are never guarded). A refused call changes nothing. ``ExecuteMany`` counts as one RPC for the
concurrency limit however many items it carries (its items are bounded by the
window instead).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

from pattern_service.errors import ResourceExhaustedError

DEFAULT_MAX_CONCURRENT_RPCS = 256
DEFAULT_STREAM_MAX_ITEMS = 100_000

T = TypeVar("T")


class StreamLength:
    """Counts the requests of one stream and stops it after ``limit`` of them.

    :meth:`limit_requests` yields at most ``limit`` requests; if the client
    sends more, it stops reading and :attr:`exceeded` is set. The servicer
    answers what it read, then raises :meth:`error`.

    Args:
        limit: Maximum requests of the stream.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.count = 0
        self.exceeded = False

    async def limit_requests(self, requests: AsyncIterator[T]) -> AsyncIterator[T]:
        """Yield the first ``limit`` requests of ``requests``; note whether there were more."""
        async for request in requests:
            if self.count >= self.limit:
                self.exceeded = True
                return
            self.count += 1
            yield request

    def error(self) -> ResourceExhaustedError:
        """The stream-level error once :attr:`exceeded` (reason ``STREAM_TOO_LONG``)."""
        return ResourceExhaustedError(
            f"a stream may carry at most {self.limit} requests; the first {self.limit} were answered, "
            "send the rest on a new stream",
            reason="STREAM_TOO_LONG",
            metadata={"limit": str(self.limit)},
        )
