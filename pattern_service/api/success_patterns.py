"""Validation of success-pattern messages for create, update and list (AIP-132, AIP-133, AIP-134).

Output-only fields (``pattern_id``, ``context_hash``, timestamps,
``match_count``, ``quality_score``) are ignored on create and rejected in an
update mask.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import struct_pb2

from pattern_service import domain
from pattern_service.api import convert, paging
from pattern_service.api.validation import (
    MAX_DESCRIPTION_LEN,
    MAX_NAME_LEN,
    MAX_PATTERN_TYPE_LEN,
    NUL_MESSAGE,
    Violations,
    check_fraction,
    check_page,
    check_statuses,
    check_struct,
    check_tags,
    check_text,
    check_uuid,
)
from tmws.pattern.v1 import pattern_learning_service_pb2 as pl

MAX_STRUCT_BYTES = 65_536
_STRUCT_FIELDS = ("execution_trace", "success_criteria", "quality_metrics", "performance_data", "context")


def _struct(v: Violations, field: str, value: struct_pb2.Struct) -> dict[str, Any]:
    if value.ByteSize() > MAX_STRUCT_BYTES:
        v.add(field, f"must serialize to at most {MAX_STRUCT_BYTES} bytes")
        return {}
    return check_struct(v, field, value)


def _status(v: Violations, field: str, value: int) -> domain.SuccessPatternStatus:
    if value == pl.SUCCESS_PATTERN_STATUS_UNSPECIFIED:
        return domain.SuccessPatternStatus.ACTIVE
    if value not in convert.STATUS_FROM_PROTO:
        v.add(field, f"unknown status {value}")
        return domain.SuccessPatternStatus.ACTIVE
    return convert.STATUS_FROM_PROTO[value]


def _version(v: Violations, field: str, value: int, *, create: bool) -> int | None:
    """A set version; unset (0) is ``None`` on create (1, or the parent's + 1) and 1 on update."""
    if value < 0:
        v.add(field, "must be at least 1 (0 means unset)")
    if value > 0:
        return value
    return None if create else 1


def _field_value(v: Violations, prefix: str, msg: pl.SuccessPattern, name: str, *, create: bool = False) -> Any:
    """Validated value of one updatable field of ``msg``."""
    path = f"{prefix}.{name}"
    checks: dict[str, Callable[[], Any]] = {
        "pattern_type": lambda: check_text(v, path, msg.pattern_type, MAX_PATTERN_TYPE_LEN, required=True),
        "name": lambda: check_text(v, path, msg.name, MAX_NAME_LEN, required=True),
        "description": lambda: check_text(v, path, msg.description, MAX_DESCRIPTION_LEN),
        "version": lambda: _version(v, path, msg.version, create=create),
        "parent_pattern_id": lambda: check_uuid(v, path, msg.parent_pattern_id, required=False) or None,
        "tags": lambda: check_tags(v, path, msg.tags),
        "status": lambda: _status(v, path, msg.status),
        "success_rate": lambda: check_fraction(v, path, msg.success_rate) if msg.HasField("success_rate") else None,
    }
    if name in _STRUCT_FIELDS:
        return _struct(v, path, getattr(msg, name))
    return checks[name]()


def create_input(req: pl.CreateSuccessPatternRequest) -> domain.SuccessPatternInput:
    """Validate a create request.

    Raises:
        InvalidArgumentError: Every invalid field, paths ``success_pattern.<field>``.
    """
    v = Violations()
    if not req.HasField("success_pattern"):
        v.add("success_pattern", "is required")
        v.raise_if_any()
    msg = req.success_pattern
    values = {
        name: _field_value(v, "success_pattern", msg, name, create=True)
        for name in domain.UPDATABLE_SUCCESS_PATTERN_FIELDS
    }
    v.raise_if_any()
    return domain.SuccessPatternInput(**values)


def update_changes(req: pl.UpdateSuccessPatternRequest) -> tuple[str, dict[str, Any]]:
    """Validate an update request and return (pattern_id, changes).

    The mask is required and lists only updatable fields (no ``*``); only the
    masked fields are read from the message (AIP-134).

    Raises:
        InvalidArgumentError: Every invalid field or mask path.
    """
    v = Violations()
    if not req.HasField("success_pattern"):
        v.add("success_pattern", "is required")
    pattern_id = check_uuid(v, "success_pattern.pattern_id", req.success_pattern.pattern_id)
    paths = list(req.update_mask.paths)
    if not paths:
        v.add("update_mask", "is required and must name at least one field")
    changes: dict[str, Any] = {}
    for i, path in enumerate(paths):
        if path not in domain.UPDATABLE_SUCCESS_PATTERN_FIELDS:
            v.add(f"update_mask.paths[{i}]", f"{path!r} is not an updatable field")
            continue
        changes[path] = _field_value(v, "success_pattern", req.success_pattern, path)
    v.raise_if_any()
    return pattern_id, changes


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A validated ``ListSuccessPatternsRequest`` of one tenant, its ``page_token`` decoded.

    Attributes:
        key: Identifies the query (tenant and filters, not the page) for
            :mod:`.paging`: a token is valid only for the query it was made for.
        after: Where the page starts (``None``: the first page).
    """

    page_size: int
    pattern_type: str | None
    statuses: tuple[domain.SuccessPatternStatus, ...]
    parent_pattern_id: str | None
    tags: tuple[str, ...]
    name_prefix: str | None
    key: str
    after: domain.KeysetCursor | None

    def next_page_token(self, page: domain.Page[Any]) -> str:
        """The ``next_page_token`` of ``page`` (``""`` on the last page)."""
        return paging.encode_cursor(page.next_cursor, self.key)


def list_query(req: pl.ListSuccessPatternsRequest, tenant_id: str) -> ListQuery:
    """Validate a list request of ``tenant_id`` and decode its ``page_token``.

    Raises:
        InvalidArgumentError: Every invalid field; then (reason ``INVALID_PAGE_TOKEN``)
            a malformed ``page_token`` or one of another query or tenant.
    """
    v = Violations()
    size = check_page(v, req.page_size)
    pattern_type = check_text(v, "pattern_type", req.pattern_type, MAX_PATTERN_TYPE_LEN)
    statuses = check_statuses(v, "statuses", req.statuses)
    parent = check_uuid(v, "parent_pattern_id", req.parent_pattern_id, required=False)
    tags = check_tags(v, "tags", req.tags)
    if "\x00" in req.name_prefix:
        v.add("name_prefix", NUL_MESSAGE)
    elif len(req.name_prefix) > MAX_NAME_LEN:
        v.add("name_prefix", f"must be at most {MAX_NAME_LEN} characters")
    v.raise_if_any()
    kind, parent_id, prefix = pattern_type or None, parent or None, req.name_prefix or None
    ordered_statuses = sorted(str(s) for s in statuses)
    key = json.dumps(["success_patterns", tenant_id, kind, ordered_statuses, parent_id, sorted(tags), prefix])
    return ListQuery(
        page_size=size,
        pattern_type=kind,
        statuses=statuses,
        parent_pattern_id=parent_id,
        tags=tags,
        name_prefix=prefix,
        key=key,
        after=paging.decode_cursor(req.page_token, key),
    )
