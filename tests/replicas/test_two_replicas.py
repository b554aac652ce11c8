"""Two server processes on different ports sharing PostgreSQL and Redis (the production scale-out).

Each replica keeps its own embedded vector index; SQL is shared, so a write on
one replica reaches the other's index through the vector-change messages on
Redis (and the periodic reconciliation). Registry changes and cache
invalidations cross replicas through Redis.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from process_helpers import ServerProcess, poll, server_env
from server_helpers import create_database, drop_database, postgres_maintenance_url, postgres_unreachable

from pattern_service.store.db import aupgrade_to_head
from tmws.pattern.client import NotFound, PatternClient, new_memory
from tmws.pattern.v1 import (
    PATTERN_LAYER_GLOBAL,
    PATTERN_LAYER_TENANT,
    PATTERN_TYPE_MEMORY,
    Memory,
    PatternDefinition,
)

REDIS_URL = os.environ.get("TMWS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    maintenance, explicit = postgres_maintenance_url()
    if (reason := postgres_unreachable(maintenance)) is not None:
        if explicit:
            pytest.fail(reason)
        pytest.skip(reason)
    database = await create_database(maintenance, prefix="tmws_replicas")
    await aupgrade_to_head(database)  # once, before both replicas start
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    procs: list[ServerProcess] = []
    try:
        for name in ("a", "b"):
            env = server_env(
                tmp_path / name,
                TMWS_DATABASE_URL=database,
                TMWS_RUN_MIGRATIONS="false",
                TMWS_REDIS_URL=REDIS_URL,
                TMWS_REDIS_NAMESPACE=namespace,
                TMWS_REDIS_TIMEOUT="5",  # not the 0.5 s default: a loaded CI machine must not look like Redis down
                TMWS_SHUTDOWN_DRAIN="0",
            )
            procs.append(await ServerProcess(env).start())
        yield procs[0], procs[1]
    finally:
        for proc in procs:
            proc.proc.terminate()
            await proc.wait()
        await drop_database(maintenance, database)
        import redis.asyncio as aioredis

        client = aioredis.from_url(REDIS_URL)
        keys = [k async for k in client.scan_iter(match=f"tmws:{namespace}:*")]
        if keys:
            await client.unlink(*keys)
        await client.aclose()


async def test_register_store_and_invalidate_across_replicas(replicas: tuple[ServerProcess, ServerProcess]) -> None:
    a_proc, b_proc = replicas
    async with PatternClient.connect(a_proc.target) as a, PatternClient.connect(b_proc.target) as b:
        # Register on A, route on B.
        custom = PatternDefinition(
            name="database_optimization", pattern_type=PATTERN_TYPE_MEMORY, trigger_pattern=r"optimize\s+database"
        )
        custom.metadata.update({"operation": "recall"})
        await a.register_batch([custom])
        registered = time.monotonic()

        async def routed_on_b() -> float | None:
            try:
                decision = await b.route("optimize database queries")
            except NotFound:  # before B sees the new pattern nothing matches the query
                return None
            return time.monotonic() - registered if decision.pattern_name == "database_optimization" else None

        lag = await poll(routed_on_b, "B to route with the pattern registered on A")
        print(f"registry change seen by B after {lag * 1000:.0f} ms")

        # Store a memory on A, recall it on B (B's own index follows A's write).
        stored = await a.execute("store the failover runbook for the orders database", context={"agent": "ops"})
        memory_id = stored.result["memory"]["memory"]["memory_id"]

        async def recalled_on_b() -> list[str] | None:
            result = await b.execute("recall memories about the orders failover runbook", use_cache=False)
            ids = [m["memory_id"] for m in result.result["memory"]["memories"]]
            return ids if memory_id in ids else None

        await poll(recalled_on_b, "B to recall the memory stored on A")

        # A cached recall on B is invalidated by a write on A.
        first = await b.execute("recall memories about the orders failover runbook")
        cached = await b.execute("recall memories about the orders failover runbook")
        assert cached.cache_hit and cached.result == first.result
        second = await a.execute("store the failover drill schedule for the orders database")
        second_id = second.result["memory"]["memory"]["memory_id"]
        after = await b.execute("recall memories about the orders failover runbook")
        assert not after.cache_hit  # the generation moved on every replica at once

        async def both_on_b() -> bool | None:
            result = await b.execute("recall memories about the orders failover runbook", use_cache=False)
            ids = {m["memory_id"] for m in result.result["memory"]["memories"]}
            return True if {memory_id, second_id} <= ids else None

        await poll(both_on_b, "B to recall both memories stored on A")


async def test_a_tenant_layer_change_reaches_the_other_replica_for_that_tenant_only(
    replicas: tuple[ServerProcess, ServerProcess],
) -> None:
    a_proc, b_proc = replicas
    tenant_b = [("x-tenant-id", "tenant-b")]
    tenant_a = [("x-tenant-id", "tenant-a")]
    note = "store another note about the release train"
    async with (
        PatternClient.connect(a_proc.target, metadata=tenant_b) as b_on_first,
        PatternClient.connect(b_proc.target, metadata=tenant_b) as b_on_second,
        PatternClient.connect(b_proc.target, metadata=tenant_a) as a_on_second,
    ):
        assert (await b_on_second.get_pattern_definition("store_memory")).layer == PATTERN_LAYER_GLOBAL
        shadow = PatternDefinition(
            name="store_memory", pattern_type=PATTERN_TYPE_MEMORY, trigger_pattern=r"\bstore\s+\S", cache_ttl=0
        )
        shadow.metadata.update({"operation": "recall"})
        await b_on_first.register_batch([shadow], layer=PATTERN_LAYER_TENANT)

        async def layer_on_second(wanted: int) -> bool | None:
            return True if (await b_on_second.get_pattern_definition("store_memory")).layer == wanted else None

        await poll(lambda: layer_on_second(PATTERN_LAYER_TENANT), "the second replica to load tenant-b's layer")
        read = await b_on_second.execute(note)
        assert read.metadata["operation"] == "recall" and not read.metadata["write"]
        # Tenant A on the second replica: unchanged.
        stored = await a_on_second.execute(note)
        assert stored.metadata["write"] and stored.success
        assert (await a_on_second.get_pattern_definition("store_memory")).layer == PATTERN_LAYER_GLOBAL

        # Deleting B's pattern on the first replica uncovers the global one on the second.
        await b_on_first.delete_pattern_definition("store_memory", layer=PATTERN_LAYER_TENANT)
        await poll(lambda: layer_on_second(PATTERN_LAYER_GLOBAL), "the second replica to drop tenant-b's pattern")
        again = await b_on_second.execute(note)
        assert again.metadata["write"] and again.success


async def test_deleted_memory_never_reappears_on_another_replica(
    replicas: tuple[ServerProcess, ServerProcess],
) -> None:
    """A MemoryService update or delete on A is honoured at once by every read path of B, cached or not."""
    a_proc, b_proc = replicas
    recall = "recall memories about the payments ledger reconciliation"
    async with PatternClient.connect(a_proc.target) as a, PatternClient.connect(b_proc.target) as b:
        created = await a.create_memory(new_memory("the payments ledger is reconciled nightly", agent_id="fin"))

        async def recalled_on_b() -> bool | None:
            result = await b.execute(recall, use_cache=False)
            return True if created.memory_id in [m["memory_id"] for m in result.result["memory"]["memories"]] else None

        await poll(recalled_on_b, "B to recall the memory created on A")
        await b.execute(recall)
        cached = await b.execute(recall)
        assert cached.cache_hit and created.memory_id in [m["memory_id"] for m in cached.result["memory"]["memories"]]
        searched = await b.search_memories("payments ledger reconciliation")
        assert [r.memory.memory_id for r in searched.results] == [created.memory_id]

        change = Memory(memory_id=created.memory_id, content="the payments ledger is reconciled hourly")
        await a.update_memory(change, "content")
        updated = await b.execute(recall)  # no waiting: the generation moved on every replica at once
        assert not updated.cache_hit
        assert [m["content"] for m in updated.result["memory"]["memories"]] == [change.content]
        assert (await b.get_memory(created.memory_id)).content == change.content

        await a.delete_memory(created.memory_id)
        for result in (await b.execute(recall), await b.execute(recall, use_cache=False), await b.execute(recall)):
            assert created.memory_id not in [m["memory_id"] for m in result.result["memory"]["memories"]]
        assert not (await b.search_memories("payments ledger reconciliation", min_score=0.0)).results
        assert (await b.list_memories()).total_size == 0
        with pytest.raises(NotFound):
            await b.get_memory(created.memory_id)
