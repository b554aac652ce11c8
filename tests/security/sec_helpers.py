"""Security test helpers: API keys of the test server, a controllable slow tool, task accounting."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pattern_service.api.keys import hash_key
from pattern_service.engine.tools import ToolCall
from pattern_service.server import PatternServer
from tmws.pattern.client import PatternClient
from tmws.pattern.v1 import PATTERN_TYPE_INFRASTRUCTURE, PatternDefinition

#: name -> (tenant, scopes); the plaintext key of each is ``key_of(name)``.
KEYS: dict[str, tuple[str, list[str]]] = {
    "a-admin": ("tenant-a", ["admin"]),
    "a-all": ("tenant-a", ["execute", "read", "write"]),
    "a-exec": ("tenant-a", ["execute", "read"]),
    "a-read": ("tenant-a", ["read"]),
    "a-write": ("tenant-a", ["write"]),
    "b-all": ("tenant-b", ["execute", "read", "write"]),
    "b-admin": ("tenant-b", ["admin"]),
    "ops-global": ("ops", ["patterns:admin:global"]),
    "a-mem-read": ("tenant-a", ["memories:read"]),
    "a-mem-write": ("tenant-a", ["memories:write"]),
}


def key_of(name: str) -> str:
    """The plaintext API key of the test key ``name``."""
    return f"tmws_test_{name}_0123456789abcdef"


def keys_json() -> str:
    """``TMWS_API_KEYS`` for :data:`KEYS` (digests only)."""
    return json.dumps(
        [
            {"name": n, "tenant": tenant, "scopes": scopes, "key_sha256": hash_key(key_of(n))}
            for n, (tenant, scopes) in KEYS.items()
        ]
    )


def bearer(name: str) -> list[tuple[str, str]]:
    """Call metadata authenticating as the test key ``name``."""
    return [("authorization", f"Bearer {key_of(name)}")]


@dataclass
class SlowTool:
    """A tool that blocks until released (or cancelled), counting what happened to its runs."""

    started: int = 0
    cancelled: int = 0
    finished: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    running: set[asyncio.Task[Any]] = field(default_factory=set)

    async def __call__(self, call: ToolCall) -> Mapping[str, Any]:
        """Wait for :attr:`release`; records the run's outcome."""
        self.started += 1
        task = asyncio.current_task()
        assert task is not None
        self.running.add(task)
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running.discard(task)
        self.finished += 1
        return {"released": True}

    async def wait_started(self, count: int, bound: float = 60.0) -> None:
        """Wait until ``count`` runs have started (``bound`` seconds at most: a hang guard, not a timing check)."""
        await settle(lambda: self.started >= count, bound)


SLOW_TRIGGER_QUERY = "slow probe please"


def slow_definition() -> PatternDefinition:
    """An uncached infrastructure pattern running the ``slow_probe`` tool."""
    d = PatternDefinition(
        name="slow_probe",
        pattern_type=PATTERN_TYPE_INFRASTRUCTURE,
        trigger_pattern=r"\bslow\s+probe\b",
        cost_tokens=5,
        priority=100,
        cache_ttl=0,
    )
    d.metadata.update({"tool": "slow_probe"})
    return d


async def install_slow_tool(server: PatternServer, client: PatternClient) -> SlowTool:
    """Register the ``slow_probe`` tool on ``server`` and its pattern through ``client`` (needs admin)."""
    tool = SlowTool()
    server.app.engine.tools.register("slow_probe", tool, description="blocks until released")
    await client.register_batch([slow_definition()])
    return tool


async def settle(predicate: Callable[[], bool], bound: float = 60.0) -> None:
    """Wait until ``predicate()`` holds, polling; ``bound`` seconds is a hang guard only."""
    async with asyncio.timeout(bound):
        while not predicate():  # noqa: ASYNC110 - polls state owned by the server and grpc, no event to await
            await asyncio.sleep(0.02)


#: Coroutines of grpc's own server plumbing: a standing "wait for the next call" per registered
#: method, re-armed after each call. They do no work of a call and are not counted.
GRPC_PLUMBING_PREFIX = "AioServer."


def other_tasks(baseline: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    """Tasks of this loop that are not done, not in ``baseline``, not the current one and not grpc plumbing."""
    current = asyncio.current_task()
    return {
        t
        for t in asyncio.all_tasks()
        if t is not current
        and not t.done()
        and t not in baseline
        and not str(getattr(t.get_coro(), "__qualname__", "")).startswith(GRPC_PLUMBING_PREFIX)
    }
