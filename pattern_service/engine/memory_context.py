"""Parsing of the execution context keys that memory operations use.

Keys (all optional): ``agent`` (str), ``tags`` (list of str), ``memory_type``
(str), ``min_importance`` (0-1), ``importance`` (0-1, writes), ``content``
(str, writes), ``since`` / ``until`` (RFC 3339 timestamps with offset),
``window_seconds`` (> 0), ``limit`` (1-100, default 10) and ``min_score``
(0-1: the relevance floor of ``recall``; default: the server's). Every other key is
kept as ``extra`` and becomes the metadata of a stored memory (seed
``PATTERN_SERVICE_API.md`` example 2 stores ``{"agent": ..., "plan": ...}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pattern_service.errors import FieldViolation, InvalidArgumentError

_MEMORY_KEYS = ("agent", "tags", "memory_type", "min_importance", "importance", "content", "since", "until")
KNOWN_KEYS = frozenset((*_MEMORY_KEYS, "window_seconds", "limit", "min_score"))
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
MAX_CONTENT_CHARS = 20_000
MAX_TAGS = 50


@dataclass(frozen=True, slots=True)
class MemoryRequest:
    """The validated memory keys of a context.

    Attributes:
        agent: Agent id, or ``None``.
        tags: Lower-cased, unique tags.
        memory_type: Memory type filter (reads) or type (writes), or ``None``.
        min_importance: Importance floor in [0, 1], or ``None``.
        importance: Importance of a write in [0, 1], or ``None``.
        content: Text of a write, or ``None`` (then the query's subject).
        since: Window start (UTC), or ``None``.
        until: Window end (UTC), or ``None``.
        window_seconds: Window length ending now, seconds, or ``None``.
        limit: Maximum memories returned (1-100).
        min_score: Relevance floor of ``recall`` in [0, 1], or ``None`` (the server default).
        extra: The other context keys (JSON-compatible).
    """

    agent: str | None = None
    tags: tuple[str, ...] = ()
    memory_type: str | None = None
    min_importance: float | None = None
    importance: float | None = None
    content: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    window_seconds: float | None = None
    limit: int = DEFAULT_LIMIT
    min_score: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _text(out: list[FieldViolation], key: str, value: object, max_len: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        out.append(FieldViolation(f"context.{key}", f"must be a non-blank string of at most {max_len} characters"))
        return None
    return value.strip()


def _fraction(out: list[FieldViolation], key: str, value: object) -> float | None:
    if value is None:
        return None
    if not _number(value) or not 0.0 <= float(value) <= 1.0:  # type: ignore[arg-type]
        out.append(FieldViolation(f"context.{key}", "must be a number in [0, 1]"))
        return None
    return float(value)  # type: ignore[arg-type]


def _timestamp(out: list[FieldViolation], key: str, value: object) -> datetime | None:
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError
        parsed = datetime.fromisoformat(value.strip())
        if parsed.tzinfo is None:
            raise ValueError
    except ValueError:
        out.append(
            FieldViolation(f"context.{key}", "must be an RFC 3339 timestamp with offset, e.g. 2025-01-09T12:00:00Z")
        )
        return None
    return parsed.astimezone(UTC)


def _tags(out: list[FieldViolation], value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or len(items) > MAX_TAGS:
        out.append(FieldViolation("context.tags", f"must be a list of at most {MAX_TAGS} strings"))
        return ()
    tags: list[str] = []
    for i, tag in enumerate(items):
        if not isinstance(tag, str) or not tag.strip() or len(tag) > 100:
            out.append(FieldViolation(f"context.tags[{i}]", "must be a non-blank string of at most 100 characters"))
        elif tag.strip().lower() not in tags:
            tags.append(tag.strip().lower())
    return tuple(tags)


def parse_memory_context(context: Mapping[str, Any]) -> MemoryRequest:
    """Validate the memory keys of ``context``.

    Raises:
        InvalidArgumentError: With a violation ``context.<key>`` for every invalid value.
    """
    out: list[FieldViolation] = []
    limit = context.get("limit", DEFAULT_LIMIT)
    integral = isinstance(limit, int) or (isinstance(limit, float) and limit.is_integer())
    if isinstance(limit, bool) or not integral or not 1 <= limit <= MAX_LIMIT:
        out.append(FieldViolation("context.limit", f"must be an integer in 1..{MAX_LIMIT}"))
        limit = DEFAULT_LIMIT
    window = context.get("window_seconds")
    if window is not None and (not _number(window) or not float(window) > 0):
        out.append(FieldViolation("context.window_seconds", "must be a number of seconds > 0"))
        window = None
    request = MemoryRequest(
        agent=_text(out, "agent", context.get("agent"), 200),
        tags=_tags(out, context.get("tags")),
        memory_type=_text(out, "memory_type", context.get("memory_type"), 100),
        min_importance=_fraction(out, "min_importance", context.get("min_importance")),
        importance=_fraction(out, "importance", context.get("importance")),
        content=_text(out, "content", context.get("content"), MAX_CONTENT_CHARS),
        since=_timestamp(out, "since", context.get("since")),
        until=_timestamp(out, "until", context.get("until")),
        window_seconds=float(window) if window is not None else None,
        limit=int(limit),
        min_score=_fraction(out, "min_score", context.get("min_score")),
        extra={k: v for k, v in context.items() if k not in KNOWN_KEYS},
    )
    if request.since and request.until and request.since > request.until:
        out.append(FieldViolation("context.since", "must not be after context.until"))
    if out:
        raise InvalidArgumentError(out)
    return request
