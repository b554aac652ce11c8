"""The API enums, and parsing of their short string names.

Wherever the client takes an enum it also takes the short, case-insensitive
name (``"fast"``, ``"balanced"``, ``"comprehensive"`` for
:data:`ExecutionMode`; ``"infrastructure"``, ``"memory"``, ``"hybrid"`` for
:data:`PatternType`; ``"active"``, ``"deprecated"``, ``"draft"``,
``"archived"`` for :data:`SuccessPatternStatus`), the full protobuf name
(``"EXECUTION_MODE_FAST"``) or the number.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

from tmws.pattern.v1 import pattern_execution_service_pb2 as _exec_pb2
from tmws.pattern.v1 import pattern_learning_service_pb2 as _learn_pb2

__all__ = [
    "ExecutionMode",
    "ExecutionModeLike",
    "PatternType",
    "PatternTypeLike",
    "SuccessPatternStatus",
    "SuccessPatternStatusLike",
    "execution_mode_name",
    "parse_execution_mode",
    "parse_pattern_type",
    "parse_success_pattern_status",
    "pattern_type_name",
]

ExecutionMode = _exec_pb2.ExecutionMode
"""How the router chooses among execution paths (``tmws.pattern.v1.ExecutionMode``)."""

PatternType = _exec_pb2.PatternType
"""The execution path of a pattern (``tmws.pattern.v1.PatternType``)."""

SuccessPatternStatus = _learn_pb2.SuccessPatternStatus
"""Lifecycle status of a success pattern (``tmws.pattern.v1.SuccessPatternStatus``)."""

ExecutionModeLike: TypeAlias = "_exec_pb2.ExecutionMode.ValueType | int | str | None"
"""An execution mode: enum value, number, name (``"fast"``) or ``None`` (unspecified)."""

PatternTypeLike: TypeAlias = "_exec_pb2.PatternType.ValueType | int | str | None"
"""A pattern type: enum value, number, name (``"memory"``) or ``None`` (unspecified)."""

SuccessPatternStatusLike: TypeAlias = "_learn_pb2.SuccessPatternStatus.ValueType | int | str | None"
"""A success pattern status: enum value, number, name (``"active"``) or ``None`` (unspecified)."""


def _parse(value: int | str | None, names: Mapping[str, int], prefix: str, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an enum value, int or str, not bool")
    if isinstance(value, int):
        if value not in names.values():
            raise ValueError(f"unknown {what} number {value}")
        return value
    key = value.strip().upper().replace("-", "_")
    if not key.startswith(prefix):
        key = prefix + key
    if key not in names:
        choices = ", ".join(name.removeprefix(prefix).lower() for name in names if not name.endswith("UNSPECIFIED"))
        raise ValueError(f"unknown {what} {value!r} (expected one of: {choices})")
    return names[key]


def parse_execution_mode(value: ExecutionModeLike) -> _exec_pb2.ExecutionMode.ValueType:
    """Parse an execution mode.

    Args:
        value: ``None`` (unspecified, i.e. balanced), an :data:`ExecutionMode`
            value or number, or a name such as ``"fast"``, ``"BALANCED"`` or
            ``"EXECUTION_MODE_COMPREHENSIVE"``.

    Returns:
        The enum value.

    Raises:
        ValueError: If the name or number is not an execution mode.
        TypeError: If the value is of another type.
    """
    return ExecutionMode.ValueType(_parse(value, dict(ExecutionMode.items()), "EXECUTION_MODE_", "execution mode"))


def parse_pattern_type(value: PatternTypeLike) -> _exec_pb2.PatternType.ValueType:
    """Parse a pattern type.

    Args:
        value: ``None`` (unspecified), a :data:`PatternType` value or number,
            or a name such as ``"infrastructure"``, ``"memory"``, ``"hybrid"``
            or ``"PATTERN_TYPE_HYBRID"``.

    Returns:
        The enum value.

    Raises:
        ValueError: If the name or number is not a pattern type.
        TypeError: If the value is of another type.
    """
    return PatternType.ValueType(_parse(value, dict(PatternType.items()), "PATTERN_TYPE_", "pattern type"))


def parse_success_pattern_status(value: SuccessPatternStatusLike) -> _learn_pb2.SuccessPatternStatus.ValueType:
    """Parse a success pattern status.

    Args:
        value: ``None`` (unspecified), a :data:`SuccessPatternStatus` value or
            number, or a name such as ``"active"`` or
            ``"SUCCESS_PATTERN_STATUS_DRAFT"``.

    Returns:
        The enum value.

    Raises:
        ValueError: If the name or number is not a status.
        TypeError: If the value is of another type.
    """
    number = _parse(value, dict(SuccessPatternStatus.items()), "SUCCESS_PATTERN_STATUS_", "success pattern status")
    return SuccessPatternStatus.ValueType(number)


def execution_mode_name(value: _exec_pb2.ExecutionMode.ValueType | int) -> str:
    """Return the short lower-case name of an execution mode (``"fast"``; ``"unspecified"`` for 0).

    Args:
        value: An execution mode value.

    Returns:
        The short name.

    Raises:
        ValueError: If the number is not an execution mode.
    """
    return ExecutionMode.Name(parse_execution_mode(value)).removeprefix("EXECUTION_MODE_").lower()


def pattern_type_name(value: _exec_pb2.PatternType.ValueType | int) -> str:
    """Return the short lower-case name of a pattern type (``"memory"``; ``"unspecified"`` for 0).

    Args:
        value: A pattern type value.

    Returns:
        The short name.

    Raises:
        ValueError: If the number is not a pattern type.
    """
    return PatternType.Name(parse_pattern_type(value)).removeprefix("PATTERN_TYPE_").lower()
