"""Refuse to start on an empty SQL database beside a populated vector index.

SQL is the source of truth and start-up reconciliation makes the index match it:
a point whose row is missing is deleted. So an empty database beside an index
full of points (a deleted or replaced SQLite file, ``TMWS_DATABASE_URL`` pointing
at a new database, a restored index without its database) would quietly delete
every vector at the next start. :func:`check_not_emptied` stops that start.

**Fresh** (the state that is refused next to a non-empty index) means: after the
migrations of this start, the database holds no memory, no success pattern and no
pending vector-outbox entry, in any tenant. A database that was just created
(missing or empty SQLite file, a new PostgreSQL database) is fresh; so is one
created earlier by ``migrate`` that never held data. A database whose rows were
all deleted through the API is fresh only once the outbox has applied every
delete to the index too, and then the index is empty and nothing is refused
(unless points leaked outside the outbox; the same override applies).

Override, once the emptiness is known to be right:
``python -m pattern_service reindex`` (make the index match the database, then
exit) or ``serve --accept-empty-database`` (``TMWS_ACCEPT_EMPTY_DATABASE=true``).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from pattern_service.errors import FailedPreconditionError
from pattern_service.store.db import Database
from pattern_service.store.orm import VectorOutboxRow
from pattern_service.store.vector_bindings import VECTOR_BINDINGS
from pattern_service.store.vectors.base import VectorIndex

log = logging.getLogger(__name__)

REASON = "EMPTY_DATABASE_BESIDE_INDEX"


def shown_url(url: str) -> str:
    """A database URL for a message: the password hidden, a SQLite file as its path."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return str(parsed.database or ":memory:")
    return parsed.render_as_string(hide_password=True)


async def sql_rows(db: Database) -> int:
    """Source rows of every vector binding (memories, success patterns) + pending outbox entries, all tenants.

    Raises:
        UnavailableError: The database cannot be reached.
    """
    async with db.session() as session:
        total = 0
        rows: list[Any] = [b.row_type for b in VECTOR_BINDINGS]
        for row in (*rows, VectorOutboxRow):
            counted: Any = select(func.count()).select_from(row)
            total += int(await session.scalar(counted) or 0)
        return total


async def index_points(index: VectorIndex) -> dict[str, int]:
    """Points per bound collection of the index (memories, success patterns)."""
    return {b.collection: await index.count(b.collection) for b in VECTOR_BINDINGS}


async def check_not_emptied(
    db: Database, index: VectorIndex, *, database: str, index_location: str, accept: bool = False
) -> None:
    """Refuse a fresh database (see the module docstring) beside an index that holds points.

    Args:
        db: The SQL database, migrated.
        index: The vector index, its collections ensured.
        database: The database URL (shown with its password hidden).
        index_location: Where the index is (directory or Qdrant URL), for the message.
        accept: The operator said the empty database is right (``reindex``,
            ``--accept-empty-database``): log what reconciliation will delete instead.

    Raises:
        FailedPreconditionError: Reason ``EMPTY_DATABASE_BESIDE_INDEX``, metadata
            ``database``, ``vector_index``, ``points``.
        UnavailableError: The database cannot be reached.
    """
    if await sql_rows(db):
        return
    points = await index_points(index)
    total = sum(points.values())
    if total == 0:
        return
    counts = ", ".join(f"{n} in {name}" for name, n in points.items())
    where = f"the SQL database {shown_url(database)} holds no memories, success patterns or outbox entries"
    if accept:
        log.warning(
            "%s; the vector index at %s holds %d points (%s): deleting them", where, index_location, total, counts
        )
        return
    raise FailedPreconditionError(
        f"{where}, but the vector index at {index_location} holds {total} points ({counts}); "
        "starting would delete every one of them",
        reason=REASON,
        metadata={"database": shown_url(database), "vector_index": index_location, "points": str(total)},
    )
