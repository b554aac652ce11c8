"""``GetStats``: the engine's typed statistics as ``GetStatsResponse`` sections (pure, no I/O).

Each section is a frozen dataclass of :mod:`pattern_service.engine.stats` whose
fields are the message's, name for name (``tests/api/test_stats_convert.py``
checks both sides), so a renamed or dropped field fails loudly instead of
silently reading as zero.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pattern_service.engine.stats import CacheSnapshot, EngineSnapshot, RegistrySnapshot, RouterSnapshot, StatsSnapshot
from tmws.pattern.v1 import pattern_execution_service_pb2 as pe

#: The snapshot type of each ``GetStatsResponse`` section: its fields are the message's fields, name for name.
STATS_SECTIONS: dict[str, type[Any]] = {
    "engine": EngineSnapshot,
    "registry": RegistrySnapshot,
    "router": RouterSnapshot,
    "cache": CacheSnapshot,
}


def stats_to_proto(stats: StatsSnapshot) -> pe.GetStatsResponse:
    """The engine's statistics as the response message, every field of every section.

    A section's fields are those of its type in :data:`STATS_SECTIONS`; counters
    a subclass adds (the process router's ``no_match_count``, the Redis layer's
    errors) stay off the wire.

    Raises:
        ValueError: A snapshot field has no field of that name in its message
            (a rename on one side fails here instead of vanishing).
    """
    response = pe.GetStatsResponse()
    for name, kind in STATS_SECTIONS.items():
        section = getattr(stats, name)
        message = getattr(response, name)
        message.CopyFrom(type(message)(**{f.name: getattr(section, f.name) for f in dataclasses.fields(kind)}))
    return response
