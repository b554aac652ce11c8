"""Request validation of the API layer: every invalid field is collected, then raised at once.

The engine and the stores validate the semantics they own (regexes, tools,
context keys); this module checks what the wire format allows but the API
forbids: lengths, ranges, enum numbers, ids, page sizes and field masks, and
(:func:`check_struct`, the one door of every request Struct) NaN, ±Infinity and NUL.
Limits are documented on the proto fields.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf import struct_pb2

from pattern_service import domain
from pattern_service.api import convert
from pattern_service.errors import FieldViolation, InvalidArgumentError
from tmws.pattern.v1 import pattern_execution_service_pb2 as pe
from tmws.pattern.v1 import pattern_learning_service_pb2 as pl

MAX_BATCH = 1000
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
MAX_REQUEST_ID = 200
MAX_CONTEXT_DEPTH = 32
MAX_INTENT = 1000
MAX_MATCH_CONTEXT = 5000
MAX_REQUIREMENTS = 20
MAX_REQUIREMENT_LEN = 500
MAX_TAGS = 50
MAX_TAG_LEN = 100
MAX_PATTERN_TYPE_LEN = 100
MAX_NAME_LEN = 200
MAX_DESCRIPTION_LEN = 5000


class Violations:
    """Collects field violations; :meth:`raise_if_any` raises them together."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        """Record one violation."""
        self.items.append(FieldViolation(field, description))

    def extend(self, items: Iterable[FieldViolation]) -> None:
        """Record several violations."""
        self.items.extend(items)

    def raise_if_any(self) -> None:
        """Raises: InvalidArgumentError with every recorded violation."""
        if self.items:
            raise InvalidArgumentError(self.items)


def _depth(value: struct_pb2.Value | struct_pb2.Struct, level: int = 0) -> int:
    if level > MAX_CONTEXT_DEPTH:
        return level
    if isinstance(value, struct_pb2.Struct):
        return max((_depth(v, level + 1) for v in value.fields.values()), default=level)
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return _depth(value.struct_value, level)
    if kind == "list_value":
        return max((_depth(v, level + 1) for v in value.list_value.values), default=level)
    return level


NUL_MESSAGE = "must not contain NUL (U+0000) characters"


def contains_nul(value: Any) -> bool:
    """Whether a string, or any key or string inside a JSON-like value, holds U+0000.

    PostgreSQL stores no NUL in text or JSONB; refusing it everywhere keeps every
    backend answering the same (``INVALID_ARGUMENT``, never ``INTERNAL``).
    """
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(item) for item in value)
    return False


def check_no_nul(v: Violations, field: str, value: Any) -> None:
    """Record a violation if ``value`` holds U+0000 (see :func:`contains_nul`)."""
    if contains_nul(value):
        v.add(field, NUL_MESSAGE)


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NON_FINITE_MESSAGE = "must be a finite number (JSON has no NaN or Infinity)"


def _member_path(field: str, key: str) -> str:
    """``field.key``, or ``field["key"]`` (JSON-quoted) for a key that is not an identifier."""
    return f"{field}.{key}" if _IDENTIFIER.match(key) else f"{field}[{json.dumps(key, ensure_ascii=False)}]"


def non_finite_paths(field: str, value: Any) -> list[str]:
    """Paths of every NaN or ±Infinity inside a JSON-like value.

    Args:
        field: Path of ``value`` in the request (e.g. ``context``).
        value: A number, string, bool, ``None``, or dicts/lists of them (a converted Struct).

    Returns:
        Field paths in the ``BadRequest.FieldViolation.field`` style, e.g.
        ``context.weights[1]`` or ``context["a b"]``; empty when every number is finite.
    """
    if isinstance(value, float):
        return [] if math.isfinite(value) else [field]
    if isinstance(value, dict):
        return [p for k, item in value.items() for p in non_finite_paths(_member_path(field, str(k)), item)]
    if isinstance(value, list | tuple):
        return [p for i, item in enumerate(value) for p in non_finite_paths(f"{field}[{i}]", item)]
    return []


def check_struct(v: Violations, field: str, struct: struct_pb2.Struct) -> dict[str, Any]:
    """A request's Struct as a dict, after the checks every Struct of every RPC gets.

    JSON (and so PostgreSQL's JSONB and SQLite's JSON) has no NaN or Infinity and
    PostgreSQL stores no NUL; a Struct holding either is refused here, with the same
    answer on every backend, instead of failing ``INTERNAL`` in one store and being
    silently changed to ``null`` in another.

    Args:
        v: Where violations are recorded.
        field: Path of the Struct in the request (e.g. ``success_pattern.quality_metrics``).
        struct: The Struct.

    Returns:
        The Struct as a dict (:func:`~pattern_service.api.convert.struct_to_dict`);
        ``{}`` when it was refused.
    """
    data = convert.struct_to_dict(struct)
    bad = non_finite_paths(field, data)
    for path in bad:
        v.add(path, NON_FINITE_MESSAGE)
    if contains_nul(data):
        v.add(field, NUL_MESSAGE)
        return {}
    return {} if bad else data


def check_query(v: Violations, field: str, query: str, max_length: int) -> str:
    """Validate and trim a query (1..``max_length`` characters after trimming, no NUL)."""
    text = query.strip()
    if "\x00" in text:
        v.add(field, NUL_MESSAGE)
    if not text:
        v.add(field, "must not be empty")
    elif len(text) > max_length:
        v.add(field, f"must be at most {max_length} characters (got {len(text)})")
    return text


def check_mode(v: Violations, field: str, mode: int) -> domain.ExecutionMode:
    """Validate an ``ExecutionMode`` number (unset means BALANCED)."""
    if mode not in convert.MODE_FROM_PROTO:
        v.add(field, f"unknown execution mode {mode}")
        return domain.ExecutionMode.BALANCED
    return convert.MODE_FROM_PROTO[mode]


def check_context(v: Violations, field: str, context: struct_pb2.Struct, max_bytes: int) -> dict[str, Any]:
    """Validate a context Struct's size and nesting (and :func:`check_struct`) and return it as a dict."""
    size = context.ByteSize()
    if size == 0:  # no context (the common case): nothing to check or convert
        return {}
    if size > max_bytes:
        v.add(field, f"must serialize to at most {max_bytes} bytes (got {size})")
        return {}
    if _depth(context) > MAX_CONTEXT_DEPTH:
        v.add(field, f"must be nested at most {MAX_CONTEXT_DEPTH} levels deep")
        return {}
    return check_struct(v, field, context)


def check_page(v: Violations, page_size: int) -> int:
    """Validate ``page_size`` (0 means the default) and return the effective size."""
    if page_size < 0:
        v.add("page_size", "must not be negative")
        return DEFAULT_PAGE_SIZE
    if page_size > MAX_PAGE_SIZE:
        v.add("page_size", f"must be at most {MAX_PAGE_SIZE}")
    return min(page_size, MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE


def check_uuid(v: Violations, field: str, value: str, *, required: bool = True) -> str:
    """Validate a UUID text id and return its canonical form."""
    if not value:
        if required:
            v.add(field, "is required")
        return ""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        v.add(field, "must be a UUID")
        return value


def check_pattern_type(v: Violations, field: str, value: int, *, allow_unset: bool) -> domain.PatternType | None:
    """Validate a ``PatternType`` number."""
    if value == pe.PATTERN_TYPE_UNSPECIFIED:
        if not allow_unset:
            v.add(field, "is required")
        return None
    if value not in convert.PATTERN_TYPE_FROM_PROTO:
        v.add(field, f"unknown pattern type {value}")
        return None
    return convert.PATTERN_TYPE_FROM_PROTO[value]


def check_statuses(v: Violations, field: str, values: Sequence[int]) -> tuple[domain.SuccessPatternStatus, ...]:
    """Validate repeated ``SuccessPatternStatus`` numbers (unspecified is not allowed)."""
    out: list[domain.SuccessPatternStatus] = []
    for i, value in enumerate(values):
        if value not in convert.STATUS_FROM_PROTO:
            v.add(f"{field}[{i}]", f"unknown or unspecified status {value}")
        else:
            out.append(convert.STATUS_FROM_PROTO[value])
    return tuple(dict.fromkeys(out))


def check_fraction(v: Violations, field: str, value: float) -> float:
    """Validate a number in [0, 1]."""
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        v.add(field, "must be between 0 and 1")
    return value


def check_tags(v: Violations, field: str, tags: Sequence[str]) -> tuple[str, ...]:
    """Validate tags (each 1-100 characters, at most 50); returns them trimmed and unique."""
    if len(tags) > MAX_TAGS:
        v.add(field, f"must have at most {MAX_TAGS} entries")
    out: list[str] = []
    for i, tag in enumerate(tags):
        text = tag.strip()
        if "\x00" in text:
            v.add(f"{field}[{i}]", NUL_MESSAGE)
        elif not text or len(text) > MAX_TAG_LEN:
            v.add(f"{field}[{i}]", f"must be 1-{MAX_TAG_LEN} characters")
        else:
            out.append(text)
    return tuple(dict.fromkeys(out))


def check_text(v: Violations, field: str, value: str, max_len: int, *, required: bool = False) -> str:
    """Validate a free-text field's length."""
    text = value.strip()
    if "\x00" in value:
        v.add(field, NUL_MESSAGE)
    elif required and not text:
        v.add(field, "is required")
    elif len(value) > max_len:
        v.add(field, f"must be at most {max_len} characters")
    return text


def check_name(v: Violations, field: str, name: str) -> str:
    """Validate a pattern-definition name reference (non-empty, at most 100 characters)."""
    if "\x00" in name:
        v.add(field, NUL_MESSAGE)
    elif not name:
        v.add(field, "is required")
    elif len(name) > 100:
        v.add(field, "must be at most 100 characters")
    return name


def match_query(req: pl.MatchPatternsRequest) -> domain.MatchQuery:
    """Validate a ``MatchPatternsRequest`` (seed: intent 1-1000 chars, limit 1-100).

    Raises:
        InvalidArgumentError: Every invalid field.
    """
    v = Violations()
    intent = check_text(v, "intent", req.intent, MAX_INTENT, required=True)
    context = check_text(v, "context", req.context, MAX_MATCH_CONTEXT)
    if len(req.requirements) > MAX_REQUIREMENTS:
        v.add("requirements", f"must have at most {MAX_REQUIREMENTS} entries")
    for i, r in enumerate(req.requirements):
        check_text(v, f"requirements[{i}]", r, MAX_REQUIREMENT_LEN)
    if req.limit < 0 or req.limit > 100:
        v.add("limit", "must be between 1 and 100 (0 means 10)")
    min_conf = 0.3
    if req.HasField("min_confidence"):
        min_conf = check_fraction(v, "min_confidence", req.min_confidence)
    f = req.filters
    for i, t in enumerate(f.pattern_types):
        check_text(v, f"filters.pattern_types[{i}]", t, MAX_PATTERN_TYPE_LEN, required=True)
    filters = domain.MatchFilters(
        pattern_types=tuple(t.strip() for t in f.pattern_types),
        statuses=check_statuses(v, "filters.statuses", f.statuses),
        tags=check_tags(v, "filters.tags", f.tags),
        min_quality_score=(
            check_fraction(v, "filters.min_quality_score", f.min_quality_score)
            if f.HasField("min_quality_score")
            else None
        ),
        min_success_rate=(
            check_fraction(v, "filters.min_success_rate", f.min_success_rate)
            if f.HasField("min_success_rate")
            else None
        ),
    )
    ranking = _RANKINGS.get(req.ranking)
    if ranking is None:
        v.add("ranking", "must be MATCH_RANKING_RELEVANCE or MATCH_RANKING_LEARNED")
    v.raise_if_any()
    return domain.MatchQuery(
        intent=intent,
        context=context,
        requirements=tuple(r.strip() for r in req.requirements if r.strip()),
        filters=filters,
        limit=req.limit or 10,
        min_confidence=min_conf,
        ranking=ranking or domain.MatchRanking.RELEVANCE,
    )


_RANKINGS = {
    pl.MATCH_RANKING_UNSPECIFIED: domain.MatchRanking.RELEVANCE,
    pl.MATCH_RANKING_RELEVANCE: domain.MatchRanking.RELEVANCE,
    pl.MATCH_RANKING_LEARNED: domain.MatchRanking.LEARNED,
}
