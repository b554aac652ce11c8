"""Helpers of the Redis cache tests: the shared Redis, a private redis-server, key cleanup, polling.

The shared Redis (``TMWS_TEST_REDIS_URL``, default ``redis://127.0.0.1:6379/0``)
is used only under a unique namespace per test, and only that namespace's keys
are deleted afterwards (never FLUSHDB). Outages are tested on a private
``redis-server`` this module starts on a free port (no persistence) and stops.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

REDIS_URL = os.environ.get("TMWS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POLL_TIMEOUT = 30.0


async def redis_unreachable(url: str) -> str | None:
    """Why ``url`` cannot be used (``None`` when it answers PING)."""
    client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    except Exception as exc:
        return f"Redis at {url} unreachable: {exc!r}"
    finally:
        await client.aclose()
    return None


async def redis_delete_namespace(url: str, namespace: str) -> int:
    """UNLINK every ``tmws:<namespace>:*`` key at ``url``; returns how many."""
    client = Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        keys = [k async for k in client.scan_iter(match=f"tmws:{namespace}:*", count=500)]
        return int(await client.unlink(*keys)) if keys else 0
    finally:
        await client.aclose()


async def redis_wait_for(condition: Callable[[], Awaitable[bool]], limit: float = POLL_TIMEOUT) -> float:
    """Poll ``condition`` every 20 ms until true; returns the seconds it took.

    Raises:
        AssertionError: Still false after ``limit`` seconds (a generous bound, not a latency check).
    """
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > limit:
            raise AssertionError(f"condition not met within {limit} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A redis-server process of this test only (no RDB, no AOF), stoppable and restartable on its port."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: asyncio.subprocess.Process | None = None

    @staticmethod
    def binary() -> str | None:
        """Path of ``redis-server`` (``None`` when not installed)."""
        return shutil.which("redis-server")

    async def start(self) -> None:
        """Start the server and wait until it answers PING.

        Raises:
            RuntimeError: ``redis-server`` is not installed.
            AssertionError: It did not answer within the polling timeout.
        """
        binary = self.binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self._process = await asyncio.create_subprocess_exec(
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )

        async def answers() -> bool:
            return await redis_unreachable(self.url) is None

        await redis_wait_for(answers)

    async def stop(self) -> None:
        """Terminate the server (its data is lost) and wait for the process to exit."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), POLL_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
