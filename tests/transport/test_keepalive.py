"""Keepalive: grpc-js-style client pings every 10 s are accepted; server pings find dead peers.

These use real grpc.aio clients (no mocks). The 60 s test reproduces the report:
a grpc-js channel with ``grpc.keepalive_time_ms=10000`` had its health ``Watch``
killed at 40 s by ``GOAWAY too_many_pings``.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from net_helpers import CountingProxy
from server_helpers import drop_server_database, make_settings, start_server

#: A grpc-js channel's keepalive as commonly configured: ping every 10 s, also without calls,
#: with no cap on pings without data (grpc-js has none; grpc core's client default is 2).
GRPC_JS_LIKE = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
HOLD_SECONDS = 60.0
#: Size of an HTTP/2 PING frame (9-byte header + 8-byte payload).
PING_FRAME_BYTES = 17


async def _watch_first(channel: grpc.aio.Channel) -> grpc.aio.UnaryStreamCall:  # type: ignore[type-arg]
    call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
    first = await call.read()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    return call


async def test_grpc_js_style_keepalive_watch_survives_60s(tmp_path: pathlib.Path) -> None:
    settings = make_settings(tmp_path / "data")
    server = await start_server(settings)
    proxy = CountingProxy(server.port)
    await proxy.start()
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{proxy.port}", options=GRPC_JS_LIKE) as watching,
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=GRPC_JS_LIKE) as idle,
        ):
            call = await _watch_first(watching)
            # The idle channel: one call, then no call in flight for the whole hold.
            await health_pb2_grpc.HealthStub(idle).Check(health_pb2.HealthCheckRequest(), timeout=10)
            bytes_before = proxy.to_server
            states: set[grpc.ChannelConnectivity] = set()
            started = time.monotonic()

            async def watch_states() -> None:
                while time.monotonic() - started < HOLD_SECONDS:
                    states.add(idle.get_state())
                    await asyncio.sleep(0.5)

            sampler = asyncio.create_task(watch_states())
            # No status change is due: the read must neither end nor fail for the whole hold
            # (asyncio.wait, unlike wait_for, does not cancel the read, which would cancel the call).
            reader = asyncio.ensure_future(call.read())
            done, _ = await asyncio.wait([reader], timeout=HOLD_SECONDS)
            await sampler
            held = time.monotonic() - started
            assert not done, f"the Watch ended after {held:.1f} s: {reader.exception() or reader.result()}"
            assert not call.done()
            pings_bytes = proxy.to_server - bytes_before
            print(
                f"\nWatch held {held:.1f} s with 10 s client pings: still open; "
                f"client->server bytes while held: {pings_bytes} (>= 5 PING frames); idle channel states: "
                f"{sorted(s.name for s in states)}"
            )
            assert pings_bytes >= 5 * PING_FRAME_BYTES
            assert states == {grpc.ChannelConnectivity.READY}
            # Both channels still carry calls on their first connection.
            await health_pb2_grpc.HealthStub(idle).Check(health_pb2.HealthCheckRequest(), timeout=10)
            await health_pb2_grpc.HealthStub(watching).Check(health_pb2.HealthCheckRequest(), timeout=10)
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await reader
    finally:
        await proxy.close()
        await server.stop(0)
        await drop_server_database(settings)


async def test_pings_faster_than_the_policy_are_refused(tmp_path: pathlib.Path) -> None:
    """The enforcement policy is the server's setting: pings more frequent than it end the connection."""
    settings = make_settings(tmp_path / "data", keepalive_min_ping_interval=30.0)
    server = await start_server(settings)
    fast = [("grpc.keepalive_time_ms", 1000), *GRPC_JS_LIKE[1:]]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=fast) as channel:
            call = await _watch_first(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await asyncio.wait_for(call.read(), timeout=20)
            assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
    finally:
        await server.stop(0)
        await drop_server_database(settings)


async def test_server_keepalive_closes_a_dead_peer(tmp_path: pathlib.Path) -> None:
    """A peer that stops answering (frozen proxy) is closed by the server after keepalive time + timeout."""
    settings = make_settings(tmp_path / "data", keepalive_time=1.0, keepalive_timeout=1.0)
    server = await start_server(settings)
    proxy = CountingProxy(server.port)
    await proxy.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{proxy.port}") as channel:
            call = await _watch_first(channel)
            proxy.freeze()
            await asyncio.wait_for(proxy.upstream_closed.wait(), timeout=15)
            call.cancel()
    finally:
        await proxy.close()
        await server.stop(0)
        await drop_server_database(settings)
