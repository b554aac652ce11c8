"""PostgreSQL: JSONB columns, GIN indexes, importance range check (a no-op on SQLite).

Revision 0001 already created, portably, everything the seed's schema asks of
B-tree indexes and range checks: the single-column indexes on ``context_hash``,
``status``, ``created_at`` and ``last_matched_at``, the composite
``(pattern_type, status)`` (which also serves ``pattern_type`` alone), the
unique ``(tenant_id, name)``, ``(tenant_id, created_at)``, and the checks
``version >= 1``, ``match_count >= 0`` and ``success_rate`` in [0, 1]. This
revision adds what only PostgreSQL does (better), on PostgreSQL only:

* every JSON column becomes ``jsonb`` (``USING col::jsonb``);
* GIN indexes: ``jsonb_ops`` on the ``tags`` arrays of success patterns and
  memories (serving ``tags ?| array[...]``, ``?`` and ``@>``) and
  ``jsonb_path_ops`` (smaller, containment ``@>`` only) on the other JSON
  documents of success patterns and on memory metadata;
* ``ck_memories_importance``: ``importance`` in [0, 1].

On SQLite the JSON columns stay ``JSON`` (text) and nothing changes: tag
queries there go through the portable ``memory_tags`` table, and the store
validates importance before writing. The ORM mirrors this with
``JSON().with_variant(JSONB(), "postgresql")`` and PostgreSQL-only indexes.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Every JSON column of the schema, by table.
JSON_COLUMNS: dict[str, tuple[str, ...]] = {
    "success_patterns": (
        "execution_trace",
        "success_criteria",
        "quality_metrics",
        "performance_data",
        "tags",
        "context",
    ),
    "memories": ("tags", "metadata"),
    "pattern_definitions": ("examples", "metadata"),
}

#: GIN indexes: (name, table, column, operator class).
GIN_INDEXES: tuple[tuple[str, str, str, str], ...] = (
    ("ix_success_patterns_tags_gin", "success_patterns", "tags", "jsonb_ops"),
    ("ix_success_patterns_execution_trace_gin", "success_patterns", "execution_trace", "jsonb_path_ops"),
    ("ix_success_patterns_success_criteria_gin", "success_patterns", "success_criteria", "jsonb_path_ops"),
    ("ix_success_patterns_quality_metrics_gin", "success_patterns", "quality_metrics", "jsonb_path_ops"),
    ("ix_success_patterns_performance_data_gin", "success_patterns", "performance_data", "jsonb_path_ops"),
    ("ix_success_patterns_context_gin", "success_patterns", "context", "jsonb_path_ops"),
    ("ix_memories_tags_gin", "memories", "tags", "jsonb_ops"),
    ("ix_memories_metadata_gin", "memories", "metadata", "jsonb_path_ops"),
)

IMPORTANCE_CHECK = "ck_memories_importance"


def _is_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _alter_json(table: str, column: str, target: str) -> None:
    op.execute(f'ALTER TABLE {table} ALTER COLUMN "{column}" TYPE {target} USING "{column}"::{target}')


def upgrade() -> None:
    """On PostgreSQL: JSON columns to ``jsonb``, GIN indexes, the importance check. Nothing on SQLite."""
    if not _is_postgresql():
        return
    for table, columns in JSON_COLUMNS.items():
        for column in columns:
            _alter_json(table, column, "jsonb")
    for name, table, column, opclass in GIN_INDEXES:
        op.create_index(name, table, [column], postgresql_using="gin", postgresql_ops={column: opclass})
    op.create_check_constraint(IMPORTANCE_CHECK, "memories", "importance >= 0 AND importance <= 1")


def downgrade() -> None:
    """On PostgreSQL: drop the check and the GIN indexes, ``jsonb`` back to ``json``. Nothing on SQLite."""
    if not _is_postgresql():
        return
    op.drop_constraint(IMPORTANCE_CHECK, "memories", type_="check")
    for name, table, _column, _opclass in reversed(GIN_INDEXES):
        op.drop_index(name, table_name=table)
    for table, columns in JSON_COLUMNS.items():
        for column in columns:
            _alter_json(table, column, "json")
