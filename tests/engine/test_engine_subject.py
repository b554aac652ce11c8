"""What a trigger leaves of a query: only its command words are removed (the subject keeps every content word)."""

from __future__ import annotations

import pytest
from eng_helpers import eng_definition

from pattern_service.domain import ExecutionMode, PatternType
from pattern_service.engine import PatternExecutionEngine
from pattern_service.engine.text import command_span, subject_of
from pattern_service.engine.validation import compile_trigger


def _subject(trigger: str, query: str) -> str:
    regex = compile_trigger(trigger)

    def search(text: str) -> tuple[int, int] | None:
        m = regex.search(text)
        return None if m is None else (m.start(), m.end())

    span = search(query)
    assert span is not None
    return subject_of(query, command_span(search, query, span))


@pytest.mark.parametrize(
    ("trigger", "query", "subject"),
    [
        (r"\bjot\s+down\s+\w+", "jot down kafka rebalances are slow", "kafka rebalances are slow"),
        (r"\bjot\s+down\s+\w", "please jot down kafka rebalances are slow", "kafka rebalances are slow"),
        (r"\b(calculate|compute|count)\s+\S", "calculate 6 * 7", "6 * 7"),
        (r"\b(calculate|compute|count)\s+\S", "calculate 17*23", "17*23"),
        (r"\b(recall|retrieve)\s+\w+", "recall memories about Redis outages", "Redis outages"),
        (r"\b(recall|retrieve)\s+\w+", "recall backup", "backup"),
        (r"\b(recall|retrieve)\s+\w+", "recall security patterns", "security patterns"),
        (r"\b(recall|retrieve)\s+\w+", "recall memories", ""),
        (r"\b(store|save|remember|record)\s+", "store the deploy checklist", "the deploy checklist"),
        (
            r"\b(check|test|verify|status)\s+(\w+\s+)?(health|connections?)\b",
            "check database health",
            "database health",
        ),
        (r"\b(find|search|look\s+for)\s+(similar|related|like)\b", "find similar deploy problems", "deploy problems"),
        (r"\bmemor(y|ies)\s+of\b", "memories of the outage", "the outage"),  # literal alternatives are commands
        (r"\bcalc", "calculate 2 + 2", "2 + 2"),  # a span ending inside a command word takes the whole word
        (r"\w+\s+\w+", "kafka rebalances", "kafka rebalances"),  # generic classes only: nothing is a command
        (r"\bnote:\s*\w+", "note: kafka is slow", "kafka is slow"),
    ],
)
def test_only_command_words_are_removed(trigger: str, query: str, subject: str) -> None:
    assert _subject(trigger, query) == subject


def test_every_content_word_survives() -> None:
    for query in ("jot down kafka rebalances are slow", "jot down 42 partitions lag", "JOT DOWN Kafka"):
        words = query.split()[2:]
        subject = _subject(r"\bjot\s+down\s+\w+", query)
        assert subject.split() == words


async def test_a_store_keeps_what_its_trigger_peeked_at(eng_engine: PatternExecutionEngine) -> None:
    jot = eng_definition(
        "jot_down",
        pattern_type=PatternType.MEMORY,
        trigger_pattern=r"\bjot\s+down\s+\w+",
        metadata={"operation": "store"},
        priority=50,
    )
    await eng_engine.register_batch([jot])
    stored = await eng_engine.execute("jot down kafka rebalances are slow")
    assert stored.pattern_name == "jot_down" and stored.success
    assert stored.result["memory"]["memory"]["content"] == "kafka rebalances are slow"
    assert stored.metadata["subject"] == "kafka rebalances are slow"
    calc = await eng_engine.execute("calculate 6 * 7")
    assert calc.metadata["subject"] == "6 * 7"
    assert calc.result["infrastructure"]["output"]["result"] == 42
    recall = await eng_engine.route("recall memories about Redis outages")
    assert recall.pattern_name == "recall_memory"
    plan = await eng_engine.router.plan("recall memories about Redis outages", ExecutionMode.BALANCED, {}, "default")
    assert plan.subject == "Redis outages"
