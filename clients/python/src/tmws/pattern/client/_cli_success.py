"""``tmws-pattern success-patterns create|get|list|update|delete|record|match`` (the learning store).

Patterns are given and printed as protobuf JSON of ``SuccessPattern`` (proto or
JSON field names), from ``--json`` or a file (``-f``, ``-`` for stdin).
``update`` changes the fields named by ``--mask`` (default: the top-level
fields of the given JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from google.protobuf import json_format

from tmws.pattern.client._cli_common import EXIT_OK, Io, UsageError, message_to_dict, positive_int, print_json
from tmws.pattern.client._client import PatternClient
from tmws.pattern.client._convert import TimeoutLike
from tmws.pattern.client._enums import parse_success_pattern_status
from tmws.pattern.v1 import SuccessPattern


def add_match_arguments(match: argparse.ArgumentParser) -> None:
    """The arguments of ``match`` (also the top-level ``tmws-pattern match``)."""
    match.add_argument("intent")
    match.add_argument("--context", default="", help="free-text context")
    match.add_argument("--requirement", action="append", default=[], help="a requirement (repeatable)")
    match.add_argument("--limit", type=positive_int, default=0, help="maximum matches (default: 10)")
    match.add_argument("--min-confidence", type=float, default=None, help="minimum similarity (default: 0.3)")
    match.add_argument("--tag", action="append", default=[], help="only patterns with this tag (repeatable)")
    match.add_argument("--pattern-type", action="append", default=[], help="only this category (repeatable)")
    match.add_argument("--status", action="append", default=[], help="only this status (repeatable)")
    match.add_argument("--min-quality-score", type=float, default=None)
    match.add_argument("--min-success-rate", type=float, default=None)
    match.set_defaults(handler=match_command)


def add_parser(commands: Any) -> None:
    """Add the ``success-patterns`` command group to the subcommands."""
    group = commands.add_parser(
        "success-patterns", help="manage the learning store's success patterns", description=__doc__
    )
    sub = group.add_subparsers(dest="success_command", required=True, metavar="ACTION")

    create = sub.add_parser("create", help="create a pattern (CreateSuccessPattern)")
    _add_input(create)
    create.set_defaults(handler=_create)

    get = sub.add_parser("get", help="show a pattern (GetSuccessPattern)")
    get.add_argument("pattern_id")
    get.set_defaults(handler=_get)

    listing = sub.add_parser("list", help="list patterns (JSON array, every page)")
    listing.add_argument("--type", dest="pattern_type", default="", help="only this category")
    listing.add_argument("--status", action="append", default=[], help="only this status (repeatable)")
    listing.set_defaults(handler=_list)

    update = sub.add_parser("update", help="update fields of a pattern (UpdateSuccessPattern)")
    update.add_argument("pattern_id")
    _add_input(update)
    update.add_argument("--mask", default=None, help="comma-separated fields to update (default: those given)")
    update.set_defaults(handler=_update)

    delete = sub.add_parser("delete", help="delete a pattern (DeleteSuccessPattern)")
    delete.add_argument("pattern_id")
    delete.set_defaults(handler=_delete)

    record = sub.add_parser("record", help="record one use and its outcome (RecordPatternOutcome)")
    record.add_argument("pattern_id")
    outcome = record.add_mutually_exclusive_group(required=True)
    outcome.add_argument("--success", dest="success", action="store_true")
    outcome.add_argument("--failure", dest="success", action="store_false")
    record.set_defaults(handler=_record)

    add_match_arguments(sub.add_parser("match", help="find matching patterns (MatchPatterns)"))


def _add_input(parser: argparse.ArgumentParser) -> None:
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--json", default=None, metavar="JSON", help="the SuccessPattern as JSON")
    given.add_argument("-f", "--file", default=None, help="file holding the SuccessPattern JSON, or - for stdin")


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as handle:
        return handle.read()


async def _pattern(args: argparse.Namespace) -> tuple[SuccessPattern, dict[str, Any]]:
    try:
        text = args.json if args.json is not None else await asyncio.to_thread(_read, args.file)
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise UsageError("the success pattern must be a JSON object")
    try:
        return json_format.ParseDict(raw, SuccessPattern()), raw
    except json_format.ParseError as exc:
        raise UsageError(f"not a SuccessPattern: {exc}") from exc


async def _create(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    pattern, _ = await _pattern(args)
    print_json(message_to_dict(await client.create_success_pattern(pattern, timeout=timeout)), io.out)
    return EXIT_OK


async def _get(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    print_json(message_to_dict(await client.get_success_pattern(args.pattern_id, timeout=timeout)), io.out)
    return EXIT_OK


def _statuses(values: list[str]) -> list[Any]:
    try:
        return [parse_success_pattern_status(s) for s in values]
    except ValueError as exc:
        raise UsageError(f"--status: {exc}") from exc


async def _list(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    patterns = [
        message_to_dict(p)
        async for p in client.iter_all_success_patterns(
            page_size=1000, pattern_type=args.pattern_type, statuses=_statuses(args.status), timeout=timeout
        )
    ]
    print_json(patterns, io.out)
    return EXIT_OK


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


async def _update(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    pattern, raw = await _pattern(args)
    pattern.pattern_id = args.pattern_id
    mask = args.mask or ",".join(_snake(key) for key in raw if _snake(key) != "pattern_id")
    if not mask:
        raise UsageError("nothing to update: give fields in the JSON or --mask")
    print_json(message_to_dict(await client.update_success_pattern(pattern, mask, timeout=timeout)), io.out)
    return EXIT_OK


async def _delete(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    await client.delete_success_pattern(args.pattern_id, timeout=timeout)
    print_json({"deleted": args.pattern_id}, io.out)
    return EXIT_OK


async def _record(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    updated = await client.record_pattern_outcome(args.pattern_id, args.success, timeout=timeout)
    print_json(message_to_dict(updated), io.out)
    return EXIT_OK


async def match_command(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    """Run ``MatchPatterns`` and print the response."""
    response = await client.match_patterns(
        args.intent,
        context=args.context,
        requirements=args.requirement,
        pattern_types=args.pattern_type,
        statuses=_statuses(args.status),
        tags=args.tag,
        min_quality_score=args.min_quality_score,
        min_success_rate=args.min_success_rate,
        limit=args.limit,
        min_confidence=args.min_confidence,
        timeout=timeout,
    )
    print_json(message_to_dict(response), io.out)
    return EXIT_OK
