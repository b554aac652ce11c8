"""End-to-end fixtures: the shipped client connected to a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tmws.pattern.client import PatternClient


@pytest.fixture
async def client(target: str) -> AsyncIterator[PatternClient]:
    """The shipped async client on the test server (tenant ``default``)."""
    async with PatternClient.connect(target, default_timeout=30.0) as c:
        yield c


@pytest.fixture
async def other_tenant(target: str) -> AsyncIterator[PatternClient]:
    """A client of another tenant (``x-tenant-id: acme``)."""
    async with PatternClient.connect(target, default_timeout=30.0, metadata=[("x-tenant-id", "acme")]) as c:
        yield c
