"""SIGTERM under load: health flips to NOT_SERVING first, in-flight calls finish, new calls are refused, exit 0.

The load is what a well-behaved deployment sends: clients that watch health
(as a load balancer does) and stop sending new calls once the server reports
NOT_SERVING, an ``ExecuteMany`` stream that is open across the stop, and one
prober that ignores health and calls until it is refused.

grpc.aio's ``server.stop(grace)`` fails calls that reached the server but were
not yet started by it with ``CANCELLED`` the moment it is called, so health
can only be seen first if the server keeps serving for a drain period after
NOT_SERVING (``TMWS_SHUTDOWN_DRAIN``). Until the server has that setting this
test is an expected failure (strict: it turns into a failure once it passes).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from process_helpers import ServerProcess, server_env

from tmws.pattern.client import PatternClient, PatternServiceError, Unavailable

WORKERS = 4
CALLS_BEFORE_STOP = 40
ITEMS_AFTER_NOT_SERVING = 20
GRACE_PERIOD = "60"  # generous: the process exits as soon as in-flight calls are done
DRAIN = "10"  # seconds the server keeps serving after NOT_SERVING (generous for a slow machine)


@dataclass
class Events:
    """What the client saw, in the order its event loop saw it."""

    log: list[str] = field(default_factory=list)
    ok_calls: int = 0
    worker_errors: list[PatternServiceError] = field(default_factory=list)
    enough_calls: asyncio.Event = field(default_factory=asyncio.Event)
    serving: asyncio.Event = field(default_factory=asyncio.Event)
    not_serving: asyncio.Event = field(default_factory=asyncio.Event)


async def _watch_health(target: str, events: Events) -> None:
    """Watch overall health until NOT_SERVING, then end the watch (so it does not hold up the grace period)."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        try:
            async for response in call:
                events.log.append(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    events.serving.set()
                if response.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                    events.not_serving.set()
                    return
        finally:
            call.cancel()


async def _health_aware_worker(client: PatternClient, events: Events, worker: int) -> None:
    """``Execute`` calls back to back until health says NOT_SERVING; every call must succeed."""
    i = 0
    while not events.not_serving.is_set():
        i += 1
        try:
            result = await client.execute(f"calculate {worker} + {i}", use_cache=False)
        except PatternServiceError as exc:
            events.worker_errors.append(exc)
            events.log.append(f"worker-refused:{type(exc).__name__}")
            return
        assert result.success
        events.ok_calls += 1
        if events.ok_calls >= CALLS_BEFORE_STOP:
            events.enough_calls.set()


async def _prober(client: PatternClient, events: Events) -> PatternServiceError:
    """``Execute`` calls that ignore health until one is refused; returns the refusal."""
    while True:
        try:
            await client.execute("calculate 6 * 7", use_cache=False)
        except PatternServiceError as exc:
            events.log.append(f"refused:{type(exc).__name__}")
            return exc
        await asyncio.sleep(0.05)


async def _in_flight_stream(client: PatternClient, events: Events, started: asyncio.Event) -> list[str]:
    """An ``ExecuteMany`` opened before the stop that keeps sending after NOT_SERVING; returns its request ids."""

    async def requests() -> AsyncIterator[tuple[str, str]]:
        yield "before", "calculate 20 + 22"
        await events.not_serving.wait()
        for i in range(ITEMS_AFTER_NOT_SERVING):
            yield f"after-{i}", f"calculate {i} * 2"

    answered: list[str] = []
    async for outcome in client.execute_many(requests()):
        assert outcome.ok and outcome.result is not None and outcome.result.success, outcome
        answered.append(outcome.request_id)
        started.set()
    return answered


async def test_sigterm_under_load_drains_and_exits_zero(tmp_path: Path) -> None:
    env = server_env(tmp_path / "data", TMWS_GRACE_PERIOD=GRACE_PERIOD, TMWS_SHUTDOWN_DRAIN=DRAIN)
    server = await ServerProcess(env).start()
    events = Events()
    tasks: list[asyncio.Task[object]] = []
    try:
        async with PatternClient.connect(server.target, default_timeout=60.0) as client:
            await client.wait_until_ready(60)
            watch = asyncio.create_task(_watch_health(server.target, events))
            stream_started = asyncio.Event()
            stream = asyncio.create_task(_in_flight_stream(client, events, stream_started))
            workers = [asyncio.create_task(_health_aware_worker(client, events, w)) for w in range(WORKERS)]
            tasks += [watch, stream, *workers]
            async with asyncio.timeout(120):
                await asyncio.gather(events.enough_calls.wait(), stream_started.wait(), events.serving.wait())
            prober = asyncio.create_task(_prober(client, events))
            tasks.append(prober)

            server.proc.send_signal(signal.SIGTERM)
            events.log.append("sigterm")
            async with asyncio.timeout(120):
                await watch
                answered = await stream
                await asyncio.gather(*workers)
                refusal = await prober
            code = await server.wait(within=120)

            async with PatternClient.connect(server.target, default_timeout=30.0) as late:
                with contextlib.suppress(Unavailable):
                    await late.execute("calculate 1 + 1")
                    raise AssertionError("a call after the stop was served")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.close()

    assert code == 0, server.log
    assert "stopped" in server.log
    # Health flipped (after the signal) before any call was refused.
    assert (
        events.log.index("sigterm")
        < events.log.index("NOT_SERVING")
        < events.log.index(f"refused:{type(refusal).__name__}")
    ), events.log
    # Clients that follow health were never refused; the stream open across the stop was served to its end.
    assert events.worker_errors == [], events.log
    assert sorted(answered) == sorted(["before", *(f"after-{i}" for i in range(ITEMS_AFTER_NOT_SERVING))])
