"""Helpers of the crash-safety tests: the real server as a subprocess, polling, and result decoding."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf import json_format, struct_pb2

from pattern_service.config import Settings
from pattern_service.store.vectors.base import VectorIndex

REPO = Path(__file__).resolve().parents[1]
SERVING = re.compile(r"serving tmws\.pattern\.v1 on [\d.]+:(\d+)")
START_TIMEOUT = 180.0
POLL_TIMEOUT = 120.0

T = TypeVar("T")


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment of a server (or store) process on the embedded backends under ``data_dir``.

    Port 0, no metrics endpoint, the fast ``hashing`` embedder, SQLite in
    ``data_dir``; the vector index is qdrant-edge, or qdrant-client local mode
    when ``TMWS_TEST_VECTOR_BACKEND=qdrant_local``.

    Args:
        data_dir: ``TMWS_DATA_DIR``.
        **extra: More ``TMWS_*`` variables (they win).

    Returns:
        The environment (this process's, with those variables set).

    Raises:
        ValueError: ``TMWS_TEST_VECTOR_BACKEND`` names an unknown backend.
    """
    env = dict(os.environ)
    env.update(
        TMWS_GRPC_ADDRESS="127.0.0.1:0",
        TMWS_METRICS_ADDRESS="",
        TMWS_DATA_DIR=str(data_dir),
        TMWS_EMBEDDER="hashing",
        TMWS_DATABASE_URL="",
        TMWS_REDIS_URL="",
        TMWS_QDRANT_URL="",
        TMWS_QDRANT_PATH="",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
    )
    backend = os.environ.get("TMWS_TEST_VECTOR_BACKEND", "edge") or "edge"
    if backend == "qdrant_local":
        env["TMWS_QDRANT_PATH"] = str(data_dir / "qdrant")
    elif backend != "edge":
        raise ValueError(f"TMWS_TEST_VECTOR_BACKEND must be 'edge' or 'qdrant_local', got {backend!r}")
    env.update(extra)
    return env


def settings_of(env: dict[str, str]) -> Settings:
    """The :class:`Settings` a process started with ``env`` reads."""
    return Settings(
        data_dir=Path(env["TMWS_DATA_DIR"]),
        embedder="hashing",
        database_url="",
        qdrant_url="",
        qdrant_path=env.get("TMWS_QDRANT_PATH", ""),
    )


def open_vector_index(settings: Settings) -> VectorIndex:
    """The vector index the service opens for ``settings`` (embedded backends only)."""
    if settings.qdrant_path:
        from pattern_service.store.vectors.qdrant import QdrantVectorIndex

        return QdrantVectorIndex(path=settings.qdrant_path)
    from pattern_service.store.vectors.edge import EdgeVectorIndex

    return EdgeVectorIndex(settings.vector_dir)


def struct_to_dict(value: struct_pb2.Struct) -> dict[str, Any]:
    """A ``Struct`` as a plain dict."""
    return json_format.MessageToDict(value)


async def poll(check: Callable[[], Awaitable[T | None]], what: str, within: float = POLL_TIMEOUT) -> T:
    """Call ``check`` until it returns something other than ``None``.

    Args:
        check: Returns the awaited value, or ``None`` to try again.
        what: What is awaited (for the failure message).
        within: Seconds to keep trying (generous: the machine may be slow).

    Returns:
        The first value ``check`` returned that is not ``None``.

    Raises:
        AssertionError: ``check`` kept returning ``None`` for ``within`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await check()
        if value is not None:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(0.2)


class ServerProcess:
    """``python -m pattern_service serve`` as a child process, its output drained into :attr:`lines`.

    Args:
        env: The child's environment (see :func:`server_env`).
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.lines: list[str] = []
        self.port = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def target(self) -> str:
        """``host:port`` of the started server."""
        return f"127.0.0.1:{self.port}"

    @property
    def proc(self) -> asyncio.subprocess.Process:
        """The child process.

        Raises:
            RuntimeError: Not started.
        """
        if self._proc is None:
            raise RuntimeError("server process not started")
        return self._proc

    @property
    def log(self) -> str:
        """Everything the child printed so far."""
        return "".join(self.lines)

    async def start(self) -> ServerProcess:
        """Start the child and wait for its "serving ... on host:PORT" line.

        Returns:
            ``self``, with :attr:`port` set.

        Raises:
            AssertionError: The child exited before serving.
            TimeoutError: It did not serve within ``START_TIMEOUT`` seconds.
        """
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pattern_service",
            "serve",
            env=self.env,
            cwd=str(REPO),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        stdout = self._proc.stdout
        assert stdout is not None
        async with asyncio.timeout(START_TIMEOUT):
            while not self.port:
                line = (await stdout.readline()).decode(errors="replace")
                assert line, "server exited before serving:\n" + self.log
                self.lines.append(line)
                if found := SERVING.search(line):
                    self.port = int(found.group(1))
        self._drain = asyncio.create_task(self._read_rest(stdout))
        return self

    async def _read_rest(self, stdout: asyncio.StreamReader) -> None:
        """Keep reading the child's output so a full pipe never blocks it."""
        while line := await stdout.readline():
            self.lines.append(line.decode(errors="replace"))

    async def wait(self, within: float = 120.0) -> int:
        """Wait for the child to exit and its output to be read.

        Returns:
            The exit code (negative: killed by that signal).

        Raises:
            TimeoutError: It did not exit within ``within`` seconds.
        """
        async with asyncio.timeout(within):
            code = await self.proc.wait()
            if self._drain is not None:
                await self._drain
        return code

    async def kill(self) -> int:
        """SIGKILL the child and wait for it.

        Returns:
            The exit code (``-9`` unless it had already exited).
        """
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        return await self.wait()

    async def close(self) -> None:
        """Make sure the child is gone (SIGKILL if still running); for ``finally`` blocks."""
        if self._proc is not None and self._proc.returncode is None:
            await self.kill()
        if self._drain is not None and not self._drain.done():
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
