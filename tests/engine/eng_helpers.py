"""Helpers of the engine tests (imported by ``conftest.py`` and the test modules)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pattern_service.domain import PatternDefinition, PatternType
from pattern_service.engine import PatternExecutionEngine, ToolCall, ToolError

#: Global similarity threshold for the lexical hashing embedder (the shipped per-pattern ones are for MiniLM).
ENG_THRESHOLD = 0.3


class EngClock:
    """A monotonic clock the test advances by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def eng_definition(name: str, **kw: object) -> PatternDefinition:
    """A valid infrastructure definition running ``calculate``, with overrides."""
    values: dict[str, object] = {
        "name": name,
        "pattern_type": PatternType.INFRASTRUCTURE,
        "trigger_pattern": rf"\b{name}\b",
        "cost_tokens": 20,
        "priority": 5,
        "cache_ttl": 60,
        "metadata": {"tool": "calculate"},
        "description": f"the {name} pattern",
        "examples": (),
    }
    values.update(kw)
    return PatternDefinition(**values)  # type: ignore[arg-type]


async def eng_explode(call: ToolCall) -> dict[str, object]:
    """A real tool that always fails with a ToolError naming its subject."""
    raise ToolError(f"explode refused {call.subject!r}")


EngBuilder = Callable[..., Awaitable[PatternExecutionEngine]]
