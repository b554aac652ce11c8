"""Built-in tools: health_check, service_stats, list_patterns, match_patterns, calculate, package_info,
run_tool, compare_texts.

Each does real work on real data (the original seed implementation returned a
placeholder dict and ran no tool). Tools that need an argument parse it from
the query with their own small grammar, or take it from the context.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from pattern_service.domain import PatternType
from pattern_service.engine.calculator import CalculationError, count, evaluate, parse_count
from pattern_service.engine.tools import ToolCall, ToolError, ToolRegistry

_CALC_PREFIX = re.compile(r"^\s*(?:please\s+)?(?:calculate|compute|evaluate|what\s+is)\s*:?\s*", re.IGNORECASE)
_PACKAGE = re.compile(
    r"\b(?:install|setup|set\s+up|configure|init|initialize)\s+(?:the\s+)?(?:package\s+)?"
    r"([A-Za-z0-9][A-Za-z0-9._-]*)",
    re.IGNORECASE,
)
_RUN_TOOL = re.compile(
    r"\b(?:run|execute|call)\s+(?:the\s+|an?\s+)?(?:tool|mcp|function)\s+([A-Za-z][A-Za-z0-9_]*)\s*(.*)$",
    re.IGNORECASE | re.DOTALL,
)
_COMPARE = re.compile(r"\bcompare\s+(.+?)\s+(?:with|to|against|and)\s+(.+)$", re.IGNORECASE | re.DOTALL)
_WORD = re.compile(r"[a-z0-9]+")
_STRIP = "\"'“”‘’ .?!"
RUN_TOOL_NAME = "run_tool"


async def health_check(call: ToolCall) -> Mapping[str, Any]:
    """Probe the service's components and report each one's health."""
    probe = await call.services.health_probe()
    components: dict[str, dict[str, Any]] = {}
    info: dict[str, Any] = {}
    for name, detail in probe.items():
        if isinstance(detail, bool):
            components[name] = {"healthy": detail}
        elif isinstance(detail, Mapping):
            components[name] = {"healthy": bool(detail.get("healthy", "error" not in detail)), **detail}
        else:
            info[name] = detail
    healthy = all(c["healthy"] for c in components.values())
    status = "SERVING" if healthy else "NOT_SERVING"
    return {"healthy": healthy, "status": status, "components": components, "info": info}


async def service_stats(call: ToolCall) -> Mapping[str, Any]:
    """Report the caller tenant's engine, router and cache statistics and the shared registry's.

    Scoped like ``GetStats``: another tenant's activity never shows, not even in totals.
    """
    return dict(call.services.stats(call.tenant_id))


def _type_filter(call: ToolCall) -> PatternType | None:
    wanted = call.context.get("pattern_type")
    if isinstance(wanted, str):
        try:
            return PatternType(wanted.lower())
        except ValueError:
            raise ToolError(f"context.pattern_type must be one of {[t.value for t in PatternType]}") from None
    words = set(_WORD.findall(call.query.lower()))
    hits = [t for t in PatternType if t.value in words]
    return hits[0] if len(hits) == 1 else None


async def list_patterns(call: ToolCall) -> Mapping[str, Any]:
    """List the registered pattern definitions, optionally of one type (context.pattern_type or a type word)."""
    ptype = _type_filter(call)
    defs = call.services.catalog.definitions(ptype)
    return {
        "pattern_type": ptype.value if ptype else None,
        "registry_version": call.services.catalog.version,
        "count": len(defs),
        "patterns": [
            {
                "name": d.name,
                "pattern_type": d.pattern_type.value,
                "trigger_pattern": d.trigger_pattern,
                "priority": d.priority,
                "cost_tokens": d.cost_tokens,
                "cache_ttl": d.cache_ttl,
                "description": d.description,
                "tool": d.tool,
                "operation": d.operation.value if d.operation else None,
            }
            for d in defs
        ],
    }


async def match_patterns(call: ToolCall) -> Mapping[str, Any]:
    """Rank registered patterns by meaning: cosine of the subject against each pattern's examples."""
    text = call.subject or call.query
    limit = call.context.get("limit", 5)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100:
        raise ToolError("context.limit must be an integer in 1..100")
    hits = await call.services.catalog.semantic_neighbours(text, limit=limit)
    return {
        "text": text,
        "model": call.services.embedder.model_id,
        "matches": [
            {
                "name": h.definition.name,
                "pattern_type": h.definition.pattern_type.value,
                "score": round(h.score, 6),
                "closest_example": h.example,
            }
            for h in hits
        ],
    }


async def calculate(call: ToolCall) -> Mapping[str, Any]:
    """Evaluate arithmetic safely, or count words/characters/letters/lines in a text."""
    counted = parse_count(call.query)
    if counted is not None:
        unit, text = counted
        return {"operation": f"count_{unit}", "text": text, "result": count(unit, text)}
    expression = call.context.get("expression")
    if not isinstance(expression, str):
        expression = _CALC_PREFIX.sub("", call.query, count=1).rstrip(" ?=")
    try:
        value = evaluate(expression)
    except CalculationError as exc:
        raise ToolError(f"cannot calculate: {exc}") from None
    return {"operation": "arithmetic", "expression": expression.strip(), "result": value}


async def package_info(call: ToolCall) -> Mapping[str, Any]:
    """Report whether a Python distribution is installed and its version (never installs anything)."""
    name = call.context.get("package")
    if not isinstance(name, str) or not name.strip():
        m = _PACKAGE.search(call.query)
        if m is None:
            raise ToolError("name a package, e.g. 'install numpy' or context.package")
        name = m.group(1)
    name = name.strip().rstrip(".,;:")
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return {"package": name, "installed": False, "version": None, "action": "none (reported only)"}
    meta = dist.metadata
    return {
        "package": name,
        "installed": True,
        "distribution": meta["Name"],
        "version": dist.version,
        "summary": meta["Summary"] or "",
        "requires_python": meta["Requires-Python"] or "",
        "action": "none (reported only)",
    }


async def run_tool(call: ToolCall) -> Mapping[str, Any]:
    """Run the registered tool named in the query ("run tool X ...") or in context.tool."""
    name = call.context.get("tool")
    rest = call.subject
    if not isinstance(name, str) or not name:
        m = _RUN_TOOL.search(call.query)
        if m is None:
            raise ToolError(f"name a tool to run; registered: {', '.join(call.services.tools.names())}")
        name, rest = m.group(1).lower(), m.group(2).strip()
    if name == RUN_TOOL_NAME:
        raise ToolError("run_tool cannot run itself")
    if name not in call.services.tools:
        raise ToolError(f"unknown tool {name!r}; registered: {', '.join(call.services.tools.names())}")
    context = {k: v for k, v in call.context.items() if k != "tool"}
    inner = ToolCall(
        query=rest or call.query, subject=rest, context=context, tenant_id=call.tenant_id, services=call.services
    )
    outcome = await call.services.tools.invoke(name, inner)
    if not outcome.success:
        raise ToolError(f"tool {name!r} failed: {outcome.error}")
    return {"tool": name, "output": dict(outcome.output)}


async def compare_texts(call: ToolCall) -> Mapping[str, Any]:
    """Cosine similarity of two texts ("compare A with/to/against B", or context.a / context.b) by the embedder."""
    a, b = call.context.get("a"), call.context.get("b")
    if not (isinstance(a, str) and isinstance(b, str) and a.strip() and b.strip()):
        m = _COMPARE.search(call.query)
        if m is None:
            raise ToolError("say what to compare: 'compare A with B' (or context.a and context.b)")
        a, b = m.group(1), m.group(2)
    a, b = a.strip(_STRIP), b.strip(_STRIP)
    vectors = await call.services.embedder.embed([a, b])
    similarity = float(np.dot(vectors[0], vectors[1]))
    words_a, words_b = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
    union = words_a | words_b
    return {
        "a": a,
        "b": b,
        "similarity": round(similarity, 6),
        "model": call.services.embedder.model_id,
        "shared_terms": sorted(words_a & words_b),
        "term_overlap": round(len(words_a & words_b) / len(union), 6) if union else 0.0,
    }


BUILTIN_TOOLS = {
    "health_check": health_check,
    "service_stats": service_stats,
    "list_patterns": list_patterns,
    "match_patterns": match_patterns,
    "calculate": calculate,
    "package_info": package_info,
    RUN_TOOL_NAME: run_tool,
    "compare_texts": compare_texts,
}


def register_builtin_tools(registry: ToolRegistry) -> None:
    """Register every built-in tool of :data:`BUILTIN_TOOLS` in ``registry``."""
    for name, func in BUILTIN_TOOLS.items():
        registry.register(name, func)
