"""An empty SQL database beside a populated vector index: the start is refused, nothing is deleted.

Start-up reconciliation deletes every point whose row is missing, so a lost or
replaced database used to cost the whole index at the next start (logged at
INFO). Now such a start fails with one line naming the database, the index and
the points; ``reindex`` or ``--accept-empty-database`` says the emptiness is right.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import sys

import pytest
from process_helpers import REPO, poll, server_env, settings_of
from server_helpers import drop_server_database, make_settings

from pattern_service.app import Application, vector_index
from pattern_service.config import Settings
from pattern_service.domain import SuccessPatternInput
from pattern_service.errors import FailedPreconditionError
from pattern_service.metrics import Metrics
from pattern_service.startup import EXIT_CONFIG, describe
from pattern_service.store.embeddings import create_embedder
from pattern_service.store.emptied import shown_url
from pattern_service.store.learning_binding import PATTERN_BINDING
from pattern_service.store.memory_binding import MEMORY_BINDING
from pattern_service.store.vector_bindings import VECTOR_BINDINGS

POINTS = 60


async def _populate(settings: Settings, count: int) -> None:
    app = await Application.create(settings, Metrics())
    try:
        for i in range(count):
            data = SuccessPatternInput(pattern_type="ops", name=f"pattern {i}", description=f"tune service number {i}")
            await app.learning_store.create("default", data)

        async def indexed() -> int | None:
            n = await app.index.count(PATTERN_BINDING.collection)
            return n if n == count else None

        await poll(indexed, f"{count} points in the index")
    finally:
        await app.close()


async def _points(settings: Settings) -> int:
    index = vector_index(settings)
    try:
        embedder = create_embedder(settings.embedder)
        for spec in (b.spec(embedder.dimension, embedder.model_id) for b in VECTOR_BINDINGS):
            await index.ensure_collection(spec)
        return await index.count(PATTERN_BINDING.collection) + await index.count(MEMORY_BINDING.collection)
    finally:
        await index.close()


def _remove_sqlite(settings: Settings) -> None:
    path = pathlib.Path(shown_url(settings.resolved_database_url))
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


async def test_a_fresh_database_beside_a_populated_index_is_refused(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    # (no Redis: it plays no part here, and the test opens and closes the stores three times)
    settings = make_settings(tmp_path / "data", embedder="hashing", redis_url="")
    fresh = make_settings(tmp_path / "fresh", embedder="hashing", redis_url="")  # a new database (PostgreSQL pass)
    try:
        await _populate(settings, POINTS)
        if settings.database_url:
            empty = settings.model_copy(update={"database_url": fresh.database_url})
        else:
            _remove_sqlite(settings)  # the SQLite file is gone: the next start creates an empty one
            empty = settings

        with pytest.raises(FailedPreconditionError) as refused:
            await Application.create(empty, Metrics())
        assert refused.value.reason == "EMPTY_DATABASE_BESIDE_INDEX"
        line = str(describe(refused.value, empty))
        assert shown_url(empty.resolved_database_url) in line and empty.vector_location in line, line
        assert f"holds {POINTS} points" in line and "reindex" in line, line
        assert await _points(empty) == POINTS  # the refused start deleted nothing

        caplog.set_level(logging.WARNING, logger="pattern_service.store.emptied")
        accepted = await Application.create(empty.model_copy(update={"accept_empty_database": True}), Metrics())
        await accepted.close()
        assert await _points(empty) == 0  # told so, reconciliation made the index match the empty database
        assert any(f"holds {POINTS} points" in r.getMessage() for r in caplog.records), caplog.text
    finally:
        await drop_server_database(settings)
        await drop_server_database(fresh)


async def test_a_database_with_rows_starts_and_an_empty_index_is_not_refused(tmp_path: pathlib.Path) -> None:
    settings = make_settings(tmp_path / "data", embedder="hashing", redis_url="")
    try:
        await _populate(settings, 3)
        again = await Application.create(settings, Metrics())  # restart on the same data: fine
        await again.close()
        assert await _points(settings) == 3
    finally:
        await drop_server_database(settings)


async def _run(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pattern_service",
        *args,
        env=env,
        cwd=str(REPO),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 180)
    except TimeoutError:  # e.g. a server that started instead of refusing: leave nothing running
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, "\n".join(x for x in out.decode().splitlines() if not x.startswith(("I1", "W1", "E1")))


async def test_the_process_exits_with_one_line_and_reindex_accepts(tmp_path: pathlib.Path) -> None:
    env = server_env(tmp_path / "data")
    settings = settings_of(env)
    await _populate(settings, 5)
    _remove_sqlite(settings)

    code, output = await _run(env, "serve")
    assert code == EXIT_CONFIG, output
    errors = [line for line in output.splitlines() if "CRITICAL" in line]
    assert len(errors) == 1 and "Traceback" not in output, output
    assert shown_url(settings.resolved_database_url) in errors[0] and settings.vector_location in errors[0]
    assert "holds 5 points" in errors[0] and "--accept-empty-database" in errors[0]
    assert await _points(settings) == 5

    code, output = await _run(env, "reindex")
    assert code == 0, output
    assert await _points(settings) == 0
