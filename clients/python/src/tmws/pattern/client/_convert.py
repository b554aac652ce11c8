"""Conversions between Python values and the protobuf types of the API."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias

from google.protobuf import field_mask_pb2, struct_pb2

__all__ = [
    "DEFAULT",
    "ContextLike",
    "MetadataLike",
    "TimeoutLike",
    "merge_metadata",
    "to_field_mask",
    "to_struct",
]


class _Default(enum.Enum):
    """Type of :data:`DEFAULT`."""

    DEFAULT = "DEFAULT"

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT = _Default.DEFAULT
"""Sentinel for a ``timeout`` argument: use the client's ``default_timeout``."""

TimeoutLike: TypeAlias = float | _Default | None
"""A call deadline in seconds from now; ``None`` for no deadline; :data:`DEFAULT` for the client default."""

MetadataLike: TypeAlias = Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]]
"""gRPC metadata: a mapping or ``(key, value)`` pairs (keys lower-case; ``-bin`` keys take bytes)."""

ContextLike: TypeAlias = Mapping[str, Any] | struct_pb2.Struct | None
"""An execution context: a JSON-like mapping, a ``google.protobuf.Struct``, or ``None``."""


def to_struct(value: ContextLike) -> struct_pb2.Struct | None:
    """Convert a JSON-like mapping to a ``google.protobuf.Struct``.

    Args:
        value: A mapping of string keys to JSON-like values (``None``, bools,
            numbers, strings, lists and mappings), a ``Struct`` (returned
            as-is) or ``None``.

    Returns:
        The ``Struct``, or ``None`` when ``value`` is ``None``. Numbers become
        doubles, as in JSON.

    Raises:
        TypeError: If ``value`` is not a mapping, or holds a value that has no
            JSON form.
        ValueError: If a value cannot be represented in a ``Struct``.
    """
    if value is None or isinstance(value, struct_pb2.Struct):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"context must be a mapping or a google.protobuf.Struct, not {type(value).__name__}")
    struct = struct_pb2.Struct()
    try:
        struct.update(value)
    except (AttributeError, ValueError) as exc:
        raise TypeError(f"context is not JSON-like: {exc}") from exc
    return struct


def merge_metadata(*parts: MetadataLike | None) -> tuple[tuple[str, str | bytes], ...]:
    """Concatenate metadata, earlier parts first.

    Args:
        *parts: Mappings, sequences of ``(key, value)`` pairs, or ``None``.

    Returns:
        The pairs in order (repeated keys are kept: gRPC metadata is a multimap).
    """
    merged: list[tuple[str, str | bytes]] = []
    for part in parts:
        if part is None:
            continue
        pairs = part.items() if isinstance(part, Mapping) else part
        merged.extend((str(key), value) for key, value in pairs)
    return tuple(merged)


def to_field_mask(paths: Iterable[str] | str | field_mask_pb2.FieldMask) -> field_mask_pb2.FieldMask:
    """Build a ``google.protobuf.FieldMask``.

    Args:
        paths: A ``FieldMask`` (returned as-is), field paths, or one string of
            comma-separated paths (``"name,tags"``).

    Returns:
        The field mask.
    """
    if isinstance(paths, field_mask_pb2.FieldMask):
        return paths
    items: Sequence[str] = paths.split(",") if isinstance(paths, str) else list(paths)
    return field_mask_pb2.FieldMask(paths=[p.strip() for p in items if p.strip()])
