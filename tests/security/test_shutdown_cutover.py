"""The shutdown cut-over: no call is ever CANCELLED by the stop itself.

A server is stopped while slow calls it admitted are running and while
clients keep firing new calls on open connections and on new ones, before,
during and after the end of the drain. Every call must end ``OK`` (served)
or ``UNAVAILABLE`` (refused: clients retry it elsewhere); none may end
``CANCELLED``, which a client cannot tell from its own cancellation and does
not retry. The admitted slow calls complete within the grace period. The
clients behave as clients should: a refused call is retried after the delay
its ``RetryInfo`` asks for.
(Server in the test's event loop; the waits are hang guards, not timing checks.)
"""

from __future__ import annotations

import asyncio
import collections
import pathlib

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sec_helpers import SLOW_TRIGGER_QUERY, install_slow_tool, settle
from server_helpers import drop_server_database, make_settings, start_server

from tmws.pattern.client import PatternClient
from tmws.pattern.v1 import pattern_execution_service_pb2 as pe
from tmws.pattern.v1 import pattern_execution_service_pb2_grpc as pe_grpc

SLOW_CALLS = 4
FIREHOSE_CHANNELS = 3
CALLERS_PER_CHANNEL = 6
GRACE = 120.0  # far longer than the test needs: the slow calls end when released


def _retry_delay(error: grpc.aio.AioRpcError) -> float:
    """What a well-behaved client waits before retrying: the RetryInfo delay, else a short backoff."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToTimedelta().total_seconds()
    return 0.05


async def _fire(target: str, codes: collections.Counter[str], stop: asyncio.Event, fresh_channels: bool) -> None:
    """Execute calls back to back until ``stop``; counts each call's final status code."""
    channel = grpc.aio.insecure_channel(target)
    try:
        while not stop.is_set():
            if fresh_channels:  # a new connection per call: arrives at the listener, not on an open connection
                await channel.close()
                channel = grpc.aio.insecure_channel(target)
            stub = pe_grpc.PatternExecutionServiceStub(channel)
            try:
                await stub.Execute(pe.ExecuteRequest(query="calculate 6 * 7", use_cache=False), timeout=60)
                codes["OK"] += 1
            except grpc.aio.AioRpcError as exc:
                codes[exc.code().name] += 1
                if exc.code() == grpc.StatusCode.UNAVAILABLE:
                    await asyncio.sleep(_retry_delay(exc))
    finally:
        await channel.close()


async def test_calls_during_and_after_the_drain_are_served_or_unavailable(tmp_path: pathlib.Path) -> None:
    settings = make_settings(tmp_path / "data", grace_period=GRACE, shutdown_drain=0.5)
    server = await start_server(settings)
    target = f"127.0.0.1:{server.port}"
    codes: collections.Counter[str] = collections.Counter()
    done = asyncio.Event()
    firehose: list[asyncio.Task[None]] = []
    try:
        async with PatternClient.connect(target, default_timeout=GRACE) as client:
            tool = await install_slow_tool(server, client)
            slow = [
                asyncio.ensure_future(client.execution_stub.Execute(pe.ExecuteRequest(query=SLOW_TRIGGER_QUERY)))
                for _ in range(SLOW_CALLS)
            ]
            await tool.wait_started(SLOW_CALLS)
            for i in range(FIREHOSE_CHANNELS * CALLERS_PER_CHANNEL):
                firehose.append(asyncio.create_task(_fire(target, codes, done, fresh_channels=i % 3 == 0)))
            await settle(lambda: codes["OK"] >= 20)  # the firehose is being served

            stopping = asyncio.create_task(server.stop())
            # Released once the server refuses new calls (the drain is over and the cut-over happened):
            # the admitted calls then finish inside the grace period.
            await settle(lambda: codes["UNAVAILABLE"] >= 20, bound=GRACE)
            served_before_release = codes["OK"]
            tool.release.set()
            results = await asyncio.wait_for(asyncio.gather(*slow, return_exceptions=True), GRACE)
            await asyncio.wait_for(stopping, GRACE)
            await settle(lambda: codes["UNAVAILABLE"] >= 40)  # new calls after the stop are refused too
    finally:
        done.set()
        await asyncio.gather(*firehose, return_exceptions=True)
        await server.stop(0)
        await drop_server_database(settings)

    assert [type(r).__name__ for r in results] == ["ExecuteResponse"] * SLOW_CALLS, results
    assert all(r.result.success for r in results if isinstance(r, pe.ExecuteResponse))
    assert tool.finished == SLOW_CALLS and tool.cancelled == 0
    assert served_before_release >= 20
    assert set(codes) <= {"OK", "UNAVAILABLE"}, codes
