"""Request sets of the benchmark scenarios (serialized protobuf, sent as raw bytes by the load generator)."""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf import struct_pb2

from bench.corpus import item, query_texts
from tmws.pattern.v1 import pattern_execution_service_pb2 as pe
from tmws.pattern.v1 import pattern_learning_service_pb2 as pl

EXEC = "/tmws.pattern.v1.PatternExecutionService/"
LEARN = "/tmws.pattern.v1.PatternLearningService/"
CACHE_POOL = 16
WRITE_TENANT = "bench-writes"


@dataclass(frozen=True)
class Scenario:
    """One row family of the main table.

    Attributes:
        name: Scenario name (the JSON key).
        method: Short RPC name (``Execute``, ``Route``, ``MatchPatterns``, ``ExecuteMany``, ``RegisterBatch``).
        kind: ``unary`` or ``stream``.
        weight: ``fast`` (sub-millisecond server work), ``slow`` (model inference, search, SQL) or ``batch``.
        unique: Every request is used once (no cache, no embedding-cache reuse).
        metadata: Extra request metadata.
        description: What it measures.
    """

    name: str
    method: str
    kind: str
    weight: str
    unique: bool
    description: str
    metadata: tuple[tuple[str, str], ...] = field(default=())
    levels: tuple[int, ...] = ()

    @property
    def path(self) -> str:
        """Full method path."""
        return (LEARN if self.method in LEARNING_METHODS else EXEC) + self.method


#: Methods of ``PatternLearningService`` among the scenarios.
LEARNING_METHODS = frozenset({"MatchPatterns", "CreateSuccessPattern"})
#: The one recall query of ``execute_recall_repeated`` (its embedding is cached after the first call).
REPEATED_RECALL = "recall memories about slow database queries in the billing service"
#: One query per built-in tool, run uncached (``use_cache=false``) at concurrency 8. Tools without a
#: pattern of their own in the default set (or whose pattern is hybrid, adding a memory operation) are
#: reached through ``run_tool`` (pattern ``execute_mcp_tool``), so the row measures the tool itself.
TOOL_QUERIES: dict[str, tuple[str, str]] = {
    "health_check": ("how healthy is the system", "health_check"),
    "calculate": ("calculate 17 * 7 + 3", "quick_calculation"),
    "package_info": ("is numpy available on this server", "system_command"),
    "run_tool": ("execute tool calculate with 3 * 9", "execute_mcp_tool"),
    "service_stats": ("run the mcp tool named service_stats", "execute_mcp_tool"),
    "list_patterns": ("run the tool list_patterns", "execute_mcp_tool"),
    "match_patterns": ("invoke tool match_patterns on slow database reads", "execute_mcp_tool"),
    "compare_texts": ("invoke the compare_texts tool on redis versus memcached", "execute_mcp_tool"),
}


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "execute_cache_hit", "Execute", "unary", "fast", False, "Execute, result cache hit (calculate, 16 queries)"
    ),
    Scenario(
        "execute_infrastructure", "Execute", "unary", "fast", False, "Execute uncached: built-in tool (calculate)"
    ),
    Scenario("execute_memory_recall", "Execute", "unary", "slow", True, "Execute uncached: memory recall"),
    Scenario(
        "execute_memory_store",
        "Execute",
        "unary",
        "slow",
        True,
        "Execute: memory store (a write: SQL + embed + index)",
        (("x-tenant-id", WRITE_TENANT),),
    ),
    Scenario("execute_hybrid", "Execute", "unary", "slow", True, "Execute uncached: hybrid (match_patterns + recall)"),
    Scenario(
        "execute_recall_repeated",
        "Execute",
        "unary",
        "fast",
        False,
        "Execute: memory recall, one repeated query, use_cache=false (query embedding cached: no model run)",
    ),
    Scenario(
        "create_success_pattern",
        "CreateSuccessPattern",
        "unary",
        "slow",
        True,
        "CreateSuccessPattern (a write: SQL + embed + index)",
        (("x-tenant-id", WRITE_TENANT),),
    ),
    Scenario("route", "Route", "unary", "fast", False, "Route (match cache warm, 16 queries)"),
    Scenario("match_patterns", "MatchPatterns", "unary", "slow", True, "MatchPatterns, limit 10, fresh intents"),
    Scenario("execute_many_cache_hit", "ExecuteMany", "stream", "fast", False, "ExecuteMany, cache hits (msgs/s)"),
    *(
        Scenario(
            f"tool_{tool}",
            "Execute",
            "unary",
            "fast",
            False,
            f"Execute uncached: built-in tool {tool} ({query!r})",
            levels=(8,),
        )
        for tool, (query, _) in TOOL_QUERIES.items()
    ),
    # Last: it adds 1,000 definitions to the registry the other scenarios route over (and list_patterns lists).
    Scenario("register_batch_1000", "RegisterBatch", "unary", "batch", False, "RegisterBatch of 1,000 definitions"),
)


def _cache_queries() -> list[str]:
    return [f"calculate {i} * 7 + 3" for i in range(CACHE_POOL)]


def execute(query: str, *, use_cache: bool | None = None, mode: int = 0) -> bytes:
    """A serialized ``ExecuteRequest``."""
    req = pe.ExecuteRequest(query=query, execution_mode=mode)  # type: ignore[arg-type]
    if use_cache is not None:
        req.use_cache = use_cache
    return req.SerializeToString()


def create_success_pattern(k: int, text: str) -> bytes:
    """A serialized ``CreateSuccessPatternRequest`` (one embedding of name + description per write)."""
    pattern = pl.SuccessPattern(
        pattern_type="workflow", name=f"bench success {k}", description=text, tags=["bench", f"k{k % 16}"]
    )
    return pl.CreateSuccessPatternRequest(success_pattern=pattern).SerializeToString()


def synthetic_definition(i: int, prefix: str = "bench_pattern") -> pe.PatternDefinition:
    """Definition ``i``: an infrastructure pattern (tool ``calculate``) with a unique trigger word ``zq<i>x``."""
    metadata = struct_pb2.Struct()
    metadata.update({"tool": "calculate", "category": "bench"})
    return pe.PatternDefinition(
        name=f"{prefix}_{i:05d}",
        pattern_type=pe.PATTERN_TYPE_INFRASTRUCTURE,
        trigger_pattern=rf"\bzq{i}x\b",
        cost_tokens=10,
        priority=1,
        cache_ttl=60,
        metadata=metadata,
        description=f"Synthetic benchmark pattern {i}",
        examples=[item(i).description],
    )


def register_batch(start: int, stop: int, prefix: str = "bench_pattern") -> bytes:
    """A serialized ``RegisterBatchRequest`` of definitions ``start .. stop - 1``."""
    req = pe.RegisterBatchRequest(pattern_definitions=[synthetic_definition(i, prefix) for i in range(start, stop)])
    return req.SerializeToString()


def requests_for(scenario: Scenario, pool: int) -> list[bytes]:
    """The request pool of ``scenario`` (``pool`` requests for unique scenarios)."""
    name = scenario.name
    if name == "execute_cache_hit":
        return [execute(q) for q in _cache_queries()]
    if name == "execute_infrastructure":
        return [execute(q, use_cache=False) for q in _cache_queries()]
    if name == "execute_memory_recall":
        return [execute(f"recall memories about {q}", use_cache=False) for q in query_texts(pool, seed=11)]
    if name == "execute_memory_store":
        return [execute(f"store note {k}: {q}") for k, q in enumerate(query_texts(pool, seed=12))]
    if name == "execute_hybrid":
        return [execute(f"find similar {q}", use_cache=False) for q in query_texts(pool, seed=13)]
    if name == "execute_recall_repeated":
        return [execute(REPEATED_RECALL, use_cache=False)]
    if name == "create_success_pattern":
        return [create_success_pattern(k, q) for k, q in enumerate(query_texts(pool, seed=15))]
    if name.startswith("tool_"):
        return [execute(TOOL_QUERIES[name.removeprefix("tool_")][0], use_cache=False)]
    if name == "route":
        return [
            pe.RouteRequest(query=f"find similar optimization cases for team {i}").SerializeToString()
            for i in range(CACHE_POOL)
        ]
    if name == "match_patterns":
        return [pl.MatchPatternsRequest(intent=q, limit=10).SerializeToString() for q in query_texts(pool, seed=14)]
    if name == "execute_many_cache_hit":
        queries = _cache_queries()
        return [
            pe.ExecuteManyRequest(request_id=f"r{i}", query=queries[i % len(queries)]).SerializeToString()
            for i in range(4096)
        ]
    if name == "register_batch_1000":
        return [register_batch(0, 1000, prefix="bench_batch")]
    raise ValueError(name)


def stream_requests(queries: list[str], n: int = 4096) -> list[bytes]:
    """``ExecuteMany`` requests cycling over ``queries`` with unique request ids."""
    return [
        pe.ExecuteManyRequest(request_id=f"r{i}", query=queries[i % len(queries)]).SerializeToString() for i in range(n)
    ]


def cache_queries() -> list[str]:
    """The 16 cache-hit queries."""
    return _cache_queries()
