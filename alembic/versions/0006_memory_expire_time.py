"""Memory expiry: ``memories.expire_at`` (nullable timestamp) and its index.

``MemoryService`` (``protos/tmws/pattern/v1/memory_service.proto``) lets a
memory carry an ``expire_time`` (AIP-214). ``NULL`` means the memory never
expires. Reads skip memories whose ``expire_at`` has passed; a background
sweep deletes them (and their vectors, through the outbox), reading
``ix_memories_expire_at``. ``updated_at`` already exists (revision 0001).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 07:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``memories.expire_at`` and ``ix_memories_expire_at``."""
    with op.batch_alter_table("memories") as batch:
        batch.add_column(sa.Column("expire_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_memories_expire_at", "memories", ["expire_at"])


def downgrade() -> None:
    """Drop the index and the column."""
    op.drop_index("ix_memories_expire_at", table_name="memories")
    with op.batch_alter_table("memories") as batch:
        batch.drop_column("expire_at")
