"""SQLAlchemy 2 declarative models of the learning store.

Portable between SQLite (aiosqlite) and PostgreSQL (asyncpg): JSON columns use
:data:`JSONDocument` (``JSON`` text on SQLite, ``jsonb`` on PostgreSQL), ids
are UUID text (``String(36)``) and every timestamp is a timezone-aware UTC
``datetime`` (:class:`UTCDateTime` stores naive UTC on SQLite, ``timestamptz``
on PostgreSQL). The schema itself is made
only by the Alembic migrations in ``alembic/versions``; these models mirror them,
except for what revision 0002 adds on PostgreSQL only (GIN indexes on the
``jsonb`` columns and ``ck_memories_importance``), which SQLite does not have.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

#: Auto-increment primary key type: BIGINT on PostgreSQL, INTEGER (rowid alias) on SQLite.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")

#: JSON document type: ``JSON`` (text) on SQLite, ``jsonb`` on PostgreSQL (migration 0002).
JSONDocument = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    """The current time as a timezone-aware UTC ``datetime``."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A ``DateTime(timezone=True)`` that always reads and writes aware UTC datetimes.

    Naive values given to it are taken as UTC. On SQLite (which has no time
    zone support) the value is stored as naive UTC text, which also keeps its
    lexical order equal to time order.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC (naive for SQLite) before binding."""
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of all learning-store tables."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONDocument,
        list[str]: JSONDocument,
    }


class SuccessPatternRow(Base):
    """``success_patterns``: the seed's 18 columns plus tenant_id, context and quality_score."""

    __tablename__ = "success_patterns"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", name="uq_success_patterns_tenant_name"),
        Index("ix_success_patterns_type_status", "pattern_type", "status"),
        Index("ix_success_patterns_tenant_created", "tenant_id", "created_at"),
        CheckConstraint("version >= 1", name="ck_success_patterns_version"),
        CheckConstraint("match_count >= 0", name="ck_success_patterns_match_count"),
        CheckConstraint(
            "success_rate IS NULL OR (success_rate >= 0 AND success_rate <= 1)", name="ck_success_patterns_success_rate"
        ),
    )

    pattern_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    pattern_type: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    parent_pattern_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("success_patterns.pattern_id", ondelete="SET NULL"), nullable=True
    )
    context_hash: Mapped[str] = mapped_column(String(64), index=True)
    execution_trace: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    success_criteria: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    quality_metrics: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    performance_data: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    tags: Mapped[list[str]] = mapped_column(JSONDocument)
    status: Mapped[str] = mapped_column(String(20), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_matched_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True, nullable=True)
    match_count: Mapped[int] = mapped_column(Integer, default=0)
    success_rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    context: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    quality_score: Mapped[float] = mapped_column(Float, default=0.0)


class MemoryRow(Base):
    """``memories``: agent memories (their tags are also in ``memory_tags``)."""

    __tablename__ = "memories"
    __table_args__ = (
        Index("ix_memories_tenant_created", "tenant_id", "created_at"),
        Index("ix_memories_tenant_agent", "tenant_id", "agent_id"),
        Index("ix_memories_tenant_importance", "tenant_id", "importance"),
        Index("ix_memories_expire_at", "expire_at"),
    )

    memory_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    agent_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    content: Mapped[str] = mapped_column(Text)
    memory_type: Mapped[str] = mapped_column(String(100))
    tags: Mapped[list[str]] = mapped_column(JSONDocument)
    importance: Mapped[float] = mapped_column(Float)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: When the memory expires (revision 0005); ``None`` = never.
    expire_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class MemoryTagRow(Base):
    """``memory_tags``: one row per (memory, tag), for portable tag queries."""

    __tablename__ = "memory_tags"
    __table_args__ = (Index("ix_memory_tags_tenant_tag", "tenant_id", "tag"),)

    memory_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("memories.memory_id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(255), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))


#: ``tenant_id`` of the global registry layer (no tenant id is empty: ``TENANT_PATTERN``).
GLOBAL_LAYER = ""


class PatternDefinitionRow(Base):
    """``pattern_definitions``: registered trigger patterns, by registry layer (revision 0005).

    ``tenant_id`` is :data:`GLOBAL_LAYER` for the global layer every tenant
    sees, else the tenant whose own layer holds the row.
    """

    __tablename__ = "pattern_definitions"

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True, server_default=GLOBAL_LAYER)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    pattern_type: Mapped[str] = mapped_column(String(20))
    trigger_pattern: Mapped[str | None] = mapped_column(Text, nullable=True)
    cost_tokens: Mapped[int] = mapped_column(Integer)
    priority: Mapped[int] = mapped_column(Integer)
    cache_ttl: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text)
    examples: Mapped[list[str]] = mapped_column(JSONDocument)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONDocument)
    create_time: Mapped[datetime] = mapped_column(UTCDateTime())
    update_time: Mapped[datetime] = mapped_column(UTCDateTime())
    similarity_threshold: Mapped[float | None] = mapped_column(Float, nullable=True)


class RegistryStateRow(Base):
    """``registry_state``: the single row (id 1) holding the registry version and the seeded flag."""

    __tablename__ = "registry_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    seeded: Mapped[bool] = mapped_column(Boolean)
    #: Platt scaling per match source (revision 0003); ``None`` = uncalibrated.
    calibration: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, nullable=True)


class RegistryLayerRow(Base):
    """``registry_layers``: one row per tenant with an own registry layer (revision 0005).

    ``version`` counts the changes of the tenant's layer; ``calibration`` is
    the tenant's fitted calibration (``None`` = the global one) and
    ``thresholds`` its fitted similarity thresholds of global patterns, by name.
    """

    __tablename__ = "registry_layers"

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    calibration: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, nullable=True)
    thresholds: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, nullable=True)


class VectorOutboxRow(Base):
    """``vector_outbox``: pending vector changes, written in the same transaction as the SQL change."""

    __tablename__ = "vector_outbox"
    __table_args__ = (
        Index("ix_vector_outbox_collection_point", "collection", "point_id"),
        Index("ix_vector_outbox_created", "created_at"),
        CheckConstraint("op IN ('upsert', 'delete')", name="ck_vector_outbox_op"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    collection: Mapped[str] = mapped_column(String(64))
    point_id: Mapped[str] = mapped_column(String(36))
    op: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


__all__ = [
    "GLOBAL_LAYER",
    "Base",
    "JSONDocument",
    "MemoryRow",
    "MemoryTagRow",
    "PatternDefinitionRow",
    "RegistryLayerRow",
    "RegistryStateRow",
    "SuccessPatternRow",
    "UTCDateTime",
    "VectorOutboxRow",
    "utcnow",
]
