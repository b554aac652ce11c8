"""GetStats: every field of the engine's typed statistics reaches the proto, and nothing else does."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from pattern_service.api import convert_stats
from pattern_service.api.convert_stats import STATS_SECTIONS, stats_to_proto
from pattern_service.engine.stats import (
    CacheSnapshot,
    EngineSnapshot,
    RegistrySnapshot,
    RouterTotals,
    StatsSnapshot,
)
from pattern_service.redis.cache import RedisCacheSnapshot
from tmws.pattern.v1 import GetStatsResponse


def test_each_section_type_has_exactly_the_fields_of_its_message() -> None:
    assert set(STATS_SECTIONS) == set(GetStatsResponse.DESCRIPTOR.fields_by_name) - {"components"}
    for name, kind in STATS_SECTIONS.items():
        message = GetStatsResponse.DESCRIPTOR.fields_by_name[name].message_type
        assert {f.name for f in dataclasses.fields(kind)} == set(message.fields_by_name), name


def _distinct(kind: type[Any], start: int) -> Any:
    """An instance of ``kind`` whose every field holds a value no other field has (and none is a default)."""
    values: dict[str, Any] = {}
    for i, f in enumerate(dataclasses.fields(kind), start=start):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if isinstance(default, bool):
            values[f.name] = not default
        elif isinstance(default, float):
            values[f.name] = i + 0.5
        elif isinstance(default, int):
            values[f.name] = i
        else:  # the per-type maps
            values[f.name] = {"memory": i + 0.25} if f.name == "route_distribution" else {"memory": i}
    return kind(**values)


def test_every_field_of_every_section_reaches_the_response() -> None:
    stats = StatsSnapshot(
        engine=_distinct(EngineSnapshot, 100),
        registry=_distinct(RegistrySnapshot, 200),
        router=_distinct(RouterTotals, 300),  # its no_match_count stays off the wire
        cache=_distinct(RedisCacheSnapshot, 400),  # and so do the Redis layer's own counters
    )
    response = stats_to_proto(stats)
    for name, kind in STATS_SECTIONS.items():
        section, message = getattr(stats, name), getattr(response, name)
        for f in dataclasses.fields(kind):
            value = getattr(message, f.name)
            sent = dict(value) if isinstance(getattr(section, f.name), dict) else value
            assert sent == getattr(section, f.name), f"{name}.{f.name}"
    assert not response.components


def test_a_field_the_message_lacks_fails_instead_of_vanishing(monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclasses.dataclass(frozen=True)
    class Renamed(CacheSnapshot):
        hit_ratio: float = 0.5  # e.g. hit_rate renamed on the engine side only

    monkeypatch.setitem(convert_stats.STATS_SECTIONS, "cache", Renamed)
    engine, registry = EngineSnapshot(), RegistrySnapshot()
    with pytest.raises(ValueError, match="hit_ratio"):
        stats_to_proto(StatsSnapshot(engine, registry, RouterTotals(), Renamed()))
