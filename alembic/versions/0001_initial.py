"""Initial schema: success patterns, memories, pattern definitions, registry state, vector outbox.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create every table and index of the learning store."""
    op.create_table(
        "success_patterns",
        sa.Column("pattern_id", sa.String(36), nullable=False),
        sa.Column("pattern_type", sa.String(100), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("parent_pattern_id", sa.String(36), nullable=True),
        sa.Column("context_hash", sa.String(64), nullable=False),
        sa.Column("execution_trace", sa.JSON(), nullable=False),
        sa.Column("success_criteria", sa.JSON(), nullable=False),
        sa.Column("quality_metrics", sa.JSON(), nullable=False),
        sa.Column("performance_data", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("last_matched_at", nullable=True),
        sa.Column("match_count", sa.Integer(), nullable=False),
        sa.Column("success_rate", sa.Float(), nullable=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("quality_score", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("pattern_id", name="pk_success_patterns"),
        sa.ForeignKeyConstraint(
            ["parent_pattern_id"],
            ["success_patterns.pattern_id"],
            name="fk_success_patterns_parent",
            ondelete="SET NULL",
        ),
        sa.UniqueConstraint("tenant_id", "name", name="uq_success_patterns_tenant_name"),
        sa.CheckConstraint("version >= 1", name="ck_success_patterns_version"),
        sa.CheckConstraint("match_count >= 0", name="ck_success_patterns_match_count"),
        sa.CheckConstraint(
            "success_rate IS NULL OR (success_rate >= 0 AND success_rate <= 1)",
            name="ck_success_patterns_success_rate",
        ),
    )
    op.create_index("ix_success_patterns_context_hash", "success_patterns", ["context_hash"])
    op.create_index("ix_success_patterns_status", "success_patterns", ["status"])
    op.create_index("ix_success_patterns_created_at", "success_patterns", ["created_at"])
    op.create_index("ix_success_patterns_last_matched_at", "success_patterns", ["last_matched_at"])
    op.create_index("ix_success_patterns_type_status", "success_patterns", ["pattern_type", "status"])
    op.create_index("ix_success_patterns_tenant_created", "success_patterns", ["tenant_id", "created_at"])

    op.create_table(
        "memories",
        sa.Column("memory_id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("agent_id", sa.String(128), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("memory_type", sa.String(100), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("importance", sa.Float(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("memory_id", name="pk_memories"),
    )
    op.create_index("ix_memories_tenant_created", "memories", ["tenant_id", "created_at"])
    op.create_index("ix_memories_tenant_agent", "memories", ["tenant_id", "agent_id"])
    op.create_index("ix_memories_tenant_importance", "memories", ["tenant_id", "importance"])

    op.create_table(
        "memory_tags",
        sa.Column("memory_id", sa.String(36), nullable=False),
        sa.Column("tag", sa.String(255), nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("memory_id", "tag", name="pk_memory_tags"),
        sa.ForeignKeyConstraint(
            ["memory_id"], ["memories.memory_id"], name="fk_memory_tags_memory", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_memory_tags_tenant_tag", "memory_tags", ["tenant_id", "tag"])

    op.create_table(
        "pattern_definitions",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("pattern_type", sa.String(20), nullable=False),
        sa.Column("trigger_pattern", sa.Text(), nullable=True),
        sa.Column("cost_tokens", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("cache_ttl", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("examples", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        _ts("create_time"),
        _ts("update_time"),
        sa.PrimaryKeyConstraint("name", name="pk_pattern_definitions"),
    )

    registry_state = op.create_table(
        "registry_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("seeded", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_state"),
    )
    op.bulk_insert(registry_state, [{"id": 1, "version": 0, "seeded": False}])

    op.create_table(
        "vector_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("collection", sa.String(64), nullable=False),
        sa.Column("point_id", sa.String(36), nullable=False),
        sa.Column("op", sa.String(10), nullable=False),
        _ts("created_at"),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_vector_outbox"),
        sa.CheckConstraint("op IN ('upsert', 'delete')", name="ck_vector_outbox_op"),
    )
    op.create_index("ix_vector_outbox_collection_point", "vector_outbox", ["collection", "point_id"])
    op.create_index("ix_vector_outbox_created", "vector_outbox", ["created_at"])


def downgrade() -> None:
    """Drop every table of the learning store."""
    op.drop_index("ix_vector_outbox_created", table_name="vector_outbox")
    op.drop_index("ix_vector_outbox_collection_point", table_name="vector_outbox")
    op.drop_table("vector_outbox")
    op.drop_table("registry_state")
    op.drop_table("pattern_definitions")
    op.drop_index("ix_memory_tags_tenant_tag", table_name="memory_tags")
    op.drop_table("memory_tags")
    op.drop_index("ix_memories_tenant_importance", table_name="memories")
    op.drop_index("ix_memories_tenant_agent", table_name="memories")
    op.drop_index("ix_memories_tenant_created", table_name="memories")
    op.drop_table("memories")
    op.drop_index("ix_success_patterns_tenant_created", table_name="success_patterns")
    op.drop_index("ix_success_patterns_type_status", table_name="success_patterns")
    op.drop_index("ix_success_patterns_last_matched_at", table_name="success_patterns")
    op.drop_index("ix_success_patterns_created_at", table_name="success_patterns")
    op.drop_index("ix_success_patterns_status", table_name="success_patterns")
    op.drop_index("ix_success_patterns_context_hash", table_name="success_patterns")
    op.drop_table("success_patterns")
