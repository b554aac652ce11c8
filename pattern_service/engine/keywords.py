"""The seed router's keyword decision: the opt-in last resort when nothing matched (``keyword_fallback``)."""

from __future__ import annotations

import re

from pattern_service.domain import PatternType

KEYWORDS: dict[PatternType, re.Pattern[str]] = {
    PatternType.INFRASTRUCTURE: re.compile(r"\b(tool|function|command|execute|run|install|setup)\b"),
    PatternType.MEMORY: re.compile(r"\b(remember|recall|memory|history|past|previous|stored)\b"),
    PatternType.HYBRID: re.compile(r"\b(analyze|compare|find|search|similar|related)\b"),
}


def keyword_decision(normalized: str, memories_exist: bool) -> tuple[PatternType, float, str]:
    """The original router's keyword decision with a scored confidence (see the module docstring).

    Args:
        normalized: Normalized query.
        memories_exist: Whether the tenant has any memory.

    Returns:
        (type, confidence in [0.2, 0.7], reasoning).
    """
    hits = {t: len(rx.findall(normalized)) for t, rx in KEYWORDS.items()}
    infra, memory, hybrid = hits[PatternType.INFRASTRUCTURE], hits[PatternType.MEMORY], hits[PatternType.HYBRID]
    total = infra + memory + hybrid
    if infra and not memory and not hybrid:
        chosen, support, why = PatternType.INFRASTRUCTURE, infra, "only infrastructure keywords"
    elif memory and not infra and not hybrid:
        # Unlike the original (memory only when memories exist): a caller who
        # asks to recall gets the memory path, and an empty answer if there is none.
        chosen, support, why = PatternType.MEMORY, memory, "only memory keywords"
    elif hybrid or (memory and infra):
        chosen, support, why = PatternType.HYBRID, total, "hybrid keywords, or memory and infrastructure keywords"
    elif memories_exist:
        chosen, support, why = PatternType.MEMORY, memory, "no decisive keywords; the tenant has memories"
    else:
        chosen, support, why = PatternType.INFRASTRUCTURE, infra, "no decisive keywords; the tenant has no memories"
    confidence = 0.2 + 0.5 * support / total if total else 0.2
    counts = ", ".join(f"{t.value} {n}" for t, n in hits.items())
    return chosen, min(0.7, confidence), f"keyword decision ({counts}): {why}"
