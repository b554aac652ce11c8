"""Tenant registry layers: every tenant may have its own pattern definitions over the global ones.

* ``pattern_definitions.tenant_id`` (``''`` = the global layer, else the
  tenant whose layer holds the row); the primary key becomes
  ``(tenant_id, name)``, so a tenant's pattern may have the name of a global
  one (it shadows it for that tenant). Existing rows become the global layer.
* ``registry_layers``: one row per tenant with a layer: the layer's version
  (bumped in the same transaction as each change of the layer), the tenant's
  fitted calibration and its fitted thresholds of global patterns (JSON;
  ``jsonb`` on PostgreSQL). The global layer keeps ``registry_state``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the layer column to the primary key and create ``registry_layers``."""
    json_type = JSONB() if op.get_bind().dialect.name == "postgresql" else sa.JSON()
    with op.batch_alter_table("pattern_definitions", recreate="always") as batch:
        batch.add_column(sa.Column("tenant_id", sa.String(128), nullable=False, server_default=""))
        batch.drop_constraint("pk_pattern_definitions", type_="primary")
        batch.create_primary_key("pk_pattern_definitions", ["tenant_id", "name"])
    op.create_table(
        "registry_layers",
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("calibration", json_type, nullable=True),
        sa.Column("thresholds", json_type, nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_registry_layers"),
    )


def downgrade() -> None:
    """Drop every tenant layer (their definitions too) and the layer column."""
    op.drop_table("registry_layers")
    op.execute(sa.text("DELETE FROM pattern_definitions WHERE tenant_id <> ''"))
    with op.batch_alter_table("pattern_definitions", recreate="always") as batch:
        batch.drop_constraint("pk_pattern_definitions", type_="primary")
        batch.create_primary_key("pk_pattern_definitions", ["name"])
        batch.drop_column("tenant_id")
