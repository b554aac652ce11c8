"""Domain types of the memory store the memory patterns read and write (``recall``, ``store``, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# ---------------------------------------------------------------------------
# Memories
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewMemory:
    """A memory to store.

    Attributes:
        tenant_id: Owner tenant.
        content: The text remembered (1-20,000 characters); it is what recall embeds.
        agent_id: Agent that stored it (e.g. ``artemis``), or ``None``.
        memory_type: Free category, default ``general``.
        tags: Tags (lower-cased, unique).
        importance: In [0, 1].
        metadata: JSON-compatible extra data (e.g. a stored plan).
        expire_at: When it expires (UTC), or ``None`` for never.
    """

    tenant_id: str
    content: str
    agent_id: str | None = None
    memory_type: str = "general"
    tags: tuple[str, ...] = ()
    importance: float = 0.5
    metadata: Mapping[str, Any] = field(default_factory=dict)
    expire_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Memory:
    """A stored memory.

    Attributes:
        memory_id: UUID text.
        score: Cosine similarity to the recall query in [0, 1] (``None`` for
            non-semantic reads).
        (other fields as :class:`NewMemory`)
        created_at: Creation time (UTC).
        updated_at: Last update time (UTC); ``None`` when not loaded.
        expire_at: Expiry time (UTC), or ``None`` for never.
    """

    memory_id: str
    tenant_id: str
    content: str
    agent_id: str | None
    memory_type: str
    tags: tuple[str, ...]
    importance: float
    metadata: Mapping[str, Any]
    created_at: datetime
    score: float | None = None
    updated_at: datetime | None = None
    expire_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class MemoryFilter:
    """Filters applied by every memory read, all optional and combined with AND.

    Attributes:
        agent_id: Only memories stored by this agent.
        tags: Only memories carrying at least one of these tags.
        memory_type: Only this memory type.
        min_importance: Only memories with importance >= this.
        since: Only memories created at or after this time (UTC).
        until: Only memories created at or before this time (UTC).
        tags_all: Only memories carrying every one of these tags.
        max_importance: Only memories with importance <= this.
    """

    agent_id: str | None = None
    tags: tuple[str, ...] = ()
    memory_type: str | None = None
    min_importance: float | None = None
    since: datetime | None = None
    until: datetime | None = None
    tags_all: tuple[str, ...] = ()
    max_importance: float | None = None


@dataclass(frozen=True, slots=True)
class MemoryAggregate:
    """Counts over the memories that pass a filter.

    Attributes:
        total: Number of memories.
        by_type: Count per memory type.
        top_tags: Up to 10 (tag, count) pairs, most frequent first.
        mean_importance: Mean importance, or 0 when there are none.
        newest: Creation time of the newest memory, if any.
    """

    total: int
    by_type: Mapping[str, int]
    top_tags: tuple[tuple[str, int], ...]
    mean_importance: float
    newest: datetime | None
