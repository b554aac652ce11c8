"""Pattern definitions as YAML: the file ``patterns apply`` reads and ``patterns export`` writes.

The layout is the server's own default set (``pattern_service/engine/patterns.yaml``,
also what ``TMWS_PATTERNS_FILE`` names)::

    patterns:
      - name: quick_calculation
        pattern_type: infrastructure        # or PATTERN_TYPE_INFRASTRUCTURE
        trigger_pattern: '\\b(calculate|compute)\\s+\\S'
        cost_tokens: 20
        priority: 8
        cache_ttl: 300
        description: Evaluate an arithmetic expression.
        examples: [what is 2 plus 2]
        metadata: {tool: calculate}

Every key is a ``PatternDefinition`` field (proto field names); the output-only
``create_time`` and ``update_time`` are ignored on input and never written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import json_format

from tmws.pattern.client._cli_common import integral
from tmws.pattern.client._enums import parse_pattern_type, pattern_type_name
from tmws.pattern.v1 import PatternDefinition, PatternType

OUTPUT_ONLY = ("create_time", "update_time")


class PatternFileError(ValueError):
    """The YAML is not a valid pattern file (the message names the entry and the problem)."""


def definition_from_mapping(raw: Any, where: str) -> PatternDefinition:
    """One ``patterns:`` entry as a ``PatternDefinition``.

    Args:
        raw: The entry.
        where: Its position, for messages (``patterns[3]``).

    Raises:
        PatternFileError: Not a mapping, an unknown key, a wrong type or an unknown pattern type.
    """
    if not isinstance(raw, Mapping):
        raise PatternFileError(f"{where}: must be a mapping of PatternDefinition fields")
    fields = {key: value for key, value in raw.items() if key not in OUTPUT_ONLY}
    label = f"{where} ({fields.get('name')!r})" if fields.get("name") else where
    if "pattern_type" in fields:
        try:
            fields["pattern_type"] = PatternType.Name(parse_pattern_type(fields["pattern_type"]))
        except (ValueError, TypeError) as exc:
            raise PatternFileError(f"{label}: pattern_type: {exc}") from exc
    try:
        return json_format.ParseDict(fields, PatternDefinition())
    except json_format.ParseError as exc:
        raise PatternFileError(f"{label}: {exc}") from exc


def load_pattern_file(text: str, source: str) -> list[PatternDefinition]:
    """Parse a pattern file.

    Args:
        text: The YAML.
        source: Its name, for messages.

    Returns:
        The definitions, in file order.

    Raises:
        PatternFileError: Invalid YAML, no ``patterns`` list, a bad entry, or a name given twice.
    """
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PatternFileError(f"{source}: invalid YAML: {exc}") from exc
    if not isinstance(data, Mapping) or not isinstance(data.get("patterns"), list):
        raise PatternFileError(f"{source}: expected a mapping with a 'patterns' list")
    definitions = [definition_from_mapping(raw, f"{source}: patterns[{i}]") for i, raw in enumerate(data["patterns"])]
    seen: dict[str, int] = {}
    for i, definition in enumerate(definitions):
        if definition.name in seen:
            raise PatternFileError(
                f"{source}: patterns[{i}]: name {definition.name!r} is also patterns[{seen[definition.name]}]"
            )
        seen[definition.name] = i
    return definitions


def comparable(definition: PatternDefinition) -> dict[str, Any]:
    """Every field but the output-only ones, defaults included (what ``apply`` compares)."""
    data = json_format.MessageToDict(
        definition, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    for key in OUTPUT_ONLY:
        data.pop(key, None)
    result: dict[str, Any] = integral(data)
    return result


def definition_to_mapping(definition: PatternDefinition) -> dict[str, Any]:
    """A definition as a file entry: short ``pattern_type``, empty fields left out, output-only fields dropped."""
    data = json_format.MessageToDict(definition, preserving_proto_field_name=True)
    for key in OUTPUT_ONLY:
        data.pop(key, None)
    data["pattern_type"] = pattern_type_name(definition.pattern_type)
    order = ["name", "pattern_type", "trigger_pattern", "cost_tokens", "priority", "cache_ttl", "description"]
    ordered = {key: data.pop(key) for key in order if key in data}
    ordered.update(data)
    result: dict[str, Any] = integral(ordered)
    return result


def dump_pattern_file(definitions: Iterable[PatternDefinition]) -> str:
    """The YAML of a pattern file holding ``definitions`` (what :func:`load_pattern_file` reads back)."""
    import yaml

    entries = [definition_to_mapping(d) for d in definitions]
    return yaml.safe_dump({"patterns": entries}, sort_keys=False, allow_unicode=True, width=120)
