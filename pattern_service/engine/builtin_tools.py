"""Built-in tools: health_check, service_stats, list_patterns, match_patterns, calculate, package_info,
run_tool, compare_texts.

Each does real work on real data (the original seed implementation returned a
placeholder dict and ran no tool). Tools that need an argument parse it from
the query with their own small grammar, or take it from the context.

Longer than this code base's ~400-line guide on purpose: eight small tools,
each a function with its grammar beside it; arithmetic in words and safe
evaluation are already their own modules (:mod:`.arithmetic_words`, :mod:`.calculator`).
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Mapping
from typing import Any

import cachetools
import numpy as np

from pattern_service.domain import PatternType
from pattern_service.engine.arithmetic_words import words_to_expression
from pattern_service.engine.calculator import CalculationError, count, evaluate, parse_count
from pattern_service.engine.tools import ToolCall, ToolError, ToolRegistry

_CALC_PREFIX = re.compile(r"^\s*(?:please\s+)?(?:calculate|compute|evaluate|what\s+is)\s*:?\s*", re.IGNORECASE)
_PACKAGE = re.compile(
    r"\b(?:install|setup|set\s+up|configure|init|initialize)\s+(?:the\s+)?(?:package\s+)?"
    r"([A-Za-z0-9][A-Za-z0-9._-]*)",
    re.IGNORECASE,
)
_NAME_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]|[A-Za-z0-9]")
#: Words that are never the package asked about ("is numpy available on this server").
_PACKAGE_FILLER = frozenset(
    [
        "a",
        "about",
        "all",
        "an",
        "and",
        "any",
        "anything",
        "are",
        "available",
        "be",
        "can",
        "check",
        "could",
        "current",
        "currently",
        "did",
        "do",
        "does",
        "dependency",
        "dependencies",
        "distribution",
        "do",
        "env",
        "environment",
        "exist",
        "exists",
        "find",
        "for",
        "get",
        "got",
        "have",
        "has",
        "here",
        "host",
        "i",
        "if",
        "in",
        "install",
        "installed",
        "installing",
        "init",
        "initialize",
        "is",
        "it",
        "its",
        "latest",
        "library",
        "libraries",
        "lib",
        "machine",
        "me",
        "module",
        "modules",
        "my",
        "need",
        "new",
        "newest",
        "of",
        "on",
        "or",
        "our",
        "package",
        "packages",
        "pip",
        "please",
        "present",
        "python",
        "running",
        "server",
        "set",
        "setup",
        "show",
        "system",
        "tell",
        "that",
        "the",
        "there",
        "these",
        "this",
        "to",
        "up",
        "us",
        "use",
        "using",
        "venv",
        "version",
        "versions",
        "want",
        "we",
        "what",
        "whether",
        "which",
        "with",
        "you",
        "your",
        "configure",
        "configured",
        "available",
    ]
)
_RUN_TOOL = re.compile(
    r"\b(?:run|execute|call|invoke)\s+(?:the\s+|an?\s+)?(?:mcp\s+)?(?:tool|function)\s+(?:named\s+|called\s+)?"
    r"([A-Za-z][A-Za-z0-9_]*)\s*(.*)$",
    re.IGNORECASE | re.DOTALL,
)
#: Words that join a tool's name to its input ("run tool calculate with 3 * 9", "call calculate on 12 / 4").
_INPUT_JOIN = re.compile(r"^(?:with|on|for|using|over|of)\s+", re.IGNORECASE)
#: Phrasings of "compare A with B", tried in order; each captures A and B.
_COMPARE = tuple(
    re.compile(p, re.IGNORECASE | re.DOTALL)
    for p in (
        r"\b(?:compare|contrast)\s+(.+?)\s+(?:with|to|against|and|versus|vs\.?)\s+(.+)$",
        r"\bdifferences?\s+between\s+(.+?)\s+and\s+(.+)$",
        r"\b(?:does|do|is|are)\s+(.+?)\s+(?:differ|different|compare)\s+(?:from|to|than|with)\s+(.+)$",
        r"\b(?:separates?|distinguish(?:es)?|differentiates?)\s+(.+?)\s+from\s+(.+)$",
        r"\b(?:trade-?offs?|pros\s+and\s+cons)\s+(?:between|of)\s+(.+?)\s+(?:and|versus|vs\.?)\s+(.+)$",
        r"\bhow\s+(?:do|does)\s+(.+?)\s+and\s+(.+?)\s+(?:differ|compare)\b",
        r"\b(?:does|do)\s+(.+?)\s+stack\s+up\s+(?:against|to|with)\s+(.+)$",
        r"\b(?:weigh|stack\s+up|pit|measure)\s+(.+?)\s+(?:against|with|versus|vs\.?)\s+(.+)$",
        r"\bput\s+(.+?)\s+and\s+(.+?)\s+side\s+by\s+side\b",
        r"\b(?:better|pick|choose|prefer|go\s+with)\b[^,]*?,?\s+(.+?)\s+or\s+(.+)$",
        r"^(?:\w+\s+)*?(.+?)\s+(?:versus|vs\.?)\s+(.+)$",
    )
)
_LEAD_ARTICLE = re.compile(r"^(?:the|a|an)\s+", re.IGNORECASE)
#: Words naming the kind of thing run, around a tool's name ("the calculate tool", "the list patterns helper").
_TOOL_WORDS = frozenset(
    {"tool", "tools", "function", "helper", "mcp", "command", "the", "a", "an", "with", "on", "for"}
)
_WORD = re.compile(r"[a-z0-9]+")
_STRIP = "\"'“”‘’ .?!"
RUN_TOOL_NAME = "run_tool"


async def health_check(call: ToolCall) -> Mapping[str, Any]:
    """Report each of the service's components' health from a recent probe.

    The probe is the health monitor's (refreshed in the background, see
    :class:`~pattern_service.health.ProbeCache`); ``info`` carries when it ran
    (``probed_at``) and its age (``probe_age_seconds``, at most about a second).
    """
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
    """List the definitions the caller's tenant sees, optionally of one type (context.pattern_type or a type word)."""
    ptype = _type_filter(call)
    catalog = call.services.catalog(call.tenant_id)
    defs = catalog.definitions(ptype)
    return {
        "pattern_type": ptype.value if ptype else None,
        "registry_version": catalog.version,
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
    """Rank the patterns the caller's tenant sees by meaning: cosine of the subject against each pattern's examples."""
    text = call.subject or call.query
    limit = call.context.get("limit", 5)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100:
        raise ToolError("context.limit must be an integer in 1..100")
    hits = await call.services.catalog(call.tenant_id).semantic_neighbours(text, limit=limit)
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
    """Evaluate arithmetic safely (symbols or words: "17 times 23", "2 to the power of 10"), or count
    words/characters/letters/lines in a text ("this sentence" counts the query itself)."""
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
        spoken = words_to_expression(expression)
        try:
            value = evaluate(spoken)
        except CalculationError:
            # Arithmetic inside a longer request ("as the billing agent, compute 19.99 * 12"): the
            # longest span of numbers and operators that evaluates.
            found = arithmetic_span(spoken)
            if found is None:
                raise ToolError(f"cannot calculate: {exc}") from None
            spoken, value = found
        expression = spoken
    return {"operation": "arithmetic", "expression": expression.strip(), "result": value}


_SPAN = re.compile(r"[-(]*\d[\d\s.+\-*/%()]*")


def arithmetic_span(text: str) -> tuple[str, float | int] | None:
    """The longest substring of ``text`` made of numbers and operators that evaluates, with its value."""
    spans = sorted((m.group(0).strip() for m in _SPAN.finditer(text)), key=len, reverse=True)
    for span in spans:
        if not any(op in span for op in "+-*/%") and len(spans) > 1:
            continue  # a lone number beside other numbers is not the calculation asked for
        try:
            return span, evaluate(span)
        except CalculationError:
            continue
    return None


#: Seconds a package lookup is reused: ``importlib.metadata`` scans every ``sys.path`` entry on the
#: event loop for each lookup (``package_info`` made several per call: 0.2-0.3x echo uncached).
PACKAGE_LOOKUP_TTL = 30.0


@cachetools.cached(cachetools.TTLCache(maxsize=1024, ttl=PACKAGE_LOOKUP_TTL))
def package_facts(name: str) -> Mapping[str, str] | None:
    """Name, version, summary and ``Requires-Python`` of installed distribution ``name``, or ``None``.

    Looked up with :mod:`importlib.metadata` and reused for :data:`PACKAGE_LOOKUP_TTL` seconds (an
    install or removal shows after that at the latest). Invalid names count as not installed.
    """
    try:
        dist = importlib.metadata.distribution(name)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None
    meta = dist.metadata
    return {
        "distribution": meta["Name"],
        "version": dist.version,
        "summary": meta["Summary"] or "",
        "requires_python": meta["Requires-Python"] or "",
    }


def _installed(name: str) -> bool:
    return package_facts(name) is not None


def package_in(query: str) -> str | None:
    """The package a query asks about, or ``None``.

    "install X" / "set up X" name it directly. Otherwise every word that is not
    filler ("is numpy available on this server", "which version of grpcio do
    we have", "do we have the pyyaml package") is a candidate: the first one
    that is an installed distribution wins, else the first candidate (reported
    as not installed).
    """
    m = _PACKAGE.search(query)
    if m is not None and m.group(1).lower() not in _PACKAGE_FILLER:
        return m.group(1)
    candidates = [t for t in _NAME_TOKEN.findall(query) if t.lower() not in _PACKAGE_FILLER]
    for token in candidates:
        if _installed(token):
            return token
    return candidates[0] if candidates else None


async def package_info(call: ToolCall) -> Mapping[str, Any]:
    """Report whether a Python distribution is installed and its version (never installs anything)."""
    name = call.context.get("package")
    if not isinstance(name, str) or not name.strip():
        name = package_in(call.query)
        if name is None:
            raise ToolError("name a package, e.g. 'is numpy installed' or context.package")
    name = name.strip().rstrip(".,;:")
    facts = package_facts(name)
    if facts is None:
        return {"package": name, "installed": False, "version": None, "action": "none (reported only)"}
    return {"package": name, "installed": True, **facts, "action": "none (reported only)"}


def _same_word(word: str, part: str) -> bool:
    """``word`` names ``part`` of a tool name: equal, or the same stem ("calculator" / "calculate")."""
    return word == part or (len(part) >= 5 and len(word) >= 5 and word[:5] == part[:5])


def tool_named_in(query: str, names: list[str]) -> tuple[str, str] | None:
    """The registered tool a query names in words, and the text after it.

    "invoke the calculate tool on 6 * 7" → ``("calculate", "6 * 7")``; "launch the
    list patterns helper" → ``("list_patterns", "")``. A tool's name matches as its
    words in order (underscores as spaces, a shared 5-letter stem counts); the
    longest name wins. Words such as "tool", "function", "helper" after it are dropped.
    """
    tokens = list(re.finditer(r"[A-Za-z0-9_]+", query))
    words = [t.group().lower() for t in tokens]
    best: tuple[int, str, int] | None = None
    for name in names:
        parts = name.split("_")
        for i in range(len(words) - len(parts) + 1):
            if words[i] == name or all(_same_word(words[i + k], p) for k, p in enumerate(parts)):
                size = 1 if words[i] == name else len(parts)
                if best is None or len(parts) > len(best[1].split("_")):
                    best = (i, name, size)
                break
    if best is None:
        return None
    i, name, size = best
    j = i + size
    while j < len(words) and words[j] in _TOOL_WORDS:
        j += 1
    rest = query[tokens[j].start() :].strip() if j < len(tokens) else ""
    return name, rest


async def run_tool(call: ToolCall) -> Mapping[str, Any]:
    """Run the registered tool named in the query ("run tool X ...", "use the X tool on ...") or in context.tool.

    A query that names no registered tool ("trigger a registered tool for me")
    is answered with the tools it could run (``ran`` false), not an error.
    """
    name = call.context.get("tool")
    rest = call.subject
    if not isinstance(name, str) or not name:
        m = _RUN_TOOL.search(call.query)
        named = (m.group(1).lower(), m.group(2).strip()) if m is not None else None
        if named is None or named[0] not in call.services.tools:
            others = [n for n in call.services.tools.names() if n != RUN_TOOL_NAME]
            named = tool_named_in(call.query, others) or named
        if named is None:
            return {
                "tool": None,
                "ran": False,
                "registered": [
                    {"name": spec.name, "description": spec.description}
                    for spec in call.services.tools.specs()
                    if spec.name != RUN_TOOL_NAME
                ],
                "hint": "name one to run it, e.g. 'run the calculate tool on 6 * 7'",
            }
        name, rest = named
        rest = _INPUT_JOIN.sub("", rest)
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
        if not rest:  # named without input ("use the calculator function"): say what it needs
            spec = call.services.tools.get(name)
            return {
                "tool": name,
                "ran": False,
                "description": spec.description if spec is not None else "",
                "needs": f"input: {outcome.error}",
            }
        raise ToolError(f"tool {name!r} failed: {outcome.error}")
    return {"tool": name, "ran": True, "output": dict(outcome.output)}


async def compare_texts(call: ToolCall) -> Mapping[str, Any]:
    """Cosine similarity of two texts ("compare A with/to/against B", or context.a / context.b) by the embedder."""
    a, b = call.context.get("a"), call.context.get("b")
    if not (isinstance(a, str) and isinstance(b, str) and a.strip() and b.strip()):
        found = next((m for m in (p.search(call.query) for p in _COMPARE) if m is not None), None)
        if found is None:
            raise ToolError("say what to compare: 'compare A with B' (or context.a and context.b)")
        a, b = found.group(1), found.group(2)
    a, b = _LEAD_ARTICLE.sub("", a.strip(_STRIP)), _LEAD_ARTICLE.sub("", b.strip(_STRIP))
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
