"""Deadlines bound the work and cancellation leaves nothing running (server in the test's event loop).

Tasks are counted in the server's loop (the test's own): a baseline is taken
after a warm-up call, and after the call under test the loop must return to it.
The waits are bounded hang guards, never timing assertions.
"""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import pytest
from sec_helpers import SLOW_TRIGGER_QUERY, install_slow_tool, other_tasks, settle
from server_helpers import drop_server_database, make_settings, start_server

from pattern_service.server import PatternServer
from tmws.pattern.client import DeadlineExceeded, PatternClient
from tmws.pattern.v1 import ExecuteManyRequest

# Seconds; the slow path never finishes on its own, so any deadline expires (5 s: time to reach it on a loaded machine).
TINY_DEADLINE = 5.0


async def _baseline(client: PatternClient) -> set[asyncio.Task[Any]]:
    await client.get_stats()  # warm the channel up: its long-lived tasks belong to the baseline
    return {t for t in asyncio.all_tasks() if not t.done()}


async def test_an_expired_deadline_cancels_the_execution(server: PatternServer, target: str) -> None:
    async with PatternClient.connect(target, default_timeout=60.0) as client:
        tool = await install_slow_tool(server, client)
        baseline = await _baseline(client)
        with pytest.raises(DeadlineExceeded):
            await client.execute(SLOW_TRIGGER_QUERY, timeout=TINY_DEADLINE)
        await settle(lambda: tool.cancelled == 1 and not tool.running)
        await settle(lambda: not other_tasks(baseline))
        assert tool.finished == 0
        assert (await client.get_stats()).engine.successful_executions == 0


async def test_an_expired_deadline_cancels_a_learning_store_call(
    server: PatternServer, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered = asyncio.Event()
    cancelled: list[bool] = []

    async def slow_list(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        try:
            await asyncio.Event().wait()  # never set: only the deadline ends this
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    monkeypatch.setattr(server.app.learning_store, "list", slow_list)
    async with PatternClient.connect(target, default_timeout=60.0) as client:
        baseline = await _baseline(client)
        with pytest.raises(DeadlineExceeded):
            await client.list_success_patterns(timeout=TINY_DEADLINE)
        assert entered.is_set()
        await settle(lambda: cancelled == [True])
        await settle(lambda: not other_tasks(baseline))


@pytest.mark.parametrize("concurrency", [8, 2])
async def test_cancelling_execute_many_mid_stream_leaves_no_task_behind(
    tmp_path: pathlib.Path, concurrency: int
) -> None:
    """With 8 execution slots all six items run and the fast one overtakes; with 2, four wait for a slot.

    Either way, cancelling the stream cancels what runs and what waits, and nothing is left.
    """
    settings = make_settings(tmp_path / "data", stream_concurrency=concurrency)
    server = await start_server(settings)
    try:
        async with PatternClient.connect(f"127.0.0.1:{server.port}", default_timeout=60.0) as client:
            tool = await install_slow_tool(server, client)
            baseline = await _baseline(client)
            items = [ExecuteManyRequest(request_id="fast", query="calculate 1 + 1")] if concurrency == 2 else []
            items += [ExecuteManyRequest(request_id=str(i), query=SLOW_TRIGGER_QUERY) for i in range(5)]
            if concurrency > 2:
                items.append(ExecuteManyRequest(request_id="fast", query="calculate 1 + 1"))
            stream = client.execution_stub.ExecuteMany(iter(items))
            first = await stream.read()
            assert first.request_id == "fast" and first.HasField("result")
            running = min(5, concurrency)
            await tool.wait_started(running)
            stream.cancel()
            await settle(lambda: tool.cancelled == running and not tool.running)
            await settle(lambda: not other_tasks(baseline))
            assert tool.finished == 0 and tool.started == tool.cancelled == running  # the queued ones never started
    finally:
        await server.stop(0)
        await drop_server_database(settings)
