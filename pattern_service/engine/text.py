"""Query text helpers shared by the registry, the router and the cache."""

from __future__ import annotations

import re
from collections.abc import Callable

_LEADING_FILLER = re.compile(r"^(?:(?:about|on|for|of|regarding|concerning|that|to|please)\b\s*)+", re.IGNORECASE)
_EDGE_PUNCT = " \t\n:;,-–—\"'“”‘’"


def normalize_query(query: str) -> str:
    """Lower-case ``query`` and collapse every run of whitespace to one space (trimmed)."""
    return " ".join(query.lower().split())


def subject_of(query: str, span: tuple[int, int] | None) -> str:
    """The part of ``query`` a pattern acts on: the query without the matched trigger text.

    Removes ``query[span[0]:span[1]]`` (``None`` = nothing matched: the whole query
    is the subject), collapses whitespace, trims punctuation at the edges and
    leading filler words (``about``, ``for``, ``that``, …). Case is kept, so a
    stored memory keeps the caller's spelling.

    Example: ``subject_of("recall memories about Redis outages", (0, 15))`` → ``"Redis outages"``.
    """
    text = query if span is None else f"{query[: span[0]]} {query[span[1] :]}"
    text = " ".join(text.split()).strip(_EDGE_PUNCT)
    return _LEADING_FILLER.sub("", text).strip(_EDGE_PUNCT)


#: Words that only say *what kind of thing* a command acts on. Matched by a trigger right after its
#: command words (``recall memories``, ``summarize all notes``) they are command words too; anywhere
#: else (``store memories of the trip``) they are kept.
GENERIC_NOUNS = frozenset(
    {"memories", "memory", "notes", "note", "history", "items", "entries", "all", "my", "our", "the", "every", "any"}
)
_TOKEN = re.compile(r"\S+")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"


def _shift(word: str, by: int) -> str:
    """``word`` with every ASCII letter and digit shifted by ``by`` (case kept, other characters kept)."""
    out = []
    for ch in word:
        low = ch.lower()
        if low in _LETTERS:
            new = _LETTERS[(_LETTERS.index(low) + by) % 26]
            out.append(new.upper() if ch.isupper() else new)
        elif ch in _DIGITS:
            out.append(_DIGITS[(_DIGITS.index(ch) + by) % 10])
        else:
            out.append(ch)
    return "".join(out)


def command_span(search: Callable[[str], tuple[int, int] | None], query: str, span: tuple[int, int]) -> tuple[int, int]:
    """The part of a trigger's match that holds only the trigger's command words.

    A trigger often matches more than its command: ``\\bjot\\s+down\\s+\\w+``
    matches "jot down kafka" in "jot down kafka rebalances are slow", and
    ``\\bcalculate\\s+\\S`` matches "calculate 6" in "calculate 6 * 7". The
    words after the command are content the regex merely peeked at (to
    require that *something* follows); removing them from the subject would
    lose them from what a store stores or a tool computes.

    The rule: the whitespace-separated words the match touches are read from
    its start; a word is a *command word* if the trigger needs exactly that
    word there — with the word's letters and digits replaced by others of the
    same kind (two different replacements), the trigger no longer matches the
    same span — or if it is one of :data:`GENERIC_NOUNS` following command
    words ("recall *memories* about …"). The span is cut back to the end of
    the leading command words, so it never ends inside, or after, a word the
    trigger only matched generically (``\\w+``, ``\\S``, ``.*``), and every
    word from the first such word on stays in the subject. A span without any
    command word (a trigger of generic classes only) becomes empty.

    Args:
        search: The trigger's search: the ``(start, end)`` of its first match in a text, or ``None``.
        query: The query the trigger matched.
        span: ``search(query)``.

    Returns:
        ``(span[0], end)`` with ``span[0] <= end <= span[1]`` rounded up to the end of a word.

    Example: the trigger ``\\bjot\\s+down\\s+\\w+`` on "jot down kafka rebalances"
    gives the span of "jot down"; ``\\b(recall|retrieve)\\s+\\w+`` on "recall memories
    about Redis outages" gives "recall memories"; on "recall backup" it gives "recall".
    """
    start, end = span
    cut = start
    for token in _TOKEN.finditer(query, start):
        if token.start() >= end:
            break
        word = token.group()
        if not any(ch.isalnum() for ch in word):  # punctuation between command words
            continue
        literal = all(
            search(f"{query[: token.start()]}{_shift(word, by)}{query[token.end() :]}") != span for by in (1, 7)
        )
        if not literal and not (cut > start and word.lower() in GENERIC_NOUNS):
            break
        cut = max(cut, token.end())
    return (start, cut)
