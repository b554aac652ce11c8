"""The tool registry: async callables that infrastructure paths run.

A tool is ``async def tool(call: ToolCall) -> Mapping[str, Any]`` returning a
JSON-compatible mapping. Built-ins live in :mod:`.builtin_tools`; other
packages add tools through the Python entry-point group ``tmws.tools``
: each entry point's name is the tool name and its object the
async callable, e.g. in a plugin's ``pyproject.toml``::

    [project.entry-points."tmws.tools"]
    word_stats = "my_plugin.tools:word_stats"

A failing entry point is logged and skipped; it never stops the service.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from pattern_service.domain import PatternDefinition, PatternType
from pattern_service.engine.ports import Embedder

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "tmws.tools"
TOOL_NAME = re.compile(r"[a-z][a-z0-9_]{0,99}")

#: ``async () -> {component: {"healthy": bool, ...} | bool, other_key: info}``: a bool or a mapping per
#: component (a mapping without ``healthy`` is healthy unless it has an ``error``); other values are information.
HealthProbe = Callable[[], Awaitable[Mapping[str, Any]]]
#: ``() -> engine statistics`` (``PatternExecutionEngine.get_stats(...).as_dict()``: JSON-ready sections).
#: ``stats(tenant_id)``: that tenant's statistics (``None``: the process totals).
StatsProvider = Callable[[str | None], Mapping[str, Any]]


class ToolError(Exception):
    """A tool could not do what the query asked; its message is reported to the caller."""


@dataclass(frozen=True, slots=True)
class SemanticHit:
    """A registered pattern close in meaning to a text.

    Attributes:
        definition: The pattern.
        score: Highest cosine similarity between the text and one of its examples, in [-1, 1].
        example: The example that scored highest.
    """

    definition: PatternDefinition
    score: float
    example: str


class PatternCatalog(Protocol):
    """What tools may read of the pattern registry (implemented by ``PatternRegistry``)."""

    @property
    def version(self) -> int:
        """Current registry version."""
        ...

    def definitions(self, pattern_type: PatternType | None = None) -> list[PatternDefinition]:
        """Registered definitions, priority descending then name."""
        ...

    async def semantic_neighbours(
        self, text: str, *, limit: int = 5, pattern_types: Sequence[PatternType] = ()
    ) -> list[SemanticHit]:
        """Patterns closest to ``text`` by their examples, best first."""
        ...


@dataclass(frozen=True, slots=True)
class ToolServices:
    """What tools may use besides the call itself (no database handles).

    Attributes:
        catalog: The pattern registry a tenant sees, by tenant id (read-only view: the
            tenant's own layer over the global registry, or the global one).
        health_probe: Async probe of the service's components.
        stats: Returns the engine statistics of a tenant (see :data:`StatsProvider`).
        embedder: The embedder of the service.
        tools: The tool registry itself (for ``run_tool``).
    """

    catalog: Callable[[str], PatternCatalog]
    health_probe: HealthProbe
    stats: StatsProvider
    embedder: Embedder
    tools: ToolRegistry


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The input of one tool invocation.

    Attributes:
        query: The caller's query, trimmed.
        subject: The query with the matched trigger text removed (may be empty).
        context: The caller's context (read-only).
        tenant_id: Caller tenant.
        services: See :class:`ToolServices`.
    """

    query: str
    subject: str
    context: Mapping[str, Any]
    tenant_id: str
    services: ToolServices


Tool = Callable[[ToolCall], Awaitable[Mapping[str, Any]]]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A registered tool.

    Attributes:
        name: Tool name, ``[a-z][a-z0-9_]{0,99}``.
        func: The async callable.
        description: One-line description.
        source: ``builtin`` or ``entry_point:<distribution or module>``.
    """

    name: str
    func: Tool
    description: str = ""
    source: str = "builtin"


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What running a tool produced.

    Attributes:
        success: The tool returned a JSON-compatible mapping.
        output: That mapping (``{}`` on failure).
        error: Error text on failure.
    """

    success: bool
    output: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None


class ToolRegistry:
    """Named async tools; names are unique, the first registration wins."""

    def __init__(self) -> None:
        self._tools: dict[str, ToolSpec] = {}

    def register(self, name: str, func: Tool, *, description: str = "", source: str = "builtin") -> None:
        """Register a tool.

        Args:
            name: ``[a-z][a-z0-9_]{0,99}``.
            func: ``async def tool(call: ToolCall) -> Mapping[str, Any]``.
            description: One-line description (default: first line of the docstring).
            source: Where it came from (reported by ``list_tools``).

        Raises:
            ValueError: Bad name, a name already taken, or ``func`` is not an async callable.
        """
        if not TOOL_NAME.fullmatch(name):
            raise ValueError(f"tool name {name!r} must match [a-z][a-z0-9_]{{0,99}}")
        if name in self._tools:
            raise ValueError(f"tool {name!r} is already registered")
        is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__)
        if not is_async:
            raise ValueError(f"tool {name!r} must be an async callable")
        if not description:
            lines = (inspect.getdoc(func) or "").strip().splitlines()
            description = lines[0] if lines else ""
        self._tools[name] = ToolSpec(name=name, func=func, description=description, source=source)

    def get(self, name: str) -> ToolSpec | None:
        """The tool of that name, or ``None``."""
        return self._tools.get(name)

    def names(self) -> list[str]:
        """Registered tool names, sorted."""
        return sorted(self._tools)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def specs(self) -> list[ToolSpec]:
        """Registered tools, sorted by name."""
        return [self._tools[n] for n in self.names()]

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Register every entry point of ``group`` as a tool named after the entry point.

        A failing entry point (import error, not an async callable, bad or taken
        name) is logged and skipped.

        Returns:
            Names of the tools loaded, in discovery order.
        """
        loaded: list[str] = []
        for ep in importlib.metadata.entry_points(group=group):
            dist = getattr(ep, "dist", None)
            origin = dist.name if dist is not None else ep.value
            try:
                func = ep.load()
                self.register(ep.name, func, source=f"entry_point:{origin}")
            except Exception:
                logger.exception("skipping tool entry point %r (%s) of group %s", ep.name, ep.value, group)
                continue
            loaded.append(ep.name)
        if loaded:
            logger.info("loaded %d tool(s) from entry points: %s", len(loaded), ", ".join(loaded))
        return loaded

    async def invoke(self, name: str, call: ToolCall) -> ToolOutcome:
        """Run a tool; never raises for a tool's own failure.

        Returns:
            A successful outcome with the tool's JSON-compatible result, or a
            failed one whose ``error`` is the tool's message (``ToolError``), the
            exception type and message (any other exception, also logged), or a
            note that the result was not a JSON-compatible mapping.
        """
        spec = self._tools.get(name)
        if spec is None:
            return ToolOutcome(False, error=f"unknown tool {name!r}; registered: {', '.join(self.names())}")
        try:
            output = await spec.func(call)
        except ToolError as exc:
            return ToolOutcome(False, error=str(exc))
        except Exception as exc:
            logger.exception("tool %s failed", name)
            return ToolOutcome(False, error=f"{type(exc).__name__}: {exc}")
        if not isinstance(output, Mapping):
            return ToolOutcome(False, error=f"tool {name!r} returned {type(output).__name__}, not a mapping")
        try:
            frozen = json_copy(output)
        except (TypeError, ValueError) as exc:
            return ToolOutcome(False, error=f"tool {name!r} returned a result that is not JSON-compatible: {exc}")
        return ToolOutcome(True, output=frozen)


class _NotPlain(Exception):
    """A value :func:`_plain_copy` leaves to the JSON round trip."""


_PLAIN_DEPTH = 64


def _plain_copy(value: Any, depth: int) -> Any:
    cls = value.__class__
    if cls is str or cls is int or cls is bool or value is None:
        return value
    if cls is float and math.isfinite(value):
        return value
    if depth < _PLAIN_DEPTH:
        if cls is dict:
            out = {}
            for key, item in value.items():
                if key.__class__ is not str:
                    raise _NotPlain
                out[key] = _plain_copy(item, depth + 1)
            return out
        if cls is list:
            return [_plain_copy(item, depth + 1) for item in value]
    raise _NotPlain


def json_copy(value: Mapping[str, Any]) -> Any:
    """A deep copy of ``value`` as JSON would return it, or the error JSON would raise.

    Same result as ``json.loads(json.dumps(value, allow_nan=False))``: a tool's
    result is checked and detached from anything the tool keeps. Values that
    are already plain JSON (``dict`` with ``str`` keys, ``list``, ``str``,
    ``int``, finite ``float``, ``bool``, ``None``, nested at most 64 deep) are
    copied directly, about five times faster; anything else (tuples, other
    keys, subclasses, non-finite floats, cycles) takes the round trip.

    Raises:
        TypeError, ValueError: ``value`` is not JSON-compatible.
    """
    try:
        return _plain_copy(value, 0)
    except _NotPlain:
        return json.loads(json.dumps(value, allow_nan=False))


def read_only(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only view of ``mapping`` (a shallow ``MappingProxyType``)."""
    return MappingProxyType(dict(mapping))
