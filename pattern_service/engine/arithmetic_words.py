"""Arithmetic said in words, as an expression :func:`.calculator.evaluate` accepts.

"what is 17 times 23" → ``17 * 23``; "how much is 2 to the power of 10" →
``2 ** 10``; "twenty five percent of 80" → ``(25) / 100 * (80)``; "square
root of 81" → ``(81) ** 0.5``; "subtract 4 from 10" → ``(10) - (4)``.

Understood: English number words (zero to nineteen, the tens, ``hundred``,
``thousand``, ``million``, ``billion``, with "a hundred", "one hundred and
five"), digits with thousands separators (``1,000``), operator words
(``plus``, ``minus``, ``times``, ``multiplied by``, ``divided by``, ``over``,
``mod``/``modulo``, ``to the power of``, ``raised to``, ``squared``,
``cubed``), ``N percent of M`` / ``N% of M``, ``square root of N``, and the
phrasings ``add A and B``, ``sum of A and B``, ``product of A and B``,
``difference between A and B``, ``subtract A from B``, ``divide A by B``,
``multiply A by B``. Question and command words around them ("what is",
"how much is", "calculate", "please", "?") are dropped. Anything else left is
not arithmetic and stays in the text, so :func:`.calculator.evaluate` refuses it.
"""

from __future__ import annotations

import re
from typing import Any

_UNITS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9}
_NUMBER_WORD = "|".join([*_UNITS, *_TENS, "hundred", *_SCALES])
_AFTER_SCALE_AND = "|".join(rf"(?<={w})\s+and\s+" for w in ("hundred", *_SCALES))  # "one hundred and five"
_NUMBER_RUN = re.compile(
    rf"\b(?:an?\s+)?(?:{_NUMBER_WORD})(?:(?:\s+|-|{_AFTER_SCALE_AND})(?:{_NUMBER_WORD}))*\b", re.IGNORECASE
)
_LEAD = re.compile(
    r"^(?:(?:please|hey|ok|so|and|now|quickly|then)\s+|(?:can|could|would)\s+you\s+|tell\s+me\s+|"
    r"(?:calculate|compute|evaluate|work\s+out|figure\s+out|solve|find)\s*:?\s+|"
    r"what(?:'s|\s+is|\s+are|\s+does|\s+do)\s+|how\s+much\s+(?:is|are|does|do)\s+|the\s+(?:result|value|answer)\s+(?:of|to)\s+|the\s+)+",
    re.IGNORECASE,
)
_TRAIL = re.compile(
    r"(?:\s*(?:equal|equals|make|makes|come\s+to|give|gives|please|for\s+me))*\s*[?.!=]*\s*$", re.IGNORECASE
)
_NUM = r"(-?\d+(?:\.\d+)?|\([^()]*\))"
#: Three or more numbers: "12, 30 and 58", "1, 2, 3".
_NUM_LIST = r"-?\d+(?:\.\d+)?(?:\s*,\s*-?\d+(?:\.\d+)?)+(?:\s*,?\s*(?:and|\+)\s*-?\d+(?:\.\d+)?)?"
#: (pattern, replacement) applied in order once numbers are digits.
_PHRASES: tuple[tuple[re.Pattern[str], Any], ...] = tuple(
    (re.compile(p, re.IGNORECASE), r)
    for p, r in (
        (rf"\bsquare\s+root\s+of\s+{_NUM}", r"(\1) ** 0.5"),
        (rf"\bcube\s+root\s+of\s+{_NUM}", r"(\1) ** (1 / 3)"),
        (rf"{_NUM}\s*(?:%|percent|per\s+cent)\s+of\s+{_NUM}", r"(\1) / 100 * (\2)"),
        (rf"\b(?:add|sum\s+of|total\s+of)\s+{_NUM}\s+(?:and|to|plus)\s+{_NUM}", r"(\1) + (\2)"),
        # "sum 12, 30 and 58", "add up 45, 55 and 100", "the total of 1, 2, 3": a list joined by +
        (
            rf"\b(?:sum|add|total)(?:\s+up)?(?:\s+of)?\s+({_NUM_LIST})",
            lambda m: " + ".join(re.findall(r"-?\d+(?:\.\d+)?", m.group(1))),
        ),
        (rf"\bsubtract\s+{_NUM}\s+from\s+{_NUM}", r"(\2) - (\1)"),
        (rf"\b(?:difference\s+between)\s+{_NUM}\s+and\s+{_NUM}", r"(\1) - (\2)"),
        (rf"\b(?:product\s+of)\s+{_NUM}\s+and\s+{_NUM}", r"(\1) * (\2)"),
        (rf"\bmultiply\s+{_NUM}\s+(?:by|and|with)\s+{_NUM}", r"(\1) * (\2)"),
        (rf"\bdivide\s+{_NUM}\s+by\s+{_NUM}", r"(\1) / (\2)"),
        (rf"\b(?:quotient\s+of)\s+{_NUM}\s+and\s+{_NUM}", r"(\1) / (\2)"),
        (r"\b(?:raised\s+)?to\s+the\s+power\s+of\b|\braised\s+to(?:\s+the)?\b|\bto\s+the\s+power\b", " ** "),
        (r"\bsquared\b", " ** 2"),
        (r"\bcubed\b", " ** 3"),
        (r"\bmultiplied\s+by\b|\btimes\b|(?<=\d)\s*x\s*(?=[\d(])", " * "),
        (r"\bdivided\s+by\b|\bover\b", " / "),
        (r"\bplus\b|\badded\s+to\b", " + "),
        (r"\bminus\b|\bless\b|\btake\s+away\b", " - "),
        (r"\bmod(?:ulo)?\b", " % "),
    )
)


def _number(words: str) -> int:
    """The value of a run of number words ("two hundred and five" → 205, "a thousand" → 1000)."""
    total, current = 0, 0
    for word in re.split(r"[\s-]+", words.lower()):
        if word in ("a", "an"):
            current = 1
        elif word in _UNITS:
            current += _UNITS[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word == "hundred":
            current = (current or 1) * 100
        elif word in _SCALES:
            total += (current or 1) * _SCALES[word]
            current = 0
    return total + current


def words_to_expression(text: str) -> str:
    """Rewrite arithmetic said in words as an expression (see the module doc).

    Args:
        text: e.g. ``"what is seventeen times 23?"``.

    Returns:
        The rewritten text, e.g. ``"17 * 23"``; words it does not understand are kept.
    """
    out = _LEAD.sub("", text.strip())
    out = _TRAIL.sub("", out)
    out = re.sub(r"(?<=\d),(?=\d{3}\b)", "", out)
    out = _NUMBER_RUN.sub(lambda m: str(_number(m.group(0))), out)
    for pattern, replacement in _PHRASES:
        out = pattern.sub(replacement, out)
    return " ".join(out.split())
