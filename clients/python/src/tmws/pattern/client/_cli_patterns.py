"""``tmws-pattern patterns apply|list|get|delete|export``: pattern definitions as an admin manages them.

``apply`` is declarative, like ``kubectl apply``: it reads a pattern file
(:mod:`tmws.pattern.client._patterns_yaml`), asks the server to validate and
normalise it (``RegisterBatch`` with ``validate_only``), compares the result
with what is registered and shows the diff — added, changed (field by field)
and, with ``--prune``, deleted. Without ``--dry-run`` it then registers the
added and changed definitions with ``RegisterBatch`` (atomic: all or none, in
batches of 1,000) and deletes the pruned ones. The diff goes to stderr as
text and to stdout as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import IO, Any

from tmws.pattern.client._cli_common import (
    EXIT_OK,
    Io,
    UsageError,
    add_layer_argument,
    layer_of,
    message_to_dict,
    print_json,
    require_cli_extra,
)
from tmws.pattern.client._client import PatternClient
from tmws.pattern.client._convert import TimeoutLike
from tmws.pattern.client._patterns_yaml import PatternFileError, comparable, dump_pattern_file, load_pattern_file
from tmws.pattern.v1 import PatternDefinition

#: Largest ``RegisterBatch`` the server accepts.
MAX_BATCH = 1000


def add_parser(commands: Any) -> None:
    """Add the ``patterns`` command group to the subcommands."""
    patterns = commands.add_parser(
        "patterns", help="manage pattern definitions", description="Manage pattern definitions."
    )
    sub = patterns.add_subparsers(dest="patterns_command", required=True, metavar="ACTION")

    apply = sub.add_parser(
        "apply",
        help="make the registered definitions match a file",
        description=(
            "Register the definitions of a pattern file (YAML, the layout of the server's patterns.yaml) "
            "that are new or changed; with --prune also delete the registered ones the file lacks. "
            "Shows the diff first (stderr as text, stdout as JSON). --dry-run validates on the server "
            "and changes nothing."
        ),
    )
    apply.add_argument("-f", "--file", required=True, help="pattern file, or - for stdin")
    apply.add_argument("--prune", action="store_true", help="delete registered definitions not in the file")
    apply.add_argument("--dry-run", action="store_true", help="validate and show the diff; change nothing")
    add_layer_argument(apply)
    apply.set_defaults(handler=_apply)

    listing = sub.add_parser("list", help="list definitions", description="List every definition (JSON array).")
    listing.add_argument("--type", dest="pattern_type", default=None, help="only this pattern type")
    listing.set_defaults(handler=_list)

    get = sub.add_parser("get", help="show one definition", description="Show one definition (GetPatternDefinition).")
    get.add_argument("name")
    get.set_defaults(handler=_get)

    delete = sub.add_parser("delete", help="delete definitions", description="Delete definitions by name.")
    delete.add_argument("names", nargs="+", metavar="NAME")
    add_layer_argument(delete)
    delete.set_defaults(handler=_delete)

    export = sub.add_parser(
        "export", help="write every definition as a pattern file", description="Write the pattern file apply reads."
    )
    export.add_argument("-o", "--output", default="-", help="file to write, or - for stdout (default)")
    export.set_defaults(handler=_export)


def _read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


async def _all(client: PatternClient, timeout: TimeoutLike) -> list[PatternDefinition]:
    return [d async for d in client.iter_all_pattern_definitions(page_size=1000, timeout=timeout)]


def _changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        key: {"from": old.get(key), "to": new.get(key)}
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    }


def _render(plan: dict[str, Any], err: IO[str]) -> None:
    for name in plan["added"]:
        err.write(f"+ {name}\n")
    for change in plan["changed"]:
        err.write(f"~ {change['name']}\n")
        for field, values in change["changes"].items():
            err.write(f"    {field}: {values['from']!r} -> {values['to']!r}\n")
    for name in plan["deleted"]:
        err.write(f"- {name}\n")
    for name in plan["not_in_file"]:
        err.write(f"  {name} (registered, not in the file: kept; --prune deletes it)\n")
    summary = (
        f"{len(plan['added'])} added, {len(plan['changed'])} changed, {len(plan['deleted'])} deleted, "
        f"{len(plan['unchanged'])} unchanged"
    )
    err.write(f"{'dry run (nothing changed): ' if plan['dry_run'] else 'applied: '}{summary}\n")
    err.flush()


async def _apply(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    require_cli_extra("yaml")
    try:
        text = await asyncio.to_thread(_read_text, args.file)
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
    try:
        desired = load_pattern_file(text, "<stdin>" if args.file == "-" else args.file)
    except PatternFileError as exc:
        raise UsageError(str(exc)) from exc
    layer = layer_of(args)
    current = {d.name: d for d in await _all(client, timeout)}
    # The server's own validation and normal form (what it would store), so that the diff is exact.
    normalized: list[PatternDefinition] = []
    for start in range(0, len(desired), MAX_BATCH):
        checked = await client.register_batch(
            desired[start : start + MAX_BATCH], validate_only=True, layer=layer, timeout=timeout
        )
        normalized.extend(checked.pattern_definitions)
    plan: dict[str, Any] = {
        "dry_run": args.dry_run,
        "added": [],
        "changed": [],
        "deleted": [],
        "unchanged": [],
        "not_in_file": [],
    }
    to_register: list[PatternDefinition] = []
    for wanted, original in zip(normalized, desired, strict=True):
        existing = current.get(wanted.name)
        if existing is None:
            plan["added"].append(wanted.name)
            to_register.append(original)
            continue
        changes = _changes(comparable(existing), comparable(wanted))
        if changes:
            plan["changed"].append({"name": wanted.name, "changes": changes})
            to_register.append(original)
        else:
            plan["unchanged"].append(wanted.name)
    in_file = {d.name for d in desired}
    # Prune only the layer the server writes these definitions to (--layer, or by default a tenant
    # admin's own layer; the global one it sees but cannot delete stays).
    target = normalized[0].layer if normalized else layer
    extra = [name for name, d in current.items() if name not in in_file and (not target or d.layer == target)]
    plan["deleted" if args.prune else "not_in_file"] = extra
    if not args.dry_run:
        for start in range(0, len(to_register), MAX_BATCH):
            await client.register_batch(to_register[start : start + MAX_BATCH], layer=layer, timeout=timeout)
        for name in plan["deleted"]:
            await client.delete_pattern_definition(name, layer=layer, timeout=timeout)
    _render(plan, io.err)
    print_json(plan, io.out)
    return EXIT_OK


async def _list(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    try:
        definitions = [
            message_to_dict(d)
            async for d in client.iter_all_pattern_definitions(
                page_size=1000, pattern_type=args.pattern_type, timeout=timeout
            )
        ]
    except ValueError as exc:
        raise UsageError(f"--type: {exc}") from exc
    print_json(definitions, io.out)
    return EXIT_OK


async def _get(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    print_json(message_to_dict(await client.get_pattern_definition(args.name, timeout=timeout)), io.out)
    return EXIT_OK


async def _delete(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    versions: dict[str, int] = {}
    for name in args.names:
        deleted = await client.delete_pattern_definition(name, layer=layer_of(args), timeout=timeout)
        versions[name] = int(deleted.registry_version)
    print_json({"deleted": list(versions), "registry_version": max(versions.values())}, io.out)
    return EXIT_OK


async def _export(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    require_cli_extra("yaml")
    text = dump_pattern_file(await _all(client, timeout))
    if args.output == "-":
        io.out.write(text)
        io.out.flush()
    else:
        try:
            await asyncio.to_thread(_write_text, args.output, text)
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    return EXIT_OK


__all__: Sequence[str] = ["add_parser"]
