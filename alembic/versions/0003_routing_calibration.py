"""Routing judgment: per-pattern similarity thresholds and the registry's confidence calibration.

* ``pattern_definitions.similarity_threshold`` (nullable float): the minimum
  hybrid similarity at which the pattern is chosen by meaning; ``NULL`` means the
  server's global threshold. ``FitRouting`` sets it.
* ``registry_state.calibration`` (nullable JSON; ``jsonb`` on PostgreSQL): the
  Platt scaling per match source (``{"trigger": {"slope": …, "intercept": …,
  "sample_count": …}, …}``); ``NULL`` means uncalibrated (confidence = raw score).

Both columns are versioned with the registry: they change only in the same
transaction as a registry version bump.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the two nullable columns."""
    json_type = JSONB() if op.get_bind().dialect.name == "postgresql" else sa.JSON()
    with op.batch_alter_table("pattern_definitions") as batch:
        batch.add_column(sa.Column("similarity_threshold", sa.Float(), nullable=True))
    with op.batch_alter_table("registry_state") as batch:
        batch.add_column(sa.Column("calibration", json_type, nullable=True))


def downgrade() -> None:
    """Drop the two columns."""
    with op.batch_alter_table("registry_state") as batch:
        batch.drop_column("calibration")
    with op.batch_alter_table("pattern_definitions") as batch:
        batch.drop_column("similarity_threshold")
