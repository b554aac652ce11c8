"""Validation of ``MemoryService`` requests into domain values (every invalid field reported at once).

Limits (also documented on the proto fields): content 1-20,000 characters
(the ``store`` operation's), agent id at most 200, memory type at most 100,
tags as everywhere (lower-cased here, like the ``store`` operation does),
importance and scores in [0, 1], metadata at most 64 KiB, an ``expire_time``
in the future or a ``ttl`` > 0. Output-only fields are ignored on create and
refused in an update mask.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from pattern_service import domain
from pattern_service.api import paging
from pattern_service.api.validation import (
    MAX_BATCH,
    Violations,
    check_context,
    check_fraction,
    check_page,
    check_query,
    check_tags,
    check_text,
    check_uuid,
)
from pattern_service.engine.memory_context import MAX_CONTENT_CHARS, MAX_LIMIT
from pattern_service.store.memory_admin import MEMORY_ORDERS, MemoryOrder
from tmws.pattern.v1 import memory_service_pb2 as pm

MAX_AGENT_ID_LEN = 200
MAX_MEMORY_TYPE_LEN = 100
MAX_METADATA_BYTES = 65_536
MAX_SEARCH_QUERY = 10_000
DEFAULT_SEARCH_LIMIT = 10
DEFAULT_MEMORY_TYPE = "general"
#: Update-mask paths (wire names) and the domain field each sets.
UPDATE_PATHS = {
    "content": "content",
    "agent_id": "agent_id",
    "memory_type": "memory_type",
    "tags": "tags",
    "importance": "importance",
    "metadata": "metadata",
    "expire_time": "expire_at",
    "ttl": "expire_at",
}


def _metadata(v: Violations, field: str, value: struct_pb2.Struct) -> dict[str, Any]:
    return check_context(v, field, value, MAX_METADATA_BYTES)  # NaN/±Infinity too (check_struct)


def _tags(v: Violations, field: str, values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(t.lower() for t in check_tags(v, field, values)))


def _time(v: Violations, field: str, value: timestamp_pb2.Timestamp) -> datetime | None:
    """A Timestamp as an aware datetime; outside years 1-9999 (or malformed) is a violation."""
    try:
        return value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        v.add(field, "must be a valid timestamp between years 1 and 9999")
        return None


def _expiry(v: Violations, prefix: str, msg: pm.Memory, now: datetime) -> datetime | None:
    kind = msg.WhichOneof("expiration")
    if kind == "expire_time":
        at = _time(v, f"{prefix}.expire_time", msg.expire_time)
        if at is not None and at <= now:
            v.add(f"{prefix}.expire_time", "must be in the future")
        return at
    if kind == "ttl":
        try:
            ttl = msg.ttl.ToTimedelta()
            at = now + ttl
        except (ValueError, OverflowError):
            v.add(f"{prefix}.ttl", "must be a valid duration that ends before year 10000")
            return None
        if ttl <= timedelta(0):
            v.add(f"{prefix}.ttl", "must be a positive duration")
        return at
    return None


def _field(v: Violations, prefix: str, msg: pm.Memory, name: str, now: datetime) -> Any:
    """Validated domain value of one settable field of ``msg`` (``name``: a domain field)."""
    path = f"{prefix}.{name}"
    checks: dict[str, Callable[[], Any]] = {
        "content": lambda: check_text(v, path, msg.content, MAX_CONTENT_CHARS, required=True),
        "agent_id": lambda: check_text(v, path, msg.agent_id, MAX_AGENT_ID_LEN) or None,
        "memory_type": lambda: check_text(v, path, msg.memory_type, MAX_MEMORY_TYPE_LEN) or DEFAULT_MEMORY_TYPE,
        "tags": lambda: _tags(v, path, msg.tags),
        "importance": lambda: check_fraction(v, path, msg.importance) if msg.HasField("importance") else 0.5,
        "metadata": lambda: _metadata(v, path, msg.metadata),
        "expire_at": lambda: _expiry(v, prefix, msg, now),
    }
    return checks[name]()


def _new_memory(v: Violations, prefix: str, tenant_id: str, msg: pm.Memory, now: datetime) -> domain.NewMemory:
    values = {name: _field(v, prefix, msg, name, now) for name in set(UPDATE_PATHS.values())}
    return domain.NewMemory(tenant_id=tenant_id, **values)


def create_memory(tenant_id: str, req: pm.CreateMemoryRequest) -> domain.NewMemory:
    """Validate a ``CreateMemoryRequest``.

    Raises:
        InvalidArgumentError: Every invalid field, paths ``memory.<field>``.
    """
    v = Violations()
    if not req.HasField("memory"):
        v.add("memory", "is required")
        v.raise_if_any()
    memory = _new_memory(v, "memory", tenant_id, req.memory, datetime.now(UTC))
    v.raise_if_any()
    return memory


def batch_create_memories(tenant_id: str, req: pm.BatchCreateMemoriesRequest) -> list[domain.NewMemory]:
    """Validate a ``BatchCreateMemoriesRequest`` (1-1,000 requests), every request checked.

    Raises:
        InvalidArgumentError: Every invalid field of every request, paths ``requests[i].memory.<field>``.
    """
    v = Violations()
    if not 1 <= len(req.requests) <= MAX_BATCH:
        v.add("requests", f"must hold 1-{MAX_BATCH} requests (got {len(req.requests)})")
        v.raise_if_any()
    now = datetime.now(UTC)
    memories = []
    for i, item in enumerate(req.requests):
        if not item.HasField("memory"):
            v.add(f"requests[{i}].memory", "is required")
            continue
        memories.append(_new_memory(v, f"requests[{i}].memory", tenant_id, item.memory, now))
    v.raise_if_any()
    return memories


def memory_id(value: str) -> str:
    """Validate a memory id.

    Raises:
        InvalidArgumentError: Missing or not a UUID (field ``memory_id``).
    """
    v = Violations()
    canonical = check_uuid(v, "memory_id", value)
    v.raise_if_any()
    return canonical


def update_memory(req: pm.UpdateMemoryRequest) -> tuple[str, dict[str, Any]]:
    """Validate an ``UpdateMemoryRequest``: (memory id, changes by domain field).

    The mask is required and names only updatable fields (no ``*``); only the
    masked fields are read (AIP-134). Naming ``expire_time`` (or ``ttl``) while
    neither is set clears the expiry.

    Raises:
        InvalidArgumentError: Every invalid field or mask path.
    """
    v = Violations()
    if not req.HasField("memory"):
        v.add("memory", "is required")
    canonical = check_uuid(v, "memory.memory_id", req.memory.memory_id)
    paths = list(req.update_mask.paths)
    if not paths:
        v.add("update_mask", "is required and must name at least one field")
    changes: dict[str, Any] = {}
    now = datetime.now(UTC)
    for i, path in enumerate(paths):
        name = UPDATE_PATHS.get(path)
        if name is None:
            v.add(f"update_mask.paths[{i}]", f"{path!r} is not an updatable field")
        elif name == "importance" and not req.memory.HasField("importance"):
            v.add("memory.importance", "must be set when named in the update mask")
        else:
            changes[name] = _field(v, "memory", req.memory, name, now)
    v.raise_if_any()
    return canonical, changes


def memory_filter(v: Violations, prefix: str, f: pm.MemoryFilter) -> domain.MemoryFilter:
    """Validate a ``MemoryFilter`` (``prefix``: its field path, e.g. ``filter``)."""
    agent = check_text(v, f"{prefix}.agent_id", f.agent_id, MAX_AGENT_ID_LEN)
    memory_type = check_text(v, f"{prefix}.memory_type", f.memory_type, MAX_MEMORY_TYPE_LEN)
    low = check_fraction(v, f"{prefix}.min_importance", f.min_importance) if f.HasField("min_importance") else None
    high = check_fraction(v, f"{prefix}.max_importance", f.max_importance) if f.HasField("max_importance") else None
    if low is not None and high is not None and low > high:
        v.add(f"{prefix}.min_importance", "must not be above max_importance")
    start = _time(v, f"{prefix}.create_time_start", f.create_time_start) if f.HasField("create_time_start") else None
    end = _time(v, f"{prefix}.create_time_end", f.create_time_end) if f.HasField("create_time_end") else None
    if start is not None and end is not None and start > end:
        v.add(f"{prefix}.create_time_start", "must not be after create_time_end")
    return domain.MemoryFilter(
        agent_id=agent or None,
        memory_type=memory_type or None,
        tags=_tags(v, f"{prefix}.tags_any", f.tags_any),
        tags_all=_tags(v, f"{prefix}.tags_all", f.tags_all),
        min_importance=low,
        max_importance=high,
        since=start,
        until=end,
    )


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A validated ``ListMemoriesRequest`` of one tenant, its ``page_token`` decoded.

    Attributes:
        key: Identifies the query (tenant, filter, order; not the page) for :mod:`.paging`.
        after: Where the page starts (``None``: the first page).
    """

    flt: domain.MemoryFilter
    order: MemoryOrder
    page_size: int
    key: str
    after: domain.KeysetCursor | None

    def next_page_token(self, page: domain.Page[Any]) -> str:
        """The ``next_page_token`` of ``page`` (``""`` on the last page)."""
        return paging.encode_cursor(page.next_cursor, self.key)


def list_memories(req: pm.ListMemoriesRequest, tenant_id: str) -> ListQuery:
    """Validate a ``ListMemoriesRequest`` of ``tenant_id`` and decode its ``page_token``.

    Raises:
        InvalidArgumentError: Every invalid field; then (reason ``INVALID_PAGE_TOKEN``)
            a malformed ``page_token`` or one of another query or tenant.
    """
    v = Violations()
    size = check_page(v, req.page_size)
    flt = memory_filter(v, "filter", req.filter)
    order_text = " ".join(req.order_by.split()).lower() or MEMORY_ORDERS[0]
    order = next((o for o in MEMORY_ORDERS if o == order_text or f"{o} asc" == order_text), None)
    if order is None:
        v.add("order_by", f"must be one of {', '.join(repr(o) for o in MEMORY_ORDERS)}")
    v.raise_if_any()
    chosen = order or MEMORY_ORDERS[0]
    key = json.dumps(["memories", tenant_id, asdict(flt), chosen], default=str, sort_keys=True)
    return ListQuery(flt=flt, order=chosen, page_size=size, key=key, after=paging.decode_cursor(req.page_token, key))


def purge_memories(req: pm.PurgeMemoriesRequest) -> domain.MemoryFilter:
    """Validate a ``PurgeMemoriesRequest`` (the filter must be present; ``{}`` means all).

    Raises:
        InvalidArgumentError: Every invalid field.
    """
    v = Violations()
    if not req.HasField("filter"):
        v.add("filter", "is required; an empty filter ({}) purges every memory of the tenant")
    flt = memory_filter(v, "filter", req.filter)
    v.raise_if_any()
    return flt


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A validated ``SearchMemoriesRequest``."""

    query: str
    flt: domain.MemoryFilter
    limit: int
    min_score: float | None


def search_memories(req: pm.SearchMemoriesRequest) -> SearchQuery:
    """Validate a ``SearchMemoriesRequest``.

    Raises:
        InvalidArgumentError: Every invalid field.
    """
    v = Violations()
    query = check_query(v, "query", req.query, MAX_SEARCH_QUERY)
    flt = memory_filter(v, "filter", req.filter)
    if not 0 <= req.limit <= MAX_LIMIT:
        v.add("limit", f"must be between 1 and {MAX_LIMIT} (0 means {DEFAULT_SEARCH_LIMIT})")
    min_score = check_fraction(v, "min_score", req.min_score) if req.HasField("min_score") else None
    v.raise_if_any()
    return SearchQuery(query=query, flt=flt, limit=req.limit or DEFAULT_SEARCH_LIMIT, min_score=min_score)
