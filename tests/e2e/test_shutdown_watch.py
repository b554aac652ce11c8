"""A graceful stop ends open health ``Watch`` streams after the drain instead of waiting out the grace period."""

from __future__ import annotations

import asyncio
import pathlib

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from server_helpers import drop_server_database, make_settings, start_server

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
GRACE = 120.0  # a stop that waited for the open watches would take this long


async def test_stop_ends_open_watch_streams_after_the_drain(tmp_path: pathlib.Path) -> None:
    settings = make_settings(tmp_path / "data", grace_period=GRACE, shutdown_drain=0.3)
    server = await start_server(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            calls = [
                stub.Watch(health_pb2.HealthCheckRequest(service=s))
                for s in ("", "tmws.pattern.v1.PatternLearningService")
            ]
            seen: list[list[int]] = [[], []]
            first = [asyncio.Event(), asyncio.Event()]

            async def follow(i: int) -> None:
                async for response in calls[i]:
                    seen[i].append(response.status)
                    first[i].set()

            followers = [asyncio.create_task(follow(i)) for i in range(2)]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in first)), timeout=30)
            stop = asyncio.create_task(server.stop())
            # Far below GRACE: the stop does not wait for the watchers (a bound, not a latency check).
            await asyncio.wait_for(asyncio.gather(stop, *followers), timeout=GRACE / 2)
            for call, statuses in zip(calls, seen, strict=True):
                assert statuses == [SERVING, NOT_SERVING]
                assert await call.code() == grpc.StatusCode.OK  # ended by the server, not cancelled
    finally:
        await server.stop(0)
        await drop_server_database(settings)


async def test_a_service_turning_not_serving_while_running_ends_no_watch(tmp_path: pathlib.Path) -> None:
    settings = make_settings(tmp_path / "data")
    server = await start_server(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            await server.health.set("x.Svc", SERVING)
            call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service="x.Svc"))
            stream = aiter(call)
            assert (await asyncio.wait_for(anext(stream), 30)).status == SERVING
            for status in (NOT_SERVING, SERVING):  # e.g. a backend outage and its recovery
                await server.health.set("x.Svc", status)
                assert (await asyncio.wait_for(anext(stream), 30)).status == status
            call.cancel()
    finally:
        await server.stop(0)
        await drop_server_database(settings)
