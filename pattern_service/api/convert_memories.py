"""Conversions of memories between the domain and ``tmws.pattern.v1`` memory messages (pure, no I/O)."""

from __future__ import annotations

from pattern_service import domain
from pattern_service.api.convert import dict_to_struct, to_timestamp
from tmws.pattern.v1 import memory_service_pb2 as pm


def memory_to_proto(m: domain.Memory) -> pm.Memory:
    """A memory as its message (``agent_id`` empty for none, ``expire_time`` unset for never)."""
    msg = pm.Memory(
        memory_id=m.memory_id,
        content=m.content,
        agent_id=m.agent_id or "",
        memory_type=m.memory_type,
        tags=list(m.tags),
        importance=m.importance,
        metadata=dict_to_struct(m.metadata),
    )
    for field, value in (
        ("create_time", m.created_at),
        ("update_time", m.updated_at or m.created_at),
        ("expire_time", m.expire_at),
    ):
        if (ts := to_timestamp(value)) is not None:
            getattr(msg, field).CopyFrom(ts)
    return msg


def scored_to_proto(m: domain.Memory) -> pm.ScoredMemory:
    """A search hit: the memory and its cosine similarity (0 when unscored)."""
    return pm.ScoredMemory(memory=memory_to_proto(m), score=m.score or 0.0)
