"""Security fixtures: a server that requires the test API keys, and clients per key."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sec_helpers import bearer, keys_json
from server_helpers import make_settings, start_server

from pattern_service.server import PatternServer
from tmws.pattern.client import PatternClient


@pytest.fixture
async def secure_server(tmp_path: pathlib.Path) -> AsyncIterator[PatternServer]:
    """A started server that requires the API keys of :data:`KEYS`."""
    srv = await start_server(make_settings(tmp_path / "data", api_keys=keys_json()))
    yield srv
    await srv.stop(0)


@pytest.fixture
def connect(secure_server: PatternServer) -> Callable[..., PatternClient]:
    """``connect(key_name | None, **kwargs)``: a client of the secure server (close it: ``async with``)."""

    def make(name: str | None, **kwargs: Any) -> PatternClient:
        metadata = bearer(name) if name else []
        metadata += kwargs.pop("metadata", [])
        return PatternClient.connect(
            f"127.0.0.1:{secure_server.port}", default_timeout=30.0, metadata=metadata, **kwargs
        )

    return make
