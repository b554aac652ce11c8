"""Bounded, concurrent processing of a request stream with backpressure.

Used by ``ExecuteMany``: requests are handled concurrently and their responses
yielded as they complete. At most ``window`` requests are in flight or waiting
to be written; while the window is full the request stream is not read, so a
client that sends faster than the server answers, or reads answers slower
than they come, is slowed down by gRPC flow control instead of filling memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class _Done:
    pass


_DONE = _Done()


class _ReadError(Generic[Req]):
    def __init__(self, exc: BaseException):
        self.exc = exc


async def bounded_map(
    requests: AsyncIterator[Req],
    handle: Callable[[Req], Awaitable[Resp]],
    window: int,
) -> AsyncIterator[Resp]:
    """Yield ``handle(request)`` for every request, in completion order.

    Args:
        requests: The incoming stream.
        handle: Turns one request into its response; must not raise for a bad
            item (it returns an in-band error response instead).
        window: Maximum requests in flight plus responses not yet yielded (>= 1).

    Raises:
        Exception: Whatever reading ``requests`` raised (the stream itself broke),
            once every request read before it has been answered.

    Cancelling the consumer (a client that cancels the call) cancels the reader
    and every running handler before this generator exits; nothing is left behind.
    """
    slots = asyncio.Semaphore(window)
    out: asyncio.Queue[Resp | _Done | _ReadError[Req]] = asyncio.Queue()
    running: set[asyncio.Task[None]] = set()

    async def run(request: Req) -> None:
        await out.put(await handle(request))

    async def read() -> None:
        try:
            while True:
                # Take a slot before reading, so a full window stops the reads.
                await slots.acquire()
                try:
                    request = await anext(requests)
                except StopAsyncIteration:
                    slots.release()
                    break
                task = asyncio.create_task(run(request))
                running.add(task)
                task.add_done_callback(running.discard)
            while running:
                await asyncio.gather(*running, return_exceptions=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the request stream broke: answer what was read, then end with the error
            while running:
                await asyncio.gather(*running, return_exceptions=True)
            await out.put(_ReadError(exc))
            return
        await out.put(_DONE)

    reader = asyncio.create_task(read())
    try:
        while True:
            item = await out.get()
            if isinstance(item, _Done):
                break
            if isinstance(item, _ReadError):
                raise item.exc
            yield item
            slots.release()
    finally:
        reader.cancel()
        for task in list(running):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(reader, *running, return_exceptions=True)
