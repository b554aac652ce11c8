"""The built-in tools understand natural phrasings, not only their triggers' command forms."""

from __future__ import annotations

import pytest

from pattern_service.engine.arithmetic_words import words_to_expression
from pattern_service.engine.builtin_tools import package_in, tool_named_in
from pattern_service.engine.calculator import CalculationError, evaluate, parse_count
from pattern_service.engine.executors import tags_in


@pytest.mark.parametrize(
    ("said", "value"),
    [
        ("what is 17 times 23", 391),
        ("what is 29 times 96", 2784),
        ("how much is 2 to the power of 10", 1024),
        ("what is seventeen times twenty-three?", 391),
        ("how much is a thousand minus one", 999),
        ("one hundred and five divided by five", 21),
        ("what's 7 squared", 49),
        ("3 cubed", 27),
        ("what is twenty five percent of 80", 20),
        ("calculate 15% of 200", 30),
        ("square root of 81", 9),
        ("subtract 4 from 10", 6),
        ("add two and three", 5),
        ("what is the sum of 4 and 5", 9),
        ("compute the product of 6 and 7", 42),
        ("divide 1,000 by 8", 125),
        ("12 mod 5", 2),
        ("2 raised to 8", 256),
        ("3 x 4", 12),
        ("10 over 4", 2.5),
    ],
)
def test_arithmetic_in_words(said: str, value: float) -> None:
    assert evaluate(words_to_expression(said)) == pytest.approx(value)


@pytest.mark.parametrize("said", ["what is the meaning of life", "times plus minus", "import os"])
def test_words_that_are_not_arithmetic_are_refused(said: str) -> None:
    with pytest.raises(CalculationError):
        evaluate(words_to_expression(said))


def test_counting_this_sentence_counts_the_query() -> None:
    assert parse_count("how many words are in this sentence") == ("words", "how many words are in this sentence")
    assert parse_count('count the words in "a b c"') == ("words", "a b c")


@pytest.mark.parametrize(
    ("query", "package"),
    [
        ("is numpy available on this server", "numpy"),
        ("which version of grpcio do we have", "grpcio"),
        ("do we have the pyyaml package", "pyyaml"),
        ("get me set up with sqlalchemy", "sqlalchemy"),
        ("install numpy", "numpy"),
        ("is the requests library installed here?", "requests"),
        ("is nosuchpackagexyz installed", "nosuchpackagexyz"),
        ("is it installed", None),
    ],
)
def test_package_names_ignore_filler(query: str, package: str | None) -> None:
    assert package_in(query) == package


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("invoke the calculate tool on 6 * 7", ("calculate", "6 * 7")),
        ("use the calculator function", ("calculate", "")),
        ("launch the list patterns helper", ("list_patterns", "")),
        ("please run health_check now", ("health_check", "now")),
        ("trigger a registered tool for me", None),
    ],
)
def test_tools_named_in_words(query: str, named: tuple[str, str] | None) -> None:
    assert tool_named_in(query, ["calculate", "list_patterns", "health_check", "compare_texts"]) == named


@pytest.mark.parametrize(
    ("query", "tags"),
    [
        ("show memories labelled security", ("security",)),
        ("everything filed under performance", ("performance",)),
        ("notes in the deployment category", ("deployment",)),
        ("memories with the tag infra", ("infra",)),
        ("memories tagged with sec", ("sec",)),
        ("what happened this week", ()),
    ],
)
def test_tags_named_in_words(query: str, tags: tuple[str, ...]) -> None:
    assert tags_in(query, {}) == tags
