"""The memory entity's vector binding: the ``memory_embeddings`` collection.

What of a memory is embedded (its content), the payload stored beside the
vector, the payload indexes, and how a :class:`~pattern_service.domain.MemoryFilter`
is pushed down to the index. Used by :class:`~pattern_service.store.memories.SqlMemoryStore`
and, through :data:`~pattern_service.store.vector_bindings.VECTOR_BINDINGS`, by the outbox.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from pattern_service.domain import MemoryFilter
from pattern_service.store.binding import VectorBinding
from pattern_service.store.orm import MemoryRow
from pattern_service.store.vectors.base import Condition, MatchAny, Range, VectorFilter


def memory_payload(row: MemoryRow, model_id: str) -> dict[str, Any]:
    """Index payload of a memory (``agent_id`` omitted when ``None``); ``created_at`` in epoch seconds."""
    payload: dict[str, Any] = {
        "tenant_id": row.tenant_id,
        "memory_type": row.memory_type,
        "tags": list(row.tags or []),
        "importance": float(row.importance),
        "created_at": int(row.created_at.timestamp()),
        "model_id": model_id,
    }
    if row.agent_id is not None:
        payload["agent_id"] = row.agent_id
    return payload


@functools.lru_cache(maxsize=4096)
def memory_vector_filter(tenant_id: str, flt: MemoryFilter) -> VectorFilter:
    """The index filter for ``flt`` (immutable; built once per (tenant, filter) and reused, LRU of 4,096).

    Times are stored in whole epoch seconds, so ``since``/``until`` are widened
    to whole seconds here and applied exactly on the SQL rows afterwards.
    """
    must: list[Condition] = [MatchAny("tenant_id", (tenant_id,))]
    if flt.agent_id is not None:
        must.append(MatchAny("agent_id", (flt.agent_id,)))
    if flt.memory_type is not None:
        must.append(MatchAny("memory_type", (flt.memory_type,)))
    if flt.tags:
        must.append(MatchAny("tags", tuple(flt.tags)))
    must.extend(MatchAny("tags", (tag,)) for tag in dict.fromkeys(flt.tags_all))
    if flt.min_importance is not None or flt.max_importance is not None:
        must.append(
            Range(
                "importance",
                gte=float(flt.min_importance) if flt.min_importance is not None else None,
                lte=float(flt.max_importance) if flt.max_importance is not None else None,
            )
        )
    if flt.since is not None or flt.until is not None:
        must.append(
            Range(
                "created_at",
                gte=float(math.floor(flt.since.timestamp())) if flt.since is not None else None,
                lte=float(math.floor(flt.until.timestamp())) if flt.until is not None else None,
            )
        )
    return VectorFilter(must=tuple(must))


def _memory_text(row: MemoryRow) -> str:
    return row.content


#: Memories: their content is embedded; a payload index on every filtered field. Every change
#: (``MemoryService.UpdateMemory`` included) is a full upsert: the content is re-embedded.
MEMORY_BINDING: VectorBinding[MemoryRow, MemoryFilter] = VectorBinding(
    collection="memory_embeddings",
    row_type=MemoryRow,
    id_column=MemoryRow.memory_id,
    payload_indexes={
        "tenant_id": "keyword",
        "agent_id": "keyword",
        "memory_type": "keyword",
        "tags": "keyword",
        "importance": "float",
        "created_at": "integer",
    },
    text=_memory_text,
    payload=memory_payload,
    vector_filter=memory_vector_filter,
)

__all__ = ["MEMORY_BINDING", "memory_payload", "memory_vector_filter"]
