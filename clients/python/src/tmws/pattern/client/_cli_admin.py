"""``tmws-pattern stats`` and ``tmws-pattern health``.

``health`` asks ``grpc.health.v1`` for the overall status and each service's,
and ``GetStats`` for each backend component (``sql``, ``vector_index``,
``sync``, ``embedding``, ``redis``), prints them as JSON and exits 0 when
everything serves and every component is healthy, 3 when the server answers
but something does not serve or a component is down, and 1 when the server
cannot be reached (for scripts and container health checks).
"""

from __future__ import annotations

import argparse
from typing import Any

import grpc

from tmws.pattern.client._cli_common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_UNHEALTHY,
    Io,
    message_to_dict,
    print_json,
    require_cli_extra,
)
from tmws.pattern.client._client import PatternClient
from tmws.pattern.client._convert import DEFAULT, TimeoutLike

SERVICES = ("", "tmws.pattern.v1.PatternExecutionService", "tmws.pattern.v1.PatternLearningService")


def add_parser(commands: Any) -> None:
    """Add ``stats`` and ``health`` to the subcommands."""
    stats = commands.add_parser("stats", help="show server statistics", description="Show statistics (GetStats).")
    stats.add_argument(
        "--process", action="store_true", help="the server process's totals over every tenant (admin scope)"
    )
    stats.set_defaults(handler=stats_command)
    health = commands.add_parser(
        "health",
        help="check service and component health (exit code)",
        description=(
            "Check grpc.health.v1 (overall and per service) and each backend component. "
            "Exit 0: all serving and healthy; 3: something is not; 1: the server cannot be reached."
        ),
    )
    health.set_defaults(handler=health_command)


async def stats_command(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    """Print ``GetStats``."""
    stats = await client.get_stats(process_totals=args.process, timeout=timeout)
    print_json(message_to_dict(stats), io.out)
    return EXIT_OK


async def health_command(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    """Print the health report; the exit code says whether all is well."""
    health_pb2 = require_cli_extra("grpc_health.v1.health_pb2")
    health_grpc = require_cli_extra("grpc_health.v1.health_pb2_grpc")
    stub = health_grpc.HealthStub(client.channel)
    deadline = 10.0 if timeout is DEFAULT else timeout
    services: dict[str, str] = {}
    for service in SERVICES:
        try:
            response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=deadline)
            services[service or "(overall)"] = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.NOT_FOUND:
                io.err.write(f"error: {exc.code().name}: {exc.details()}\n")
                return EXIT_ERROR
            services[service or "(overall)"] = "SERVICE_UNKNOWN"
    stats = await client.get_stats(timeout=timeout)
    components = {c.name: {"healthy": c.healthy, "detail": c.detail} for c in stats.components}
    healthy = all(s == "SERVING" for s in services.values()) and all(c["healthy"] for c in components.values())
    print_json({"healthy": healthy, "services": services, "components": components}, io.out)
    return EXIT_OK if healthy else EXIT_UNHEALTHY
