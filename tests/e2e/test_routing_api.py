"""Routing judgment through gRPC on the default pattern set and the MiniLM embedder.

No match is ``NOT_FOUND`` with ``NO_PATTERN_MATCHED``; a guess never writes;
``EvaluateRouting`` / ``FitRouting`` on the bundled evaluation data; the
seed's quick-start ``MatchPatterns`` request; ``tmws-pattern eval``.
"""

from __future__ import annotations

import json
import pathlib

import pytest
from test_cli_and_process import cli

from pattern_service.engine.validation import load_default_definitions
from tmws.pattern.client import NotFound, PatternClient
from tmws.pattern.v1 import SuccessPattern

DATA = pathlib.Path(__file__).resolve().parents[2] / "pattern_service" / "evaluation" / "data"


def _rows(name: str, split: str) -> list[dict[str, object]]:
    with (DATA / name).open(encoding="utf-8") as handle:
        return [row for row in map(json.loads, handle) if row["split"] == split]


@pytest.mark.parametrize(
    "query",
    [
        "tell me a joke about penguins",
        "what's the weather like in tokyo tomorrow",
        "book a table for two",
        "xyzzy plugh",
    ],
)
async def test_out_of_scope_requests_are_refused_with_the_closest_candidates(client: PatternClient, query: str) -> None:
    with pytest.raises(NotFound) as info:
        await client.execute(query)
    error = info.value
    assert error.reason == "NO_PATTERN_MATCHED"
    assert error.error_info is not None
    candidates = json.loads(error.error_info.metadata["candidates"])
    assert candidates and all(0.0 <= c["confidence"] <= 1.0 for c in candidates)
    with pytest.raises(NotFound):
        await client.route(query)


async def test_keyword_guess_is_opt_in_per_request(client: PatternClient) -> None:
    decision = await client.route("xyzzy plugh", keyword_fallback=True)
    assert decision.match_source == "keyword"
    assert decision.pattern_name != "store_memory"


async def test_a_guess_never_stores_a_memory(client: PatternClient) -> None:
    recall = "recall memories about deploy"
    before = (await client.execute(recall, use_cache=False)).result["memory"]["count"]
    try:
        routed = await client.execute("show notes labelled deploy")
    except NotFound as error:
        assert error.reason == "NO_PATTERN_MATCHED"
    else:
        assert routed.pattern_name != "store_memory" and not routed.metadata["write"]
    after = (await client.execute(recall, use_cache=False)).result["memory"]["count"]
    assert after == before


async def test_execute_many_reports_no_match_in_band(client: PatternClient) -> None:
    outcomes = {o.request_id: o async for o in client.execute_many([("1", "calculate 6 * 7"), ("2", "xyzzy plugh")])}
    assert outcomes["1"].ok
    assert isinstance(outcomes["2"].error, NotFound) and outcomes["2"].error.reason == "NO_PATTERN_MATCHED"


async def test_route_reports_calibrated_confidence_and_raw_score(client: PatternClient) -> None:
    decision = await client.route("calculate (2 + 3) * 4")
    assert decision.pattern_name == "quick_calculation" and decision.match_source == "trigger"
    assert 0.0 < decision.raw_score <= 1.0 and 0.0 < decision.confidence <= 1.0
    assert decision.confidence != decision.raw_score  # the shipped calibration applies to MiniLM
    exact = await client.route("health_check")
    assert (exact.match_source, exact.confidence, exact.raw_score) == ("exact_name", 1.0, 1.0)


async def test_evaluate_routing_on_the_held_back_split(client: PatternClient) -> None:
    test = _rows("routing_default.jsonl", "test")
    evaluation = await client.evaluate_routing([(str(r["text"]), r["pattern"]) for r in test])  # type: ignore[misc]
    assert evaluation.utterance_count == len(test) == 318
    assert evaluation.in_scope_count == 210 and evaluation.out_of_scope_count == 108
    assert evaluation.guessed_write_count == 0
    # Quality floors well under what bench.routing measures (0.81 / 0.86): a regression, not noise, fails them.
    assert evaluation.in_scope_accuracy >= 0.7 and evaluation.out_of_scope_recall >= 0.75
    assert evaluation.expected_calibration_error <= 0.15
    assert {p.pattern_name for p in evaluation.patterns} >= {"store_memory", "quick_calculation"}


async def test_fit_routing_validate_only_reports_without_applying(client: PatternClient) -> None:
    dev = _rows("routing_default.jsonl", "dev")
    version = (await client.get_stats()).registry.registry_version
    fitted = await client.fit_routing([(str(r["text"]), r["pattern"]) for r in dev], validate_only=True)  # type: ignore[misc]
    assert fitted.registry_version == version
    assert {c.match_source for c in fitted.calibration} >= {"semantic", "trigger"}
    assert fitted.threshold_changes and all(0.0 <= c.threshold <= 1.0 for c in fitted.threshold_changes)
    assert (await client.get_stats()).registry.registry_version == version


async def test_fit_routing_applies_and_list_shows_the_thresholds(client: PatternClient) -> None:
    dev = _rows("routing_default.jsonl", "dev")
    fitted = await client.fit_routing([(str(r["text"]), r["pattern"]) for r in dev])  # type: ignore[misc]
    definitions = {d.name: d async for d in client.iter_all_pattern_definitions()}
    for change in fitted.threshold_changes:
        assert definitions[change.pattern_name].HasField("similarity_threshold")
        assert definitions[change.pattern_name].similarity_threshold == pytest.approx(change.threshold)
    assert not definitions["store_memory"].HasField("similarity_threshold")  # a write is never fitted


async def test_quick_start_match_at_min_confidence_0_7(client: PatternClient) -> None:
    created = await client.create_success_pattern(
        SuccessPattern(
            pattern_type="api_optimization",
            name="Connection Pooling with Read Replicas",
            description="Optimize database queries using connection pooling and read replicas",
            execution_trace=_struct(
                {
                    "steps": [
                        "Configure connection pool (min=10, max=50)",
                        "Setup read replicas (2 instances)",
                        "Route read queries to replicas",
                    ]
                }
            ),
            quality_metrics=_struct({"accuracy": 0.95, "latency_p99_ms": 45, "reliability": 0.99}),
            context=_struct({"intent": "optimize API performance", "environment": "FastAPI + PostgreSQL"}),
            tags=["postgresql", "optimization", "scaling", "replication"],
        )
    )
    response = await client.match_patterns(
        "optimize API performance under high load",
        context="FastAPI application, 1000 req/sec",
        requirements=["low latency", "horizontal scaling"],
        pattern_types=["api_optimization"],
        tags=["fastapi", "postgresql"],
        limit=5,
        min_confidence=0.7,
    )
    assert [m.pattern_id for m in response.matched_patterns] == [created.pattern_id]
    match = response.matched_patterns[0]
    assert match.confidence_score >= 0.7 and match.ranking_score == match.confidence_score
    assert -1.0 <= match.similarity <= 1.0


async def test_learned_ranking_prefers_a_proven_pattern(client: PatternClient) -> None:
    ids = []
    for name in ("Cache warming A", "Cache warming B"):
        created = await client.create_success_pattern(
            SuccessPattern(pattern_type="caching", name=name, description="Warm the cache before peak traffic")
        )
        ids.append(created.pattern_id)
    for _ in range(9):
        await client.record_pattern_outcome(ids[1], success=True)
    await client.record_pattern_outcome(ids[1], success=False)
    await client.record_pattern_outcome(ids[0], success=True)
    learned = await client.match_patterns("warm the cache before peak traffic", min_confidence=0.0, ranking="learned")
    order = [m.pattern_id for m in learned.matched_patterns if m.pattern_id in ids]
    assert order == [ids[1], ids[0]]  # 9 of 10 ranks above 1 of 1
    top = learned.matched_patterns[0]
    assert top.ranking_score < top.confidence_score


async def test_cli_eval_prints_the_table_and_writes_the_plot(target: str, tmp_path: pathlib.Path) -> None:
    labelled = tmp_path / "labelled.jsonl"
    rows = _rows("routing_default.jsonl", "dev")[:20] + _rows("routing_default.jsonl", "test")[:20]
    labelled.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    png = tmp_path / "report.png"
    rc, out, err = await cli(target, "eval", str(labelled), "--fit", "--dry-run", "--plot", str(png))
    assert rc == 0, err
    assert "fit on 20 utterances, not applied (--dry-run)" in out
    assert "evaluation (test split): 20 utterances" in out and "calibration error" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc, out, err = await cli(target, "eval", str(labelled), "--json")
    assert rc == 0, err
    assert json.loads(out)["evaluation"]["utterance_count"] == 40
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"pattern": "x"}\n', encoding="utf-8")
    rc, out, err = await cli(target, "eval", str(bad))
    assert rc == 2 and "line 1" in err


def _struct(value: dict[str, object]) -> object:
    from google.protobuf import struct_pb2

    s = struct_pb2.Struct()
    s.update(value)
    return s


async def test_every_default_example_routes_to_its_pattern_and_succeeds(client: PatternClient) -> None:
    failures = []
    for definition in load_default_definitions():
        for example in definition.examples:
            try:
                result = await client.execute(example, context={"agent": "examples"})
            except Exception as exc:
                failures.append(f"{definition.name}: {example!r}: {type(exc).__name__}: {exc}")
                continue
            if result.pattern_name != definition.name or not result.success:
                failures.append(f"{definition.name}: {example!r} -> {result.pattern_name}, error {result.error!r}")
    assert not failures, "\n".join(failures)
