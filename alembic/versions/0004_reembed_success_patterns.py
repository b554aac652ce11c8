"""Re-embed every success pattern: the text a pattern is matched by now includes its intent and steps.

``pattern_embedding_text`` (``pattern_service/store/outbox.py``) changed from
the seed's four fields (type, name, description, tags) to what describes the
pattern: name, description, the intent and environment of its context, tags,
type and execution steps. Stored vectors were computed from the old text, so
this revision queues an ``upsert`` for every success pattern in the
transactional outbox; the server's vector sync re-embeds them after start (and
rewrites only the payload of a point whose vector did not change). Nothing has
to be run by hand. Downgrade queues nothing: the vectors are rewritten with
whatever text the running code uses.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 00:00:01
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000


def upgrade() -> None:
    """Queue an outbox ``upsert`` of every success pattern (``pattern_embeddings``)."""
    bind = op.get_bind()
    ids = [row[0] for row in bind.execute(sa.text("SELECT pattern_id FROM success_patterns ORDER BY pattern_id"))]
    if not ids:
        return
    now = datetime.now(UTC)
    if bind.dialect.name == "sqlite":  # stored as naive UTC text (see UTCDateTime in the ORM)
        now = now.replace(tzinfo=None)
    outbox = sa.table(
        "vector_outbox",
        sa.column("collection", sa.String),
        sa.column("point_id", sa.String),
        sa.column("op", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("attempts", sa.Integer),
    )
    for i in range(0, len(ids), _BATCH):
        op.bulk_insert(
            outbox,
            [
                {"collection": "pattern_embeddings", "point_id": pid, "op": "upsert", "created_at": now, "attempts": 0}
                for pid in ids[i : i + _BATCH]
            ],
        )


def downgrade() -> None:
    """Nothing to undo (see the module docstring)."""
