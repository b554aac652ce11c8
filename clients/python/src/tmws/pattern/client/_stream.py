"""The ``ExecuteMany`` bidirectional stream: lazy request pumping and typed outcomes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, cast

import grpc
from google.protobuf import struct_pb2

from tmws.pattern.client._convert import to_struct
from tmws.pattern.client._enums import ExecutionModeLike, parse_execution_mode
from tmws.pattern.client._errors import PatternServiceError, Unknown, from_grpc_error, from_status
from tmws.pattern.v1 import ExecuteManyRequest, ExecuteManyResponse, ExecutionResult

if TYPE_CHECKING:
    from typing import Self

__all__ = ["ExecuteManyItem", "ExecuteManyOutcome", "ExecuteManyStream"]

_T = TypeVar("_T")

ExecuteManyItem: TypeAlias = (
    ExecuteManyRequest
    | tuple[str, str]
    | tuple[str, str, ExecutionModeLike]
    | tuple[str, str, ExecutionModeLike, Mapping[str, Any] | struct_pb2.Struct | None]
)
"""One ``ExecuteMany`` item: an ``ExecuteManyRequest``, or ``(request_id, query[, mode[, context]])``."""


@dataclass(frozen=True, slots=True)
class ExecuteManyOutcome:
    """The outcome of one ``ExecuteMany`` item: a result or a typed error.

    Attributes:
        request_id: The ``request_id`` of the request this answers.
        result: The execution result, or ``None`` if the item failed.
        error: The item's in-band status as a typed exception, or ``None`` if
            it has a result.
        response: The raw ``ExecuteManyResponse``.
    """

    request_id: str
    result: ExecutionResult | None
    error: PatternServiceError | None
    response: ExecuteManyResponse

    @classmethod
    def from_response(cls, response: ExecuteManyResponse) -> ExecuteManyOutcome:
        """Build the outcome of a response.

        Args:
            response: One response of the stream.

        Returns:
            The outcome: with ``result`` set when the response carries one,
            else with ``error`` built from the in-band ``google.rpc.Status``
            (:class:`~tmws.pattern.client.Unknown` if it carries neither).
        """
        which = response.WhichOneof("outcome")
        if which == "result":
            return cls(response.request_id, response.result, None, response)
        if which == "status":
            return cls(response.request_id, None, from_status(response.status), response)
        return cls(response.request_id, None, Unknown("response carries neither a result nor a status"), response)

    @property
    def ok(self) -> bool:
        """Whether the item has a result (it may still have ``result.success`` false)."""
        return self.error is None

    def unwrap(self) -> ExecutionResult:
        """Return the result, or raise the item's error.

        Returns:
            The execution result.

        Raises:
            PatternServiceError: The typed error of a failed item.
        """
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def to_execute_many_request(
    item: ExecuteManyItem, *, execution_mode: ExecutionModeLike = None, use_cache: bool | None = None
) -> ExecuteManyRequest:
    """Convert one item to an ``ExecuteManyRequest``.

    Args:
        item: An ``ExecuteManyRequest`` (used as-is) or a tuple
            ``(request_id, query[, mode[, context]])``.
        execution_mode: Mode for tuples that do not give one.
        use_cache: ``use_cache`` for tuples (``None`` leaves it unset).

    Returns:
        The request message.

    Raises:
        TypeError: If the item has another shape.
        ValueError: If the item's mode is not an execution mode.
    """
    if isinstance(item, ExecuteManyRequest):
        return item
    if not isinstance(item, tuple) or not 2 <= len(item) <= 4:
        raise TypeError(
            f"ExecuteMany item must be an ExecuteManyRequest or (request_id, query[, mode[, context]]): {item!r}"
        )
    request_id, query = item[0], item[1]
    mode: ExecutionModeLike = item[2] if len(item) >= 3 and item[2] is not None else execution_mode
    context = to_struct(item[3]) if len(item) == 4 else None
    return ExecuteManyRequest(
        request_id=str(request_id),
        query=query,
        execution_mode=parse_execution_mode(mode),
        context=context,
        use_cache=use_cache,
    )


async def _aiter(source: Iterable[ExecuteManyItem] | AsyncIterable[ExecuteManyItem]) -> AsyncIterator[ExecuteManyItem]:
    if isinstance(source, AsyncIterable):
        async for item in source:
            yield item
    else:
        for item in source:
            yield item


_CORE_WRITE_ERROR = "Internal error from Core"
_STATUS_WAIT_STEP = 0.01
_STATUS_WAIT_STEPS = 200  # 2 s at most: on a loaded machine the real status can take more than 0.2 s


def _is_core_write_error(error: grpc.aio.AioRpcError) -> bool:
    return error.code() is grpc.StatusCode.INTERNAL and error.details() == _CORE_WRITE_ERROR


def _ready_value(awaitable: Coroutine[Any, Any, _T]) -> _T | None:
    """The value of a coroutine that completes without suspending, or ``None`` if it would suspend."""
    try:
        awaitable.send(None)
    except StopIteration as stop:
        return cast("_T", stop.value)
    except Exception:
        return None
    awaitable.close()
    return None


def _snapshot_status(call: grpc.aio.Call) -> grpc.aio.AioRpcError | None:
    """The status of a finished call, read at once (its coroutines do not suspend once it is done)."""
    code = _ready_value(call.code())
    if code is None or code is grpc.StatusCode.OK:
        return None
    details = _ready_value(call.details())
    trailers = _ready_value(call.trailing_metadata())
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailers, details or "")


class ExecuteManyStream(AsyncIterator[ExecuteManyOutcome]):
    """A running ``ExecuteMany`` call: an async iterator of :class:`ExecuteManyOutcome`.

    Requests are taken from the source lazily, one at a time, as gRPC flow
    control accepts them: when the server's window is full it stops reading,
    writes block, and the source is not advanced. Results arrive as they
    complete, not in request order. Use it with ``async for``; leaving an
    ``async with`` block (or :meth:`aclose`) cancels a call that is not done.

    Attributes:
        sent: Requests written so far.
        received: Responses received so far.
    """

    def __init__(
        self,
        method: grpc.aio.StreamStreamMultiCallable[ExecuteManyRequest, ExecuteManyResponse],
        source: Iterable[ExecuteManyItem] | AsyncIterable[ExecuteManyItem],
        *,
        execution_mode: ExecutionModeLike,
        use_cache: bool | None,
        max_in_flight: int | None,
        timeout: float | None,
        metadata: tuple[tuple[str, str | bytes], ...],
        wait_for_ready: bool | None,
    ) -> None:
        """Prepare the stream; the call starts at the first iteration.

        Args:
            method: The ``ExecuteMany`` multi-callable of a stub.
            source: The items to send.
            execution_mode: Mode for tuple items that do not give one.
            use_cache: ``use_cache`` for tuple items.
            max_in_flight: At most this many requests sent and not yet
                answered (``None``: only the server's window limits).
            timeout: Deadline of the whole stream in seconds, or ``None``.
            metadata: Call metadata.
            wait_for_ready: gRPC wait-for-ready semantics for the call.

        Raises:
            ValueError: If ``max_in_flight`` is less than 1.
        """
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._method = method
        self._source = source
        self._execution_mode = execution_mode
        self._use_cache = use_cache
        self._timeout = timeout
        self._metadata = metadata
        self._wait_for_ready = wait_for_ready
        self._slots = asyncio.Semaphore(max_in_flight) if max_in_flight is not None else None
        self._call: grpc.aio.StreamStreamCall[ExecuteManyRequest, ExecuteManyResponse] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._finished = False
        self._first_status: grpc.aio.AioRpcError | None = None
        self.sent = 0
        self.received = 0

    def __aiter__(self) -> Self:
        return self

    async def __aenter__(self) -> Self:
        self._start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _start(self) -> grpc.aio.StreamStreamCall[ExecuteManyRequest, ExecuteManyResponse]:
        if self._call is None:
            self._call = self._method(
                timeout=self._timeout, metadata=self._metadata, wait_for_ready=self._wait_for_ready
            )
            self._writer = asyncio.get_running_loop().create_task(self._write_all(self._call))
            self._writer.add_done_callback(self._on_writer_done)
            self._call.add_done_callback(self._on_call_done)
        return self._call

    def _on_call_done(self, call: grpc.aio.Call) -> None:
        # Keep the status the call ended with. A write that fails because the server has just ended the
        # call makes grpc.aio replace the server's status with "INTERNAL: Internal error from Core"
        # (grpc/grpc#36066); the reader then reports the status kept here instead.
        if self._first_status is None or _is_core_write_error(self._first_status):
            self._first_status = _snapshot_status(call)

    async def _call_error(self, exc: grpc.aio.AioRpcError) -> PatternServiceError:
        # For the grpc.aio write race (see _on_call_done) the server's status may reach the call a moment
        # after the INTERNAL one: wait for it up to _STATUS_WAIT_STEPS * _STATUS_WAIT_STEP seconds.
        if _is_core_write_error(exc):
            for _ in range(_STATUS_WAIT_STEPS):
                for kept in (self._first_status, _snapshot_status(self._call) if self._call else None):
                    if kept is not None and not _is_core_write_error(kept):
                        return from_grpc_error(kept)
                await asyncio.sleep(_STATUS_WAIT_STEP)
        return from_grpc_error(exc)

    async def _write_all(self, call: grpc.aio.StreamStreamCall[ExecuteManyRequest, ExecuteManyResponse]) -> None:
        # Errors of the source and of converting items propagate (the reader re-raises them); errors of
        # the call itself end the writing quietly, as the reader reports the call's status.
        async for item in _aiter(self._source):
            request = to_execute_many_request(item, execution_mode=self._execution_mode, use_cache=self._use_cache)
            if self._slots is not None:
                await self._slots.acquire()
            if not await self._send(call, request):
                return
            self.sent += 1
        if not call.done():
            with contextlib.suppress(Exception):
                await call.done_writing()

    @staticmethod
    async def _send(
        call: grpc.aio.StreamStreamCall[ExecuteManyRequest, ExecuteManyResponse],
        request: ExecuteManyRequest,
    ) -> bool:
        if call.done():
            return False
        try:
            await call.write(request)
        except Exception:  # AioRpcError, InvalidStateError or a core batch error: the call has ended.
            return False
        return True

    def _on_writer_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and self._call is not None:
            # The source (or converting an item) failed: end the call so the reader wakes up.
            self._call.cancel()

    def _writer_error(self) -> BaseException | None:
        task = self._writer
        if task is None or not task.done() or task.cancelled():
            return None
        return task.exception()

    async def __anext__(self) -> ExecuteManyOutcome:
        if self._finished:
            raise StopAsyncIteration
        call = self._start()
        try:
            response = await call.read()
        except asyncio.CancelledError:
            error = self._writer_error()
            current = asyncio.current_task()
            await self.aclose()
            if error is not None and (current is None or not current.cancelling()):
                raise error from None
            raise
        except grpc.aio.AioRpcError as exc:
            error = self._writer_error()
            await self.aclose()
            if error is not None:
                raise error from None
            raise await self._call_error(exc) from exc
        if response is grpc.aio.EOF:
            error = self._writer_error()
            await self.aclose()
            if error is not None:
                raise error
            raise StopAsyncIteration
        if self._slots is not None:
            self._slots.release()
        self.received += 1
        assert isinstance(response, ExecuteManyResponse)
        return ExecuteManyOutcome.from_response(response)

    async def aclose(self) -> None:
        """End the stream: cancel the call if it is not done and stop sending.

        Idempotent; called automatically when iteration ends or fails.
        """
        self._finished = True
        if self._call is not None and not self._call.done():
            self._call.cancel()
        writer = self._writer
        if writer is not None and not writer.done():
            writer.cancel()
            await asyncio.wait([writer])
