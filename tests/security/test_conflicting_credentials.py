"""Conflicting credentials are refused, never resolved by "the first header wins".

A call may carry one credential (``authorization: Bearer <key>`` or ``x-api-key``) and
at most one ``x-tenant-id``. Two ``authorization`` (or two ``x-api-key``) headers, both
headers naming different keys, or two ``x-tenant-id`` values are refused whatever
their order, so a proxy that appends a header cannot change whose call it is.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import pytest
from sec_helpers import key_of
from server_helpers import make_settings, start_server

from tmws.pattern.client import InvalidArgument, PatternClient, Unauthenticated

Connect = Callable[..., PatternClient]


@pytest.mark.parametrize(
    "metadata",
    [
        [("x-api-key", key_of("a-exec")), ("authorization", f"Bearer {key_of('b-all')}")],
        [("authorization", f"Bearer {key_of('b-all')}"), ("x-api-key", key_of("a-exec"))],
        [("authorization", f"Bearer {key_of('a-exec')}"), ("authorization", f"Bearer {key_of('b-all')}")],
        [("authorization", f"Bearer {key_of('a-exec')}"), ("authorization", f"Bearer {key_of('a-exec')}")],
        [("x-api-key", key_of("a-exec")), ("x-api-key", key_of("b-all"))],
    ],
    ids=["api-key-then-bearer", "bearer-then-api-key", "two-bearers", "same-bearer-twice", "two-api-keys"],
)
async def test_two_credentials_are_unauthenticated(connect: Connect, metadata: list[tuple[str, str]]) -> None:
    async with connect(None, metadata=metadata) as client:
        with pytest.raises(Unauthenticated) as refused:
            await client.execute("calculate 1 + 1")
    assert refused.value.reason == "CONFLICTING_CREDENTIALS"


async def test_the_same_key_in_both_headers_is_one_credential(connect: Connect) -> None:
    metadata = [("x-api-key", key_of("a-exec")), ("authorization", f"Bearer {key_of('a-exec')}")]
    async with connect(None, metadata=metadata) as client:
        assert (await client.execute("calculate 6 * 7")).success


@pytest.mark.parametrize(
    "tenants", [("tenant-a", "tenant-b"), ("tenant-b", "tenant-a"), ("tenant-a", "tenant-a")], ids=str
)
async def test_two_tenant_headers_are_invalid(connect: Connect, tenants: tuple[str, str]) -> None:
    metadata = [("x-tenant-id", t) for t in tenants]
    async with connect("a-exec", metadata=metadata) as client:
        with pytest.raises(InvalidArgument) as refused:
            await client.execute("calculate 1 + 1")
    assert [v.field for v in refused.value.field_violations] == ["metadata.x-tenant-id"]


async def test_two_tenant_headers_are_invalid_on_an_open_server(tmp_path: pathlib.Path) -> None:
    server = await start_server(make_settings(tmp_path / "data"))
    try:
        metadata = [("x-tenant-id", "tenant-a"), ("x-tenant-id", "tenant-b")]
        async with PatternClient.connect(f"127.0.0.1:{server.port}", metadata=metadata) as client:
            with pytest.raises(InvalidArgument) as refused:
                await client.execute("calculate 1 + 1")
        assert [v.field for v in refused.value.field_violations] == ["metadata.x-tenant-id"]
    finally:
        await server.stop(0)
