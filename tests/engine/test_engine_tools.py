"""Built-in tools doing real work, the tool registry, and third-party tools from entry points."""

from __future__ import annotations

import asyncio
import collections
import importlib
import importlib.metadata
import json
import logging
import pathlib
import sys
import textwrap
from typing import Any

import pytest
from eng_helpers import EngBuilder, eng_definition

from pattern_service.domain import ExecutionMode
from pattern_service.engine import PatternExecutionEngine, ToolRegistry
from pattern_service.engine.calculator import CalculationError, evaluate
from pattern_service.engine.tools import json_copy
from pattern_service.health import ProbeCache


async def _tool(engine: PatternExecutionEngine, query: str, **ctx: object) -> dict[str, Any]:
    r = await engine.execute(query, context=ctx, use_cache=False)
    assert r.metadata["parts"] == ["infrastructure"], r
    part = r.result["infrastructure"]
    return dict(part)


@pytest.mark.parametrize(
    ("expr", "value"),
    [("(2 + 3) * 4 ** 2", 80), ("7 // 2 + 7 % 2", 4), ("-3 ^ 2", -9), ("10 / 4", 2.5), ("2 ** -1", 0.5)],
)
def test_calculator_evaluates(expr: str, value: float) -> None:
    assert evaluate(expr) == value


@pytest.mark.parametrize(
    "expr", ["__import__('os')", "2 ** 100000", "1 / 0", "x + 1", "9 ** 999 ** 2", "1" * 201, "", "[1, 2]"]
)
def test_calculator_refuses(expr: str) -> None:
    with pytest.raises(CalculationError):
        evaluate(expr)


async def test_calculate_tool(eng_engine: PatternExecutionEngine) -> None:
    part = await _tool(eng_engine, "calculate (17 * 23) - 1")
    assert part["success"] and part["output"] == {
        "operation": "arithmetic",
        "expression": "(17 * 23) - 1",
        "result": 390,
    }
    words = await _tool(eng_engine, "count words in 'the quick brown fox'")
    assert words["output"] == {"operation": "count_words", "text": "the quick brown fox", "result": 4}
    chars = await _tool(eng_engine, "count characters in hello")
    assert chars["output"]["result"] == 5
    bad = await eng_engine.execute("calculate import os", use_cache=False)
    assert not bad.success and "cannot calculate" in (bad.error or "")


async def test_package_info_tool(eng_engine: PatternExecutionEngine) -> None:
    part = await _tool(eng_engine, "install numpy")
    out = part["output"]
    assert out["installed"] is True and out["version"] == importlib.metadata.version("numpy")
    missing = await _tool(eng_engine, "setup surely-not-a-real-distribution-xyz")
    assert missing["output"]["installed"] is False and missing["output"]["version"] is None


async def test_run_tool_tool(eng_engine: PatternExecutionEngine) -> None:
    part = await _tool(eng_engine, "run tool calculate 6 * 7")
    assert part["output"] == {
        "tool": "calculate",
        "ran": True,
        "output": {"operation": "arithmetic", "expression": "6 * 7", "result": 42},
    }
    via_ctx = await _tool(eng_engine, "call function please", tool="list_patterns", pattern_type="memory")
    assert via_ctx["output"]["tool"] == "list_patterns" and via_ctx["output"]["output"]["count"] == 4
    for query in ("run tool run_tool", "run tool nope"):
        r = await eng_engine.execute(query, use_cache=False)
        assert not r.success and ("cannot run itself" in (r.error or "") or "unknown tool" in (r.error or ""))


async def test_compare_texts_tool(eng_engine: PatternExecutionEngine) -> None:
    r = await eng_engine.execute("compare redis caching with memcached caching", execution_mode=ExecutionMode.FAST)
    out = r.result["infrastructure"]["output"]
    assert out["a"] == "redis caching" and out["b"] == "memcached caching"
    vectors = await eng_engine.registry._embedder.embed(["redis caching", "memcached caching"])
    assert out["similarity"] == pytest.approx(float(vectors[0] @ vectors[1]), abs=1e-5)
    assert out["shared_terms"] == ["caching"]


async def test_health_stats_list_and_match_tools(eng_engine: PatternExecutionEngine) -> None:
    health = await _tool(eng_engine, "check health")
    assert health["output"]["healthy"] is True
    assert health["output"]["components"]["memory_store"]["healthy"] is True
    stats = (await eng_engine.execute("summarize all memories", use_cache=False)).result["infrastructure"]
    assert set(stats["output"]) == {"engine", "registry", "router", "cache"}
    matches = (await eng_engine.execute("find similar notes about the weather", use_cache=False)).result
    ranked = matches["infrastructure"]["output"]["matches"]
    assert ranked and [m["score"] for m in ranked] == sorted((m["score"] for m in ranked), reverse=True)


def test_registry_rejects_bad_tools() -> None:
    tools = ToolRegistry()

    def sync_tool(call: object) -> dict[str, object]:
        return {}

    async def ok(call: object) -> dict[str, object]:
        return {}

    with pytest.raises(ValueError, match="async"):
        tools.register("sync_tool", sync_tool)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must match"):
        tools.register("Bad Name", ok)
    tools.register("ok", ok)
    with pytest.raises(ValueError, match="already"):
        tools.register("ok", ok)


def _install_plugin(root: pathlib.Path) -> None:
    (root / "eng_plugin_tools.py").write_text(
        textwrap.dedent(
            '''
            async def word_stats(call):
                """Count the words of the subject."""
                words = call.subject.split()
                return {"words": len(words), "longest": max(words, key=len) if words else None}

            def not_async(call):
                return {}
            '''
        )
    )
    info = root / "eng_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: eng-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[tmws.tools]\n"
        "word_stats = eng_plugin_tools:word_stats\n"
        "broken = eng_plugin_tools:does_not_exist\n"
        "sync_one = eng_plugin_tools:not_async\n"
        "missing_module = eng_no_such_module:tool\n"
    )


async def test_entry_point_tools_load_and_run(
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    eng_build: EngBuilder,
) -> None:
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    _install_plugin(plugin)
    monkeypatch.syspath_prepend(str(plugin))
    importlib.invalidate_caches()
    tools = ToolRegistry()
    with caplog.at_level(logging.ERROR):
        assert tools.load_entry_points() == ["word_stats"]
    skipped = " ".join(r.getMessage() for r in caplog.records)
    assert "broken" in skipped and "sync_one" in skipped and "missing_module" in skipped
    spec = tools.get("word_stats")
    assert spec is not None and spec.source == "entry_point:eng-plugin"
    assert spec.description == "Count the words of the subject."

    engine = await eng_build(load_defaults=False, load_entry_point_tools=True)
    assert "word_stats" in engine.tools
    await engine.register_batch(
        [eng_definition("wordy", trigger_pattern=r"\bwordy\b", metadata={"tool": "word_stats"})]
    )
    r = await engine.execute("wordy alpha beta gamma")
    assert r.success and r.result["infrastructure"]["output"] == {"words": 3, "longest": "alpha"}
    sys.modules.pop("eng_plugin_tools", None)


def _round_trip(value: Any) -> Any:
    return json.loads(json.dumps(value, allow_nan=False))


def _deep(levels: int) -> dict[str, Any]:
    top: dict[str, Any] = {}
    node = top
    for _ in range(levels):
        node["x"] = {}
        node = node["x"]
    return top


@pytest.mark.parametrize(
    "value",
    [
        {"operation": "arithmetic", "expression": "3 * 7 + 3", "result": 24},
        {"a": [1, 2.5, None, True, "x", {"b": []}], "big": 1e308},
        {"tuple": (1, 2), "ordered": collections.OrderedDict(a=1)},
        {1: "int key", None: 1, 2.5: 2},
        _deep(100),
    ],
)
def test_json_copy_equals_the_json_round_trip(value: dict[Any, Any]) -> None:
    copied = json_copy(value)
    assert copied == _round_trip(value)
    assert copied is not value


@pytest.mark.parametrize("bad", [{"n": float("nan")}, {"i": float("-inf")}, {"o": object()}, {"b": b"x"}])
def test_json_copy_refuses_what_json_refuses(bad: dict[str, Any]) -> None:
    with pytest.raises((TypeError, ValueError)):
        json_copy(bad)
    with pytest.raises((TypeError, ValueError)):
        _round_trip(bad)


def test_json_copy_detaches_nested_values() -> None:
    inner = {"k": [1, 2]}
    copied = json_copy({"inner": inner})
    inner["k"].append(3)
    assert copied == {"inner": {"k": [1, 2]}}


async def test_probe_cache_reuses_a_recent_probe_and_joins_a_running_one() -> None:
    """ProbeCache: one probe per max_age window, concurrent readers share one probe, max_age 0 always probes."""
    calls = 0
    gate = asyncio.Event()

    async def probe() -> dict[str, object]:
        nonlocal calls
        calls += 1
        await gate.wait()
        return {"sql": True, "n": calls}

    cache = ProbeCache(probe)
    readers = [asyncio.create_task(cache.get(60.0)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    first = await asyncio.gather(*readers)
    assert calls == 1 and all(r["n"] == 1 for r in first)
    assert first[0]["probed_at"] and first[0]["probe_age_seconds"] >= 0.0
    assert (await cache.get(60.0))["n"] == 1 and calls == 1  # recent enough: not probed again
    assert (await cache.get(0.0))["n"] == 2 and calls == 2  # max_age 0: a fresh probe


async def test_probe_cache_failure_propagates_and_the_next_read_probes_again() -> None:
    outcomes: list[BaseException | dict[str, object]] = [RuntimeError("sql down"), {"sql": True}]

    async def probe() -> dict[str, object]:
        value = outcomes.pop(0)
        if isinstance(value, BaseException):
            raise value
        return value

    cache = ProbeCache(probe)
    with pytest.raises(RuntimeError, match="sql down"):
        await cache.get(60.0)
    assert (await cache.get(60.0))["sql"] is True
