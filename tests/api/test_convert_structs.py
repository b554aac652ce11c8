"""``dict_to_struct``/``fill_struct`` build exactly what protobuf's own ``Struct.update`` builds."""

from __future__ import annotations

import collections
import datetime
import enum
from typing import Any

import pytest
from google.protobuf import struct_pb2

from pattern_service.api.convert import dict_to_struct, fill_struct, jsonable, struct_to_dict
from tmws.pattern.v1 import ExecutionResult


class _Colour(enum.Enum):
    RED = "red"


class _Level(enum.IntEnum):
    HIGH = 3


class _Ratio(float):
    pass


CASES: list[dict[Any, Any]] = [
    {},
    {"a": 1, "b": 2.5, "c": None, "d": True, "e": "x", "f": [], "g": {}, "h": [1, [2, {"z": None}]]},
    {
        "tuple": (1, 2),
        "set": {3},
        "frozenset": frozenset(),
        "datetime": datetime.datetime(2020, 1, 1, 12, 30),
        "date": datetime.date(2020, 1, 2),
        "enum": _Colour.RED,
        "int_enum": _Level.HIGH,
        "nan": float("nan"),
        "inf": float("-inf"),
        "ordered": collections.OrderedDict(a=1, b=[{}]),
        5: "integer key",
        "float_subclass": _Ratio(1.5),
        "big": 2**60,
        "unicode": "é☃\U0001f600",
    },
]


def _reference(data: dict[Any, Any]) -> struct_pb2.Struct:
    expected = struct_pb2.Struct()
    if data:
        expected.update(jsonable(data))
    return expected


@pytest.mark.parametrize("data", CASES)
def test_dict_to_struct_equals_protobufs_own_update(data: dict[Any, Any]) -> None:
    assert dict_to_struct(data) == _reference(data)


def test_fill_struct_fills_a_message_field_and_round_trips() -> None:
    msg = ExecutionResult()
    fill_struct(msg.result, {"operation": "arithmetic", "result": 14, "nested": {"empty": {}, "list": []}})
    assert struct_to_dict(msg.result) == {"operation": "arithmetic", "result": 14, "nested": {"empty": {}, "list": []}}
    assert msg.result.fields["nested"].struct_value.fields["empty"].HasField("struct_value")
    assert msg.result.fields["nested"].struct_value.fields["list"].HasField("list_value")


@pytest.mark.parametrize("bad", [{"o": object()}, {"x": [1, object()]}, {"y": {"z": b"bytes"}}])
def test_values_that_are_not_json_compatible_raise_value_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        dict_to_struct(bad)
    with pytest.raises(ValueError):
        _reference(bad)
