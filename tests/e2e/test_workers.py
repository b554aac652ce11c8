"""Scale-out on one host: servers sharing a port with SO_REUSEPORT, and the workers' preconditions."""

from __future__ import annotations

import pathlib
import socket

import pytest
from server_helpers import make_settings

from pattern_service.errors import FailedPreconditionError
from pattern_service.workers import check_workers
from tmws.pattern.client import PatternClient


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_two_servers_share_one_port_and_both_answer(tmp_path: pathlib.Path) -> None:
    from pattern_service.app import Application
    from pattern_service.metrics import Metrics
    from pattern_service.server import PatternServer

    address = f"127.0.0.1:{_free_port()}"
    servers = []
    for name in ("a", "b"):
        settings = make_settings(tmp_path / name, grpc_address=address, embedder="hashing")
        server = PatternServer(settings, await Application.create(settings, Metrics()), reuse_port=True)
        await server.start()
        servers.append(server)
    try:
        for _ in range(200):  # new connections: the kernel spreads them over both listeners
            async with PatternClient.connect(address) as client:
                await client.execute("calculate 1 + 1", use_cache=False)
            counts = [s.app.engine.get_stats().engine.total_executions for s in servers]
            if all(counts):
                break
        assert all(counts), counts
    finally:
        for server in servers:
            await server.stop(0)


def test_workers_need_a_shared_vector_index_and_a_fixed_port(tmp_path: pathlib.Path) -> None:
    settings = make_settings(tmp_path, grpc_address="127.0.0.1:50999")
    check_workers(settings, 1)
    with pytest.raises(FailedPreconditionError) as info:
        check_workers(settings, 2)
    assert info.value.reason == "WORKERS_NEED_SHARED_BACKENDS"
    with pytest.raises(FailedPreconditionError) as info:
        check_workers(settings.model_copy(update={"qdrant_url": "http://qdrant:6333", "grpc_address": "0.0.0.0:0"}), 2)
    assert info.value.reason == "WORKERS_NEED_FIXED_PORT"
