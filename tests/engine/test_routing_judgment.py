"""Routing judgment on the real stores: no match is an answer, a guess never writes, thresholds, evaluate and fit.

The engine runs on the hashing embedder (lexical cosines), so the patterns here
are built with words that make the intended candidate clearly closest.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from eng_helpers import EngBuilder, eng_definition

from pattern_service.domain import ExecutionMode, MatchSource, PatternDefinition, PatternType
from pattern_service.engine.evaluation import LabelledUtterance
from pattern_service.errors import InvalidArgumentError, NotFoundError
from pattern_service.store.memories import SqlMemoryStore


def _notes_patterns() -> list[PatternDefinition]:
    """A write with a strict trigger and examples, and a read that covers other words."""
    return [
        eng_definition(
            "keep_note",
            pattern_type=PatternType.MEMORY,
            trigger_pattern=r"^store\s+",
            metadata={"operation": "store"},
            examples=("keep a note about the kafka deploy", "note the kafka deploy finished"),
        ),
        eng_definition(
            "find_notes",
            pattern_type=PatternType.MEMORY,
            trigger_pattern=None,
            metadata={"operation": "recall"},
            examples=("what do we know about billing invoices", "recall billing invoices"),
        ),
        eng_definition("weather", trigger_pattern=None, examples=("weather forecast tomorrow rain",)),
    ]


async def test_no_match_is_not_found_with_the_closest_candidates(eng_build: EngBuilder) -> None:
    engine = await eng_build(load_defaults=False)
    await engine.register_batch(_notes_patterns())
    with pytest.raises(NotFoundError) as info:
        await engine.route("zebra quokka platypus")
    error = info.value
    assert error.reason == "NO_PATTERN_MATCHED"
    assert error.metadata["execution_mode"] == "BALANCED"
    candidates = json.loads(error.metadata["candidates"])
    assert 1 <= len(candidates) <= 3
    assert {"pattern_name", "match_source", "confidence", "raw_score", "threshold", "write"} <= set(candidates[0])
    with pytest.raises(NotFoundError):  # Execute refuses the same way and runs nothing
        await engine.execute("zebra quokka platypus", tenant_id="t")
    assert engine.get_stats("t").engine.total_executions == 0
    assert engine.router.stats().no_match_count == 2


async def test_a_similarity_guess_never_writes(eng_build: EngBuilder, eng_memories: SqlMemoryStore) -> None:
    engine = await eng_build(load_defaults=False, keyword_fallback=True)
    await engine.register_batch(_notes_patterns())
    memories = eng_memories
    query = "keep a note about the kafka deploy please"  # closest to the write's examples; its trigger does not match
    with pytest.raises(NotFoundError) as info:
        await engine.execute(query, tenant_id="t", keyword_fallback=False)
    assert info.value.reason == "NO_PATTERN_MATCHED"
    assert info.value.metadata["best_pattern_name"] == "keep_note"
    assert info.value.metadata["best_is_write"] == "true"
    assert "is a write" in info.value.message
    # Even the opt-in keyword guess only ever picks a read.
    guessed = await engine.execute(query, tenant_id="t")
    assert guessed.routing.match_source is MatchSource.KEYWORD and guessed.pattern_name != "keep_note"
    assert await memories.count("t") == 0
    # The write's own trigger runs it.
    stored = await engine.execute("store the kafka deploy finished", tenant_id="t")
    assert stored.pattern_name == "keep_note" and stored.routing.match_source is MatchSource.TRIGGER
    assert await memories.count("t") == 1


async def test_per_pattern_threshold_wins_over_the_global_one(eng_build: EngBuilder) -> None:
    engine = await eng_build(load_defaults=False, semantic_threshold=0.99)
    patterns = _notes_patterns()
    await engine.register_batch(patterns)
    query = "weather forecast for tomorrow"
    with pytest.raises(NotFoundError):
        await engine.route(query)  # the global 0.99 refuses it
    weather = next(p for p in patterns if p.name == "weather")
    await engine.register_batch([dataclasses.replace(weather, similarity_threshold=0.1)])
    decision = await engine.route(query)
    assert decision.pattern_name == "weather" and decision.match_source is MatchSource.SEMANTIC
    assert decision.raw_score >= 0.1
    assert engine.registry.get("weather").similarity_threshold == 0.1  # type: ignore[union-attr]


async def test_fast_mode_never_routes_a_memory_read_by_similarity(eng_build: EngBuilder) -> None:
    engine = await eng_build(load_defaults=False, semantic_threshold=0.1)
    await engine.register_batch(_notes_patterns())
    assert (await engine.route("recall billing invoices")).pattern_name == "find_notes"
    with pytest.raises(NotFoundError):  # the only close pattern is a memory read; FAST excludes it
        await engine.route("recall billing invoices", execution_mode=ExecutionMode.FAST)


def _labelled() -> list[LabelledUtterance]:
    return [
        LabelledUtterance("weather forecast tomorrow", "weather"),
        LabelledUtterance("rain forecast for the weekend", "weather"),
        LabelledUtterance("recall billing invoices from march", "find_notes"),
        LabelledUtterance("what do we know about billing", "find_notes"),
        LabelledUtterance("store the kafka deploy finished", "keep_note"),
        LabelledUtterance("zebra quokka platypus", None),
        LabelledUtterance("aardvark marmot lemur", None),
        LabelledUtterance("weather invoices", None),
    ]


async def test_evaluate_reports_accuracy_out_of_scope_f1_confusions_and_calibration(eng_build: EngBuilder) -> None:
    engine = await eng_build(load_defaults=False, semantic_threshold=0.2)
    await engine.register_batch(_notes_patterns())
    utterances = _labelled()
    evaluation = await engine.evaluate_routing(utterances)
    decisions = [await _decision(engine, u.query) for u in utterances]
    right = [d == u.expected for d, u in zip(decisions, utterances, strict=True)]
    assert evaluation.utterance_count == 8 and (evaluation.in_scope_count, evaluation.out_of_scope_count) == (5, 3)
    assert evaluation.accuracy == pytest.approx(sum(right) / 8)
    refused = [u for d, u in zip(decisions, utterances, strict=True) if d is None]
    oos_refused = sum(1 for u in refused if u.expected is None)
    assert evaluation.out_of_scope_recall == pytest.approx(oos_refused / 3)
    assert evaluation.out_of_scope_precision == pytest.approx(oos_refused / len(refused) if refused else 0.0)
    for score in evaluation.patterns:
        assert 0.0 <= score.f1 <= 1.0
    assert sum(c.count for c in evaluation.confusions) == 8 - sum(right)
    assert sum(b.count for b in evaluation.calibration_bins) == sum(d is not None for d in decisions)
    assert evaluation.guessed_write_count == 0
    with pytest.raises(InvalidArgumentError) as info:
        await engine.evaluate_routing([LabelledUtterance("x", "no_such_pattern")])
    assert info.value.violations[0].field == "utterances[0].expected_pattern_name"


async def _decision(engine: object, query: str) -> str | None:
    try:
        return (await engine.route(query)).pattern_name  # type: ignore[attr-defined]
    except NotFoundError:
        return None


async def test_fit_applies_thresholds_and_calibration_atomically_and_persistently(eng_build: EngBuilder) -> None:
    engine = await eng_build(load_defaults=False, semantic_threshold=0.2)
    await engine.register_batch(_notes_patterns())
    utterances = _labelled() * 2  # enough samples per pattern to fit its threshold
    version = engine.registry.version
    dry = await engine.fit_routing(utterances, validate_only=True)
    assert dry.registry_version == version == engine.registry.version  # nothing changed
    assert all(d.similarity_threshold is None for d in engine.registry.definitions())
    fitted = await engine.fit_routing(utterances)
    assert fitted.registry_version == version + 1  # one change for thresholds and calibration together
    assert fitted.after.accuracy >= fitted.before.accuracy
    for name, threshold in fitted.thresholds.items():
        assert engine.registry.get(name).similarity_threshold == threshold  # type: ignore[union-attr]
    assert set(engine.registry.calibration.sources) <= {"trigger", "semantic", "keyword"}
    assert engine.registry.calibration.sources  # at least one source was fitted
    # A new engine on the same store loads what was fitted.
    again = await eng_build(load_defaults=False, semantic_threshold=0.2)
    assert again.registry.calibration == engine.registry.calibration
    assert {d.name: d.similarity_threshold for d in again.registry.definitions()} == {
        d.name: d.similarity_threshold for d in engine.registry.definitions()
    }
    decision = await again.route("weather forecast tomorrow")
    scaling = again.registry.calibration.sources.get("semantic")
    if scaling is not None and decision.match_source is MatchSource.SEMANTIC:
        assert decision.confidence == pytest.approx(scaling(decision.raw_score), abs=1e-6)


async def test_fit_refuses_unknown_patterns_and_changes_nothing(eng_build: EngBuilder) -> None:
    engine = await eng_build(load_defaults=False)
    await engine.register_batch(_notes_patterns())
    version = engine.registry.version
    with pytest.raises(InvalidArgumentError):
        await engine.fit_routing([LabelledUtterance("weather", "weather"), LabelledUtterance("x", "nope")])
    assert engine.registry.version == version
