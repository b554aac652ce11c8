"""PostgreSQL crashed under a running server: SQL paths fail fast with UNAVAILABLE, the rest serves, all recovers.

The server runs as a subprocess on a private PostgreSQL cluster of this test
(``initdb`` + ``pg_ctl`` on a free port; the server runs the migrations itself).
``pg_ctl stop -m immediate`` kills the database under it. Then:

* memory and learning RPCs end with ``UNAVAILABLE`` before their (generous)
  5 s deadline — a failed connect must not hang until the deadline;
* infrastructure paths keep working (``Execute "calculate 2 + 2"``);
* gRPC health reports NOT_SERVING for the learning service and SERVING for the
  execution service (and overall).

PostgreSQL is started again on the same port, and without restarting the server
a store and a recall, a ``CreateSuccessPattern`` and the learning service's
health all recover.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from private_postgres import PrivatePostgres, unavailable_reason
from process_helpers import ServerProcess, poll, server_env, struct_to_dict
from server_helpers import create_database
from sqlalchemy import text

from pattern_service.errors import UnavailableError
from pattern_service.store.db import Database
from tmws.pattern.client import PatternClient, PatternServiceError
from tmws.pattern.v1 import SuccessPattern

LEARNING = "tmws.pattern.v1.PatternLearningService"
EXECUTION = "tmws.pattern.v1.PatternExecutionService"
FAIL_FAST_DEADLINE = 15.0  # generous for a loaded machine; far below the 60 s a hung connect would take
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or "")


def _words() -> str:
    """Words no other text of the test contains (the test server's hashing embedder is lexical)."""
    return " ".join(f"w{uuid.uuid4().hex[:10]}" for _ in range(3))


def _pattern(description: str) -> SuccessPattern:
    return SuccessPattern(
        pattern_type="fault_recovery", name=f"Recovery {uuid.uuid4().hex[:8]}", description=description
    )


async def _health(target: str, service: str) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=30
        )
    return int(response.status)


async def _wait_health(target: str, expected: dict[str, int]) -> None:
    """Poll gRPC health until every service in ``expected`` reports its status."""

    async def check() -> bool | None:
        for service, status in expected.items():
            if await _health(target, service) != status:
                return None
        return True

    await poll(check, f"health {expected}")


async def _store_and_recall(client: PatternClient, *, deadline: float | None = None) -> str:
    """Store a memory of fresh words and recall it by them; returns its memory id."""
    words = _words()
    stored = await client.execute(
        f"store the recovery drill notes {words}", context={"agent": "drill"}, timeout=deadline
    )
    assert stored.success, stored
    recalled = await client.execute(
        f"recall memories about {words}", context={"agent": "drill"}, use_cache=False, timeout=deadline
    )
    assert recalled.success, recalled
    found = struct_to_dict(recalled.result)["memory"]["memories"]
    assert found and words in found[0]["content"], found
    return str(found[0]["memory_id"])


async def _fails_fast(name: str, call: Callable[[], Awaitable[object]]) -> str:
    """Run ``call`` (made with a ``FAIL_FAST_DEADLINE`` deadline); returns its status code name ("OK" if it passed)."""
    try:
        result = await call()
    except PatternServiceError as exc:
        return exc.code.name
    success = getattr(result, "success", True)
    return "OK" if success else f"RESULT_FAILED({getattr(result, 'error', '')})"


async def test_postgres_crash_fails_fast_keeps_infrastructure_and_recovers(tmp_path: Path) -> None:
    postgres = PrivatePostgres()
    server: ServerProcess | None = None
    try:
        await postgres.init()
        await postgres.start()
        url = await create_database(postgres.maintenance_url, prefix="tmws_fault")
        env = server_env(tmp_path / "data", TMWS_DATABASE_URL=url, TMWS_DB_MAX_CONNECTIONS="5")
        server = await ServerProcess(env).start()
        async with PatternClient.connect(server.target, default_timeout=60.0) as client:
            await client.wait_until_ready(60)
            await _store_and_recall(client)
            created = await client.create_success_pattern(_pattern(f"drill before the crash {_words()}"))
            await _wait_health(server.target, {LEARNING: SERVING, EXECUTION: SERVING, "": SERVING})

            await postgres.stop("immediate")

            d = FAIL_FAST_DEADLINE
            calls: dict[str, Callable[[], Awaitable[object]]] = {
                "Execute store": lambda: client.execute(f"store a note {_words()}", timeout=d),
                "Execute recall": lambda: client.execute(
                    f"recall memories about {_words()}", use_cache=False, timeout=d
                ),
                "MatchPatterns": lambda: client.match_patterns("drill before the crash", timeout=d),
                "CreateSuccessPattern": lambda: client.create_success_pattern(_pattern(_words()), timeout=d),
                "GetSuccessPattern": lambda: client.get_success_pattern(created.pattern_id, timeout=d),
                "ListSuccessPatterns": lambda: client.list_success_patterns(timeout=d),
                "RecordPatternOutcome": lambda: client.record_pattern_outcome(created.pattern_id, True, timeout=d),
            }
            outcomes = {name: await _fails_fast(name, call) for name, call in calls.items()}
            assert outcomes == dict.fromkeys(calls, "UNAVAILABLE"), outcomes

            calculated = await client.execute("calculate 2 + 2", use_cache=False, timeout=30)
            assert (
                calculated.success and struct_to_dict(calculated.result)["infrastructure"]["output"]["result"] == 4
            ), calculated
            await _wait_health(server.target, {LEARNING: NOT_SERVING, EXECUTION: SERVING, "": SERVING})
            stats = await client.get_stats(timeout=30)
            assert [c.healthy for c in stats.components if c.name == "sql"] == [False], stats.components

            await postgres.start()  # same port; crash recovery of the immediate stop

            async def recovered() -> str | None:
                try:
                    memory_id = await _store_and_recall(client, deadline=30)
                    await client.create_success_pattern(_pattern(f"drill after the crash {_words()}"), timeout=30)
                except PatternServiceError as exc:
                    if exc.code != grpc.StatusCode.UNAVAILABLE:
                        raise
                    return None
                return memory_id

            await poll(recovered, "a store, a recall and a CreateSuccessPattern to succeed again")
            await _wait_health(server.target, {LEARNING: SERVING, EXECUTION: SERVING, "": SERVING})
            assert (await client.get_success_pattern(created.pattern_id)).pattern_id == created.pattern_id
    finally:
        if server is not None:
            await server.close()
        await postgres.destroy()


async def test_database_that_never_answers_fails_fast_with_unavailable() -> None:
    """A database that accepts TCP but never answers (hung, black-holed) fails a unit of work within the
    connect timeout, not asyncpg's own 60 s: the call ends with UNAVAILABLE before a 30 s deadline."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accept, never answer

    listener = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    db = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres", connect_timeout=1.0)
    try:
        async with asyncio.timeout(30):
            with pytest.raises(UnavailableError):
                async with db.session() as session:
                    await session.execute(text("SELECT 1"))
            with pytest.raises(UnavailableError):
                await db.ping()
    finally:
        await db.dispose()
        for writer in held:
            writer.close()
        listener.close()
        await listener.wait_closed()
