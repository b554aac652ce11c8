"""Per-component health: grpc.health.v1 per service and the detail in GetStats."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pattern_service.server import EXECUTION_SERVICE, LEARNING_SERVICE, PatternServer
from tmws.pattern.client import PatternClient

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _status(target: str, service: str) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
        return int(reply.status)


async def test_components_are_reported_healthy(client: PatternClient) -> None:
    stats = await client.get_stats()
    by_name = {c.name: c for c in stats.components}
    assert {"sql", "vector_index", "sync", "embedding"} <= set(by_name)
    assert all(c.healthy for c in by_name.values())
    assert "pending=0" in by_name["sync"].detail
    assert by_name["sql"].HasField("check_time")


async def test_learning_service_not_serving_while_its_index_is_down(
    server: PatternServer, target: str, client: PatternClient
) -> None:
    await server.app.index.close()  # a real failure of a real component
    await server.monitor.check_once()
    assert await _status(target, LEARNING_SERVICE) == NOT_SERVING
    assert await _status(target, EXECUTION_SERVICE) == SERVING
    assert await _status(target, "") == SERVING
    stats = await client.get_stats()
    index = next(c for c in stats.components if c.name == "vector_index")
    assert not index.healthy and index.detail
    # Infrastructure paths keep working without the index.
    assert (await client.execute("calculate 2 + 2")).success


async def test_health_check_tool_reports_the_latest_probe_and_its_age(
    server: PatternServer, client: PatternClient
) -> None:
    """The tool reads the monitor's last probe (no probe per call), says how old it is, and sees outages."""
    healthy = await client.execute("how healthy is the system", use_cache=False)
    report = healthy.result["infrastructure"]["output"]
    assert healthy.pattern_name == "health_check" and report["healthy"]
    assert report["info"]["probed_at"] and 0.0 <= report["info"]["probe_age_seconds"] <= 60.0
    assert set(report["components"]) >= {"sql", "vector_index", "sync", "embedding"}

    await server.app.index.close()  # a real failure of a real component
    await server.monitor.check_once()  # the background refresh, run now
    down = (await client.execute("how healthy is the system", use_cache=False)).result["infrastructure"]["output"]
    assert not down["healthy"] and not down["components"]["vector_index"]["healthy"]
    assert down["info"]["probed_at"] >= report["info"]["probed_at"]
