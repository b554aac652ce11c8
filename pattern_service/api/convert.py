"""Conversions between protobuf messages and domain types.

Pure functions, no I/O. ``google.protobuf.Struct`` numbers are doubles on the
wire: :func:`struct_to_dict` turns integral doubles back into ``int`` so that a
context ``{"limit": 5}`` reads as 5, not 5.0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any, Generic, TypeVar

from cachetools import LRUCache
from google.protobuf import struct_pb2, timestamp_pb2

from pattern_service import domain
from pattern_service.health import ComponentStatus
from tmws.pattern.v1 import pattern_execution_service_pb2 as pe
from tmws.pattern.v1 import pattern_learning_service_pb2 as pl

PATTERN_TYPE_TO_PROTO: dict[domain.PatternType, int] = {
    domain.PatternType.INFRASTRUCTURE: pe.PATTERN_TYPE_INFRASTRUCTURE,
    domain.PatternType.MEMORY: pe.PATTERN_TYPE_MEMORY,
    domain.PatternType.HYBRID: pe.PATTERN_TYPE_HYBRID,
}
PATTERN_TYPE_FROM_PROTO = {v: k for k, v in PATTERN_TYPE_TO_PROTO.items()}

MODE_FROM_PROTO: dict[int, domain.ExecutionMode] = {
    pe.EXECUTION_MODE_UNSPECIFIED: domain.ExecutionMode.BALANCED,
    pe.EXECUTION_MODE_FAST: domain.ExecutionMode.FAST,
    pe.EXECUTION_MODE_BALANCED: domain.ExecutionMode.BALANCED,
    pe.EXECUTION_MODE_COMPREHENSIVE: domain.ExecutionMode.COMPREHENSIVE,
}

STATUS_TO_PROTO: dict[domain.SuccessPatternStatus, int] = {
    domain.SuccessPatternStatus.ACTIVE: pl.SUCCESS_PATTERN_STATUS_ACTIVE,
    domain.SuccessPatternStatus.DEPRECATED: pl.SUCCESS_PATTERN_STATUS_DEPRECATED,
    domain.SuccessPatternStatus.DRAFT: pl.SUCCESS_PATTERN_STATUS_DRAFT,
    domain.SuccessPatternStatus.ARCHIVED: pl.SUCCESS_PATTERN_STATUS_ARCHIVED,
}
STATUS_FROM_PROTO = {v: k for k, v in STATUS_TO_PROTO.items()}


# ---------------------------------------------------------------------------
# Struct and Timestamp
# ---------------------------------------------------------------------------


def _from_value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_from_value(v) for v in value.list_value.values]
    if kind == "number_value":
        n = value.number_value
        return int(n) if math.isfinite(n) and n.is_integer() and abs(n) < 2**53 else n
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a plain dict (integral numbers as ``int``)."""
    return {key: _from_value(val) for key, val in struct.fields.items()}


def jsonable(value: Any) -> Any:
    """Make ``value`` JSON-compatible: mappings, sequences, datetimes (RFC 3339), enums."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _set_value(target: struct_pb2.Value, value: Any) -> None:
    """Set ``target`` to ``value``; exact JSON types first, anything else through :func:`jsonable`."""
    cls = value.__class__
    if cls is str:
        target.string_value = value
    elif cls is bool:
        target.bool_value = value
    elif cls is int:
        target.number_value = value
    elif cls is float:
        if math.isfinite(value):
            target.number_value = value
        else:
            target.null_value = struct_pb2.NULL_VALUE
    elif value is None:
        target.null_value = struct_pb2.NULL_VALUE
    elif cls is dict:
        fill_struct(target.struct_value, value).SetInParent()  # an empty dict is still a Struct
    elif cls is list or cls is tuple:
        values = target.list_value
        values.SetInParent()  # an empty list is still a list, not an unset value
        add = values.values.add
        for item in value:
            _set_value(add(), item)
    else:
        converted = jsonable(value)
        if converted is not value:
            _set_value(target, converted)
        elif isinstance(value, bool):  # subclasses of the JSON scalars, which jsonable leaves as they are
            target.bool_value = bool(value)
        elif isinstance(value, str):
            target.string_value = str(value)
        elif isinstance(value, int | float):
            _set_value(target, float(value))
        else:
            raise ValueError(f"not JSON-compatible: {cls.__name__}")


def fill_struct(target: struct_pb2.Struct, data: Mapping[str, Any]) -> struct_pb2.Struct:
    """Add ``data`` to ``target`` (a message field or a new Struct); returns ``target``.

    Same result as ``target.update(jsonable(data))`` (protobuf's well-known-type
    helper) but about three times faster on the result and metadata dicts of an
    execution, which every uncached ``Execute`` converts: it dispatches on the
    exact class of each value and only falls back to :func:`jsonable` for other
    types (mappings, sets, datetimes, enums, subclasses).

    Raises:
        ValueError: A value is not JSON-compatible.
    """
    fields = target.fields
    for key, value in data.items():
        _set_value(fields[key if key.__class__ is str else str(key)], value)
    return target


def dict_to_struct(data: Mapping[str, Any] | None) -> struct_pb2.Struct:
    """A mapping as a Struct (values made JSON-compatible, see :func:`fill_struct`).

    Raises:
        ValueError: A value is not JSON-compatible.
    """
    struct = struct_pb2.Struct()
    if data:
        fill_struct(struct, data)
    return struct


def to_timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A datetime as a Timestamp (``None`` stays ``None``; naive means UTC)."""
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    return ts


# ---------------------------------------------------------------------------
# Execution service
# ---------------------------------------------------------------------------


def definition_to_proto(d: domain.PatternDefinition) -> pe.PatternDefinition:
    """A domain pattern definition as its message."""
    msg = pe.PatternDefinition(
        name=d.name,
        pattern_type=PATTERN_TYPE_TO_PROTO[d.pattern_type],  # type: ignore[arg-type]
        trigger_pattern=d.trigger_pattern or "",
        cost_tokens=d.cost_tokens,
        priority=d.priority,
        cache_ttl=d.cache_ttl,
        metadata=dict_to_struct(d.metadata),
        description=d.description,
        examples=list(d.examples),
    )
    if d.similarity_threshold is not None:
        msg.similarity_threshold = d.similarity_threshold
    if (ct := to_timestamp(d.create_time)) is not None:
        msg.create_time.CopyFrom(ct)
    if (ut := to_timestamp(d.update_time)) is not None:
        msg.update_time.CopyFrom(ut)
    return msg


def definition_from_proto(
    msg: pe.PatternDefinition, pattern_type: domain.PatternType | None, *, default_cache_ttl: int
) -> domain.PatternDefinition:
    """A message as a domain definition.

    Args:
        msg: The message.
        pattern_type: Its type, already parsed by the caller; ``None`` when the
            message has none (or an unknown one): the engine's validation then
            reports ``pattern_type`` beside every other problem, and such a
            definition is never registered.
        default_cache_ttl: Seconds used when ``cache_ttl`` is unset
            (``TMWS_CACHE_TTL``); a set 0 means never cached.
    """
    return domain.PatternDefinition(
        name=msg.name,
        pattern_type=pattern_type,  # type: ignore[arg-type]  # None only on the way to a violation
        trigger_pattern=msg.trigger_pattern or None,
        cost_tokens=msg.cost_tokens,
        priority=msg.priority,
        cache_ttl=msg.cache_ttl if msg.HasField("cache_ttl") else default_cache_ttl,
        metadata=struct_to_dict(msg.metadata),
        description=msg.description,
        examples=tuple(msg.examples),
        similarity_threshold=msg.similarity_threshold if msg.HasField("similarity_threshold") else None,
    )


T = TypeVar("T")


class _IdentityMemo(Generic[T]):
    """Values built once per key *object* (by identity), least recently used evicted.

    Each entry keeps its key object alive, so the ``id`` it is stored under
    cannot be reused by another object while the entry exists.
    """

    def __init__(self, maxsize: int) -> None:
        self._entries: LRUCache[int, tuple[object, T]] = LRUCache(maxsize=maxsize)

    def get(self, key: object, build: Callable[[], T]) -> T:
        """The value for ``key``, built with ``build()`` the first time."""
        entry = self._entries.get(id(key))
        if entry is not None and entry[0] is key:
            return entry[1]
        value = build()
        self._entries[id(key)] = (key, value)
        return value


#: Routing messages by decision (the router reuses the decision objects of kept plans).
_ROUTING_MESSAGES: _IdentityMemo[pe.RoutingDecision] = _IdentityMemo(1024)


def routing_to_proto(r: domain.RoutingDecision) -> pe.RoutingDecision:
    """A routing decision as its message.

    The message is built once per decision object and shared: pass it to a
    message constructor or ``CopyFrom`` (both copy it), never mutate it.
    """
    return _ROUTING_MESSAGES.get(r, lambda: _routing_message(r))


def _routing_message(r: domain.RoutingDecision) -> pe.RoutingDecision:
    return pe.RoutingDecision(
        pattern_type=PATTERN_TYPE_TO_PROTO[r.pattern_type],  # type: ignore[arg-type]
        pattern_name=r.pattern_name,
        confidence=r.confidence,
        reasoning=r.reasoning,
        estimated_cost=r.estimated_cost,
        alternative_routes=[
            pe.RouteAlternative(
                pattern_type=PATTERN_TYPE_TO_PROTO[a.pattern_type],  # type: ignore[arg-type]
                pattern_name=a.pattern_name,
                score=a.score,
                estimated_cost=a.estimated_cost,
                raw_score=a.raw_score,
            )
            for a in r.alternative_routes
        ],
        match_source=str(r.match_source),
        raw_score=r.raw_score,
    )


#: The ``result`` and ``metadata`` Structs of cached results, by cache entry.
_CACHED_STRUCTS: _IdentityMemo[tuple[struct_pb2.Struct, struct_pb2.Struct]] = _IdentityMemo(1024)


def _cached_structs(r: domain.ExecutionResult) -> tuple[struct_pb2.Struct, struct_pb2.Struct]:
    """The Structs of a cache hit's ``result`` and ``metadata``, built once per cache entry."""
    return _CACHED_STRUCTS.get(r.cache_entry, lambda: (dict_to_struct(r.result), dict_to_struct(r.metadata)))


def result_to_proto(r: domain.ExecutionResult, msg: pe.ExecutionResult | None = None) -> pe.ExecutionResult:
    """An execution result as its message, written into ``msg`` when given.

    Pass the ``result`` field of a new response as ``msg`` to build it in
    place: a message passed to a constructor is copied. Every hit of one cache
    entry carries the same ``cache_entry``: the Structs of its ``result`` and
    ``metadata`` are built once and copied (a C-level copy) into each response.

    Raises:
        ValueError: ``result`` or ``metadata`` is not JSON-compatible.
    """
    if msg is None:
        msg = pe.ExecutionResult()
    msg.pattern_name = r.pattern_name
    msg.pattern_type = PATTERN_TYPE_TO_PROTO[r.pattern_type]  # type: ignore[assignment]
    msg.success = r.success
    msg.execution_time_ms = r.execution_time_ms
    msg.tokens_used = r.tokens_used
    msg.cache_hit = r.cache_hit
    msg.error = r.error or ""
    msg.routing.CopyFrom(routing_to_proto(r.routing))
    if r.cache_entry is not None:
        result, metadata = _cached_structs(r)
        msg.result.CopyFrom(result)
        msg.metadata.CopyFrom(metadata)
    else:
        fill_struct(msg.result, r.result).SetInParent()  # present even when empty, as CopyFrom made it
        fill_struct(msg.metadata, r.metadata).SetInParent()
    return msg


# ---------------------------------------------------------------------------
# Learning service
# ---------------------------------------------------------------------------


def success_pattern_to_proto(p: domain.SuccessPattern) -> pl.SuccessPattern:
    """A success pattern as its message, every field (``context`` included)."""
    msg = pl.SuccessPattern(
        pattern_id=p.pattern_id,
        pattern_type=p.pattern_type,
        name=p.name,
        description=p.description,
        version=p.version,
        parent_pattern_id=p.parent_pattern_id or "",
        context_hash=p.context_hash,
        execution_trace=dict_to_struct(p.execution_trace),
        success_criteria=dict_to_struct(p.success_criteria),
        quality_metrics=dict_to_struct(p.quality_metrics),
        performance_data=dict_to_struct(p.performance_data),
        context=dict_to_struct(p.context),
        tags=list(p.tags),
        status=STATUS_TO_PROTO[p.status],  # type: ignore[arg-type]
        match_count=p.match_count,
        quality_score=p.quality_score,
    )
    for field, value in (
        ("created_at", p.created_at),
        ("updated_at", p.updated_at),
        ("last_matched_at", p.last_matched_at),
    ):
        if (ts := to_timestamp(value)) is not None:
            getattr(msg, field).CopyFrom(ts)
    if p.success_rate is not None:
        msg.success_rate = p.success_rate
    return msg


def match_to_proto(m: domain.PatternMatch) -> pl.PatternMatch:
    """One match as its message; ``metadata`` holds the seed's match metadata fields."""
    p = m.pattern
    metadata = {
        "version": p.version,
        "quality_metrics": p.quality_metrics,
        "quality_score": p.quality_score,
        "success_rate": p.success_rate,
        "match_count": p.match_count,
        "status": p.status.value,
        "tags": list(p.tags),
    }
    return pl.PatternMatch(
        pattern_id=p.pattern_id,
        pattern_type=p.pattern_type,
        name=p.name,
        description=p.description,
        confidence_score=m.confidence_score,
        metadata=dict_to_struct(metadata),
        recommendations=list(m.recommendations),
        similarity=m.similarity,
        ranking_score=m.ranking_score,
    )


def component_to_proto(c: ComponentStatus) -> pe.ComponentHealth:
    """A component's health as its message."""
    msg = pe.ComponentHealth(name=c.name, healthy=c.healthy, detail=c.detail)
    if (ts := to_timestamp(c.check_time)) is not None:
        msg.check_time.CopyFrom(ts)
    return msg


def strings(values: Sequence[str]) -> tuple[str, ...]:
    """Repeated string field as a tuple."""
    return tuple(values)
