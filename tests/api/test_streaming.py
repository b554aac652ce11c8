"""bounded_map: completion order, the window bound, backpressure and cancellation."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from pattern_service.api.streaming import bounded_map


async def _source(n: int, read: list[int]) -> AsyncIterator[int]:
    for i in range(n):
        read.append(i)
        yield i


async def test_yields_every_result_in_completion_order() -> None:
    release = {i: asyncio.Event() for i in range(3)}

    async def handle(i: int) -> int:
        await release[i].wait()
        return i

    read: list[int] = []
    gen = bounded_map(_source(3, read), handle, window=3)
    first = asyncio.ensure_future(anext(gen))
    await asyncio.sleep(0)
    release[2].set()
    assert await first == 2
    release[0].set()
    release[1].set()
    rest = [x async for x in gen]
    assert sorted(rest) == [0, 1]


async def test_window_bounds_in_flight_and_stops_reading() -> None:
    active = 0
    peak = 0
    gate = asyncio.Event()

    async def handle(i: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await gate.wait()
        active -= 1
        return i

    read: list[int] = []
    gen = bounded_map(_source(100, read), handle, window=4)
    nxt = asyncio.ensure_future(anext(gen))
    for _ in range(20):
        await asyncio.sleep(0)
    # Window full: exactly 4 read and running, the source is not read further.
    assert len(read) == 4
    assert active == 4
    gate.set()
    results = [await nxt] + [x async for x in gen]
    assert sorted(results) == list(range(100))
    assert peak <= 4


async def test_unconsumed_results_hold_the_window() -> None:
    async def handle(i: int) -> int:
        return i

    read: list[int] = []
    gen = bounded_map(_source(50, read), handle, window=2)
    assert await anext(gen) in (0, 1)
    for _ in range(20):
        await asyncio.sleep(0)
    # One result yielded (slot released on the next pull), at most window+1 read.
    assert len(read) <= 3
    await gen.aclose()


async def test_cancel_leaves_no_task_behind() -> None:
    started = asyncio.Event()

    async def handle(i: int) -> int:
        started.set()
        await asyncio.sleep(3600)
        return i

    before = set(asyncio.all_tasks())
    read: list[int] = []
    consumer = asyncio.ensure_future(anext(bounded_map(_source(10, read), handle, window=3)))
    await started.wait()
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consumer
    await asyncio.sleep(0)
    leftover = {t for t in asyncio.all_tasks() - before if not t.done()}
    assert leftover == set()


async def test_a_broken_request_stream_raises() -> None:
    async def source() -> AsyncIterator[int]:
        yield 1
        raise ConnectionError("peer went away")

    async def handle(i: int) -> int:
        return i

    got: list[int] = []
    try:
        async for x in bounded_map(source(), handle, window=2):
            got.append(x)
    except ConnectionError as exc:
        assert "peer" in str(exc)
    else:
        raise AssertionError("expected ConnectionError")


async def test_requests_read_before_a_broken_stream_are_answered_first() -> None:
    started = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        yield 1
        await started.wait()  # the first request is being handled when the stream breaks
        raise ValueError("undecodable message")

    async def handle(i: int) -> int:
        started.set()
        for _ in range(5):
            await asyncio.sleep(0)  # still running when the read error arrives
        return i * 10

    got: list[int] = []
    with pytest.raises(ValueError, match="undecodable"):
        async for x in bounded_map(source(), handle, window=4):
            got.append(x)
    assert got == [10]  # answered, not cancelled, before the stream ended with the error
