"""The success-pattern entity's vector binding: the ``pattern_embeddings`` collection.

What of a success pattern is embedded (:func:`pattern_embedding_text`), the
payload stored beside the vector (the seed's ``create_pattern_payload``
fields), the payload indexes, and how :class:`~pattern_service.domain.MatchFilters`
are pushed down to the index. Used by :class:`~pattern_service.store.learning.SqlLearningStore`
and, through :data:`~pattern_service.store.vector_bindings.VECTOR_BINDINGS`, by the outbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pattern_service.domain import MatchFilters, SuccessPattern, SuccessPatternStatus
from pattern_service.store.binding import VectorBinding
from pattern_service.store.orm import SuccessPatternRow
from pattern_service.store.vectors.base import Condition, MatchAny, Range, VectorFilter


def pattern_embedding_text(row: SuccessPatternRow | SuccessPattern) -> str:
    """The text embedded for a success pattern: what describes it, most telling first.

    Name, description, the intent (and environment) of its context, its tags,
    its type and its execution steps (the seed embedded only type, name,
    description and tags; the intent and the steps are what a caller's need
    is phrased like). MiniLM reads the first 256 word pieces, so the steps come
    last. Changing this text re-embeds every stored pattern: migration 0004
    queues them all in the outbox.
    """
    context = row.context or {}
    description = row.description.strip()
    if description and description[-1] not in ".!?":
        description += "."
    parts = [f"{row.name}.", description]
    for key in ("intent", "environment"):
        value = context.get(key)
        if isinstance(value, str) and value.strip():
            parts.append(f"{key.capitalize()}: {value.strip()}.")
    if row.tags:
        parts.append(f"Tags: {', '.join(row.tags)}.")
    parts.append(f"Type: {row.pattern_type.replace('_', ' ')}.")
    steps = recommendation_texts(row.execution_trace or {})
    if steps:
        parts.append("Steps: " + "; ".join(steps) + ".")
    return " ".join(p for p in parts if p)


def recommendation_texts(execution_trace: Mapping[str, Any]) -> tuple[str, ...]:
    """The steps of ``execution_trace["steps"]``: strings, or dicts' ``description`` / ``action``."""
    steps = execution_trace.get("steps")
    if not isinstance(steps, list):
        return ()
    out: list[str] = []
    for step in steps:
        if isinstance(step, str) and step.strip():
            out.append(step)
        elif isinstance(step, Mapping):
            text = step.get("description") or step.get("action")
            if isinstance(text, str) and text.strip():
                out.append(text)
    return tuple(out)


def pattern_payload(row: SuccessPatternRow, model_id: str) -> dict[str, Any]:
    """Index payload of a success pattern (the seed's ``create_pattern_payload`` fields).

    Nullable fields are omitted when null; times are epoch seconds.
    """
    payload: dict[str, Any] = {
        "pattern_id": row.pattern_id,
        "tenant_id": row.tenant_id,
        "pattern_type": row.pattern_type,
        "version": int(row.version),
        "status": row.status,
        "tags": list(row.tags or []),
        "quality_score": float(row.quality_score),
        "match_count": int(row.match_count),
        "created_at": int(row.created_at.timestamp()),
        "model_id": model_id,
    }
    if row.success_rate is not None:
        payload["success_rate"] = float(row.success_rate)
    if row.last_matched_at is not None:
        payload["last_matched_at"] = int(row.last_matched_at.timestamp())
    return payload


def match_vector_filter(tenant_id: str, f: MatchFilters) -> VectorFilter:
    """The index filter for a match's filters (no statuses = active patterns only)."""
    statuses = f.statuses or (SuccessPatternStatus.ACTIVE,)
    must: list[Condition] = [
        MatchAny("tenant_id", (tenant_id,)),
        MatchAny("status", tuple(str(s) for s in statuses)),
    ]
    if f.pattern_types:
        must.append(MatchAny("pattern_type", tuple(f.pattern_types)))
    if f.tags:
        must.append(MatchAny("tags", tuple(f.tags)))
    if f.min_quality_score is not None:
        must.append(Range("quality_score", gte=float(f.min_quality_score)))
    if f.min_success_rate is not None:
        must.append(Range("success_rate", gte=float(f.min_success_rate)))
    return VectorFilter(must=tuple(must))


#: Success patterns: :func:`pattern_embedding_text` is embedded; a payload index on every
#: filtered field. Outcomes and status changes leave the embedded text alone, so those
#: updates rewrite only the payload.
PATTERN_BINDING: VectorBinding[SuccessPatternRow, MatchFilters] = VectorBinding(
    collection="pattern_embeddings",
    row_type=SuccessPatternRow,
    id_column=SuccessPatternRow.pattern_id,
    payload_indexes={
        "tenant_id": "keyword",
        "pattern_type": "keyword",
        "status": "keyword",
        "tags": "keyword",
        "quality_score": "float",
        "success_rate": "float",
        "match_count": "integer",
        "created_at": "integer",
        "last_matched_at": "integer",
    },
    text=pattern_embedding_text,
    payload=pattern_payload,
    vector_filter=match_vector_filter,
    payload_only_updates=True,
)

__all__ = [
    "PATTERN_BINDING",
    "match_vector_filter",
    "pattern_embedding_text",
    "pattern_payload",
    "recommendation_texts",
]
