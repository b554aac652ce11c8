"""Validation and compilation of pattern definitions.

Triggers are compiled with google-re2 (linear-time matching, no ReDoS;
the original seed implementation compiled registered regexes as given), case-insensitive,
with a bounded program: at most :data:`MAX_TRIGGER_CHARS` characters, RE2
memory budget :data:`RE2_MAX_MEM` bytes and at most :data:`MAX_PROGRAM_SIZE`
program instructions. Constructs RE2 does not support (backreferences,
lookaround) are reported as field violations.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import re2
import yaml

from pattern_service.calibration import RoutingCalibration
from pattern_service.domain import MemoryOperation, PatternDefinition, PatternType
from pattern_service.errors import FieldViolation

NAME = re.compile(r"[a-z][a-z0-9_]{0,99}")
MAX_TRIGGER_CHARS = 1000
RE2_MAX_MEM = 8 << 20
MAX_PROGRAM_SIZE = 20_000
MAX_COST = 100_000
MAX_PRIORITY = 100
MAX_CACHE_TTL = 86_400
MAX_EXAMPLES = 50
MAX_EXAMPLE_CHARS = 500
MAX_DESCRIPTION_CHARS = 1000
MAX_BATCH = 1000
FIELD = "pattern_definitions"


def re2_options(max_mem: int = RE2_MAX_MEM) -> re2.Options:
    """RE2 options for triggers: case-insensitive, UTF-8, bounded memory, errors not logged."""
    options = re2.Options()
    options.case_sensitive = False
    options.max_mem = max_mem
    options.log_errors = False
    return options


def compile_trigger(pattern: str) -> re2._Regexp:
    """Compile a trigger under the limits.

    Raises:
        ValueError: Too long, not valid RE2 (e.g. a backreference or lookaround),
            or a program larger than :data:`MAX_PROGRAM_SIZE`.
    """
    if len(pattern) > MAX_TRIGGER_CHARS:
        raise ValueError(f"longer than {MAX_TRIGGER_CHARS} characters")
    try:
        compiled = re2.compile(pattern, re2_options())
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"not a valid RE2 regex (backreferences and lookaround are unsupported): {detail}") from None
    if compiled.programsize > MAX_PROGRAM_SIZE:
        raise ValueError(f"compiled program has {compiled.programsize} instructions, limit {MAX_PROGRAM_SIZE}")
    return compiled


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_range(out: list[FieldViolation], path: str, value: object, low: int, high: int) -> None:
    if not _is_int(value) or not low <= value <= high:  # type: ignore[operator]
        out.append(FieldViolation(path, f"must be an integer in {low}..{high}"))


def _json_compatible(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def validate_definitions(definitions: Sequence[PatternDefinition], tool_names: Collection[str]) -> list[FieldViolation]:
    """Check every field of every definition and report every problem.

    Args:
        definitions: The batch, in request order.
        tool_names: Names of the registered tools (``metadata.tool`` must be one).

    Returns:
        Violations with paths ``pattern_definitions[i].<field>``; empty when valid.
    """
    out: list[FieldViolation] = []
    if not definitions:
        out.append(FieldViolation(FIELD, "at least one pattern definition is required"))
    if len(definitions) > MAX_BATCH:
        out.append(FieldViolation(FIELD, f"at most {MAX_BATCH} definitions per batch"))
    seen: dict[str, int] = {}
    for i, d in enumerate(definitions):
        p = f"{FIELD}[{i}]"
        if not isinstance(d.name, str) or not NAME.fullmatch(d.name):
            out.append(FieldViolation(f"{p}.name", "must match [a-z][a-z0-9_]{0,99}"))
        elif d.name in seen:
            out.append(FieldViolation(f"{p}.name", f"duplicate of pattern_definitions[{seen[d.name]}].name"))
        else:
            seen[d.name] = i
        if not isinstance(d.pattern_type, PatternType):
            out.append(FieldViolation(f"{p}.pattern_type", "must be set to infrastructure, memory or hybrid"))
        trigger = d.trigger_pattern
        examples = d.examples if isinstance(d.examples, tuple | list) else ()
        if not isinstance(d.examples, tuple | list):
            out.append(FieldViolation(f"{p}.examples", "must be a list of strings"))
        if trigger:
            try:
                compile_trigger(trigger)
            except ValueError as exc:
                out.append(FieldViolation(f"{p}.trigger_pattern", str(exc)))
        elif not examples:
            out.append(FieldViolation(f"{p}.trigger_pattern", "a trigger pattern or at least one example is required"))
        _check_range(out, f"{p}.cost_tokens", d.cost_tokens, 0, MAX_COST)
        _check_range(out, f"{p}.priority", d.priority, 0, MAX_PRIORITY)
        _check_range(out, f"{p}.cache_ttl", d.cache_ttl, 0, MAX_CACHE_TTL)
        threshold = d.similarity_threshold
        if threshold is not None and (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not 0.0 <= float(threshold) <= 1.0  # NaN fails this too
        ):
            out.append(FieldViolation(f"{p}.similarity_threshold", "must be a number in [0, 1]"))
        if len(examples) > MAX_EXAMPLES:
            out.append(FieldViolation(f"{p}.examples", f"at most {MAX_EXAMPLES} examples"))
        for j, ex in enumerate(examples):
            if not isinstance(ex, str) or not ex.strip() or len(ex) > MAX_EXAMPLE_CHARS:
                out.append(FieldViolation(f"{p}.examples[{j}]", f"must be 1-{MAX_EXAMPLE_CHARS} non-blank characters"))
        if not isinstance(d.description, str) or len(d.description) > MAX_DESCRIPTION_CHARS:
            out.append(FieldViolation(f"{p}.description", f"at most {MAX_DESCRIPTION_CHARS} characters"))
        out.extend(_check_metadata(p, d, tool_names))
    return out


def _check_metadata(p: str, d: PatternDefinition, tool_names: Collection[str]) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    if not isinstance(d.metadata, Mapping) or not _json_compatible(dict(d.metadata)):
        return [FieldViolation(f"{p}.metadata", "must be a JSON object")]
    if d.pattern_type in (PatternType.INFRASTRUCTURE, PatternType.HYBRID):
        tool = d.metadata.get("tool")
        if not isinstance(tool, str) or not tool:
            out.append(FieldViolation(f"{p}.metadata.tool", f"{d.pattern_type.value} patterns must name a tool"))
        elif tool not in tool_names:
            known = ", ".join(sorted(tool_names))
            out.append(FieldViolation(f"{p}.metadata.tool", f"unknown tool {tool!r}; registered: {known}"))
    if d.pattern_type in (PatternType.MEMORY, PatternType.HYBRID):
        op = d.metadata.get("operation")
        if d.operation is None:
            allowed = ", ".join(o.value for o in MemoryOperation)
            shown = "missing" if op is None else f"{op!r} is not an operation"
            out.append(FieldViolation(f"{p}.metadata.operation", f"{shown}; one of: {allowed}"))
    return out


def normalize_definition(d: PatternDefinition) -> PatternDefinition:
    """Canonical form: empty trigger → ``None``, examples stripped into a tuple, writes never cached.

    A write operation (``store``) gets ``cache_ttl`` 0 whatever was asked: writes
    are never cached (in the original seed implementation a repeated "store …" did not write again).
    """
    trigger = d.trigger_pattern or None
    examples = tuple(e.strip() for e in d.examples)
    ttl = 0 if d.is_write else d.cache_ttl
    return replace(d, trigger_pattern=trigger, examples=examples, cache_ttl=ttl, metadata=dict(d.metadata))


def definition_from_config(raw: Mapping[str, Any], *, default_cache_ttl: int = 300) -> PatternDefinition:
    """Build a definition from a YAML/JSON mapping (the keys of :class:`PatternDefinition`).

    ``cache_ttl`` defaults to ``default_cache_ttl`` when absent.

    Raises:
        ValueError: A required key is missing or ``pattern_type`` is unknown.
    """
    try:
        return PatternDefinition(
            name=raw["name"],
            # "memory" or "PATTERN_TYPE_MEMORY" (the proto enum name, also accepted by `patterns apply`).
            pattern_type=PatternType(str(raw["pattern_type"]).lower().removeprefix("pattern_type_")),
            trigger_pattern=raw.get("trigger_pattern"),
            cost_tokens=raw["cost_tokens"],
            priority=raw.get("priority", 0),
            cache_ttl=raw.get("cache_ttl", default_cache_ttl),
            metadata=dict(raw.get("metadata") or {}),
            description=raw.get("description", ""),
            examples=tuple(raw.get("examples") or ()),
            similarity_threshold=raw.get("similarity_threshold"),
        )
    except (KeyError, ValueError) as exc:
        raise ValueError(f"bad pattern definition {raw.get('name')!r}: {exc}") from exc


def _read_default_set(path: Path | None) -> Mapping[str, Any]:
    if path is None:
        text = resources.files("pattern_service.engine").joinpath("patterns.yaml").read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text) or {}
    return data if isinstance(data, Mapping) else {}


def load_default_definitions(path: Path | None = None, *, default_cache_ttl: int = 300) -> list[PatternDefinition]:
    """Read the default pattern set (the bundled ``patterns.yaml`` unless ``path`` is given)."""
    data = _read_default_set(path)
    return [definition_from_config(item, default_cache_ttl=default_cache_ttl) for item in data.get("patterns", [])]


def load_default_calibration(path: Path | None = None) -> tuple[RoutingCalibration, str | None]:
    """The confidence calibration shipped with a default pattern set and the embedder it was fitted for.

    Reads the set's ``calibration:`` key (absent = uncalibrated: confidence =
    raw score) and ``fitted_for:`` (the embedder ``model_id`` the calibration
    and the patterns' ``similarity_threshold`` values were fitted with).

    Raises:
        ValueError: The ``calibration`` entry is malformed.
    """
    data = _read_default_set(path)
    fitted_for = data.get("fitted_for")
    return RoutingCalibration.from_dict(data.get("calibration")), fitted_for if isinstance(fitted_for, str) else None
