"""Query text helpers shared by the registry, the router and the cache."""

from __future__ import annotations

import re

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
