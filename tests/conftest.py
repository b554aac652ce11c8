"""Root fixtures: a real server on port 0 over the embedded backends, in the test's event loop.

Also the session's migrated PostgreSQL template database, which the SQL store
and engine fixtures copy per test (see ``server_helpers`` for the environment
variables).
"""

from __future__ import annotations

import functools
import pathlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest
from server_helpers import (
    create_migrated_template,
    drop_all_server_databases,
    drop_database,
    drop_server_database,
    make_settings,
    postgres_maintenance_url,
    postgres_unreachable,
    run_blocking,
    start_server,
)

if TYPE_CHECKING:
    from pattern_service.server import PatternServer


@pytest.fixture
async def server(tmp_path: pathlib.Path) -> AsyncIterator[PatternServer]:
    """A started server with fresh embedded storage; stopped after the test."""
    settings = make_settings(tmp_path / "data")
    srv = await start_server(settings)
    yield srv
    await srv.stop(0)
    await drop_server_database(settings)


@pytest.fixture
def target(server: PatternServer) -> str:
    """``host:port`` of the started server."""
    return f"127.0.0.1:{server.port}"


@pytest.fixture(scope="session")
def pg_template_url() -> Iterator[tuple[str, str]]:
    """``(maintenance URL, template URL)``: a PostgreSQL database migrated to head, copied per test.

    Skips when the default server is unreachable; fails when ``TMWS_TEST_POSTGRES_URL``
    names one that is.
    """
    maintenance_url, explicit = postgres_maintenance_url()
    reason = postgres_unreachable(maintenance_url)
    if reason is not None:
        if explicit:
            pytest.fail(f"TMWS_TEST_POSTGRES_URL is set but {reason}")
        pytest.skip(reason)
    template = run_blocking(functools.partial(create_migrated_template, maintenance_url))
    yield maintenance_url, template
    run_blocking(functools.partial(drop_database, maintenance_url, template))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the PostgreSQL databases of servers that tests started without the ``server`` fixture."""
    drop_all_server_databases()
