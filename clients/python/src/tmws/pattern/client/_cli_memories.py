"""``tmws-pattern memories list|get|create|update|delete|purge|search|import`` (``MemoryService``).

Output is JSON Lines: one protobuf-JSON ``Memory`` per line (``search``: one
``{"score", "memory"}`` per line; ``purge``/``delete``: one summary line).
``import FILE.jsonl`` reads one ``Memory`` JSON object per line (``-`` for
stdin) and streams them through ``BatchCreateMemories`` in chunks of at most
1,000 (each chunk atomic), with a progress bar on stderr; it prints each
created memory. A chunk's deadline is 600 s unless ``--timeout`` says
otherwise (the server answers once the chunk is stored and embedded). A bad
line stops the import before its chunk is sent; the chunks sent before it
stay stored (the error says how many memories that was).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import stat
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from typing import IO, Any

from google.protobuf import json_format

from tmws.pattern.client._cli_common import (
    EXIT_ERROR,
    EXIT_OK,
    Io,
    UsageError,
    json_object,
    message_to_dict,
    positive_float,
    positive_int,
    print_error,
    require_cli_extra,
    write_line,
)
from tmws.pattern.client._client import PatternClient
from tmws.pattern.client._convert import DEFAULT, TimeoutLike
from tmws.pattern.client._errors import InvalidArgument
from tmws.pattern.client._memories import MAX_BATCH_CREATE, memory_filter, new_memory
from tmws.pattern.v1 import Memory, MemoryFilter

_REQUEST_INDEX = re.compile(r"^requests\[(\d+)\]")
#: Deadline in seconds of one import chunk (and of a purge) without ``--timeout``: the server answers
#: once the chunk is stored and embedded, which for 1,000 memories can take longer than a default deadline.
IMPORT_CHUNK_TIMEOUT = 600.0


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 timestamp: {text!r}") from exc
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a UTC offset (e.g. Z or +00:00): {text!r}")
    return value


def _add_filter(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agent", default="", help="only this agent's memories")
    parser.add_argument("--type", dest="memory_type", default="", help="only this memory type")
    parser.add_argument("--tag", action="append", default=[], help="carrying this tag or another --tag (repeatable)")
    parser.add_argument("--all-tag", action="append", default=[], help="carrying this tag too (repeatable)")
    parser.add_argument("--min-importance", type=float, default=None)
    parser.add_argument("--max-importance", type=float, default=None)
    parser.add_argument("--created-after", type=_timestamp, default=None, help="RFC 3339, inclusive")
    parser.add_argument("--created-before", type=_timestamp, default=None, help="RFC 3339, inclusive")


def _filter(args: argparse.Namespace) -> MemoryFilter:
    return memory_filter(
        agent_id=args.agent,
        memory_type=args.memory_type,
        tags_any=args.tag,
        tags_all=args.all_tag,
        min_importance=args.min_importance,
        max_importance=args.max_importance,
        created_after=args.created_after,
        created_before=args.created_before,
    )


def add_parser(commands: Any) -> None:
    """Add the ``memories`` command group to the subcommands."""
    group = commands.add_parser("memories", help="manage agent memories (MemoryService)", description=__doc__)
    sub = group.add_subparsers(dest="memories_command", required=True, metavar="ACTION")

    listing = sub.add_parser("list", help="list memories, every page (JSONL)")
    _add_filter(listing)
    listing.add_argument("--order-by", default="", help="create_time desc (default), create_time, importance [desc]")
    listing.add_argument("--limit", type=positive_int, default=None, help="stop after this many")
    listing.set_defaults(handler=_list)

    get = sub.add_parser("get", help="show one memory (GetMemory)")
    get.add_argument("memory_id")
    get.set_defaults(handler=_get)

    create = sub.add_parser("create", help="create one memory (CreateMemory)")
    create.add_argument("content")
    create.add_argument("--agent", default="")
    create.add_argument("--type", dest="memory_type", default="", help="default: general")
    create.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")
    create.add_argument("--importance", type=float, default=None, help="in [0, 1] (default 0.5)")
    create.add_argument("--metadata", type=json_object, default=None, help="extra data as a JSON object")
    expiry = create.add_mutually_exclusive_group()
    expiry.add_argument("--ttl", type=positive_float, default=None, help="seconds to live")
    expiry.add_argument("--expire-time", type=_timestamp, default=None, help="RFC 3339 expiry time")
    create.set_defaults(handler=_create)

    update = sub.add_parser("update", help="update fields of a memory (UpdateMemory)")
    update.add_argument("memory_id")
    update.add_argument("--json", required=True, metavar="JSON", help="the new values as Memory JSON")
    update.add_argument("--mask", default=None, help="comma-separated fields (default: the JSON's fields)")
    update.set_defaults(handler=_update)

    delete = sub.add_parser("delete", help="delete one memory (DeleteMemory)")
    delete.add_argument("memory_id")
    delete.set_defaults(handler=_delete)

    purge = sub.add_parser("purge", help="delete the memories passing a filter (PurgeMemories); preview by default")
    _add_filter(purge)
    purge.add_argument("--all", action="store_true", help="no filter: every memory of the tenant")
    purge.add_argument("--force", action="store_true", help="actually delete (default: only count)")
    purge.set_defaults(handler=_purge)

    search = sub.add_parser("search", help="search memories by meaning (SearchMemories, JSONL)")
    search.add_argument("query")
    _add_filter(search)
    search.add_argument("--min-score", type=float, default=None, help="relevance floor (default: the server's)")
    search.add_argument("--limit", type=positive_int, default=0, help="memories considered (default 10)")
    search.set_defaults(handler=_search)

    importing = sub.add_parser("import", help="create the memories of a JSONL file (BatchCreateMemories)")
    importing.add_argument("file", help="one Memory JSON object per line, or - for stdin")
    importing.add_argument(
        "--batch-size", type=positive_int, default=MAX_BATCH_CREATE, help="memories per call (at most 1000)"
    )
    importing.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bar on stderr: auto = when stderr is a terminal (default)",
    )
    importing.set_defaults(handler=_import)


async def _list(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    count = 0
    page_size = min(args.limit or 1000, 1000)
    async for memory in client.iter_all_memories(
        filter=_filter(args), order_by=args.order_by, page_size=page_size, timeout=timeout
    ):
        write_line(message_to_dict(memory), io.out)
        count += 1
        if args.limit is not None and count >= args.limit:
            break
    return EXIT_OK


async def _get(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    write_line(message_to_dict(await client.get_memory(args.memory_id, timeout=timeout)), io.out)
    return EXIT_OK


async def _create(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    memory = new_memory(
        args.content,
        agent_id=args.agent,
        memory_type=args.memory_type,
        tags=args.tag,
        importance=args.importance,
        metadata=args.metadata,
        expire_time=args.expire_time,
        ttl=args.ttl,
    )
    write_line(message_to_dict(await client.create_memory(memory, timeout=timeout)), io.out)
    return EXIT_OK


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


async def _update(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    raw = json_object(args.json)
    try:
        memory = json_format.ParseDict(raw, Memory())
    except json_format.ParseError as exc:
        raise UsageError(f"not a Memory: {exc}") from exc
    memory.memory_id = args.memory_id
    mask = args.mask or ",".join(_snake(key) for key in raw if _snake(key) != "memory_id")
    if not mask:
        raise UsageError("nothing to update: give fields in --json or --mask")
    write_line(message_to_dict(await client.update_memory(memory, mask, timeout=timeout)), io.out)
    return EXIT_OK


async def _delete(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    await client.delete_memory(args.memory_id, timeout=timeout)
    write_line({"deleted": args.memory_id}, io.out)
    return EXIT_OK


async def _purge(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    if timeout is DEFAULT:
        timeout = IMPORT_CHUNK_TIMEOUT  # a purge of many thousands of memories outlasts a default deadline
    flt = _filter(args)
    if flt.ByteSize() == 0 and not args.all:
        raise UsageError("purge needs a filter (--agent, --tag, ...) or --all for every memory of the tenant")
    response = await client.purge_memories(flt, force=args.force, timeout=timeout)
    write_line({**message_to_dict(response), "forced": args.force}, io.out)
    return EXIT_OK


async def _search(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    response = await client.search_memories(
        args.query, filter=_filter(args), min_score=args.min_score, limit=args.limit, timeout=timeout
    )
    for result in response.results:
        write_line({"score": result.score, "memory": message_to_dict(result.memory)}, io.out)
    return EXIT_OK


def _open(path: str) -> IO[str]:
    if path == "-":
        return sys.stdin
    try:
        return open(path, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _count_lines(stream: IO[str]) -> int | None:
    try:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            return None
        with open(stream.fileno(), encoding="utf-8", errors="replace", closefd=False) as again:
            count = sum(1 for line in again if line.strip())
        stream.seek(0)
        return count
    except (OSError, ValueError, AttributeError):
        return None


async def _chunks(stream: IO[str], size: int) -> AsyncIterator[list[tuple[int, Memory]]]:
    """(line number, memory) chunks of ``size``; a bad line raises before its chunk is yielded."""
    chunk: list[tuple[int, Memory]] = []
    number = 0
    while True:
        lines = await asyncio.to_thread(stream.readlines, 1 << 16)
        if not lines:
            break
        for line in lines:
            number += 1
            if not line.strip():
                continue
            try:
                chunk.append((number, json_format.Parse(line, Memory())))
            except json_format.ParseError as exc:
                raise UsageError(f"line {number}: not a Memory JSON object: {exc}") from exc
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


async def _import(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    if args.batch_size > MAX_BATCH_CREATE:
        raise UsageError(f"--batch-size must be at most {MAX_BATCH_CREATE}")
    if timeout is DEFAULT:
        timeout = IMPORT_CHUNK_TIMEOUT
    stream = _open(args.file)
    show = args.progress == "always" or (args.progress == "auto" and io.err.isatty())
    bar: Any = None
    imported = 0
    try:
        if show:
            tqdm = require_cli_extra("tqdm").tqdm
            bar = tqdm(total=_count_lines(stream), file=io.err, unit="memory", mininterval=0.1, ncols=100)
        async for chunk in _chunks(stream, args.batch_size):
            try:
                created = await client.batch_create_memories([m for _, m in chunk], timeout=timeout)
            except InvalidArgument as error:
                print_error(error, io.err)
                lines = sorted(
                    {chunk[int(m[1])][0] for v in error.field_violations if (m := _REQUEST_INDEX.match(v.field))}
                )
                io.err.write(f"  bad file lines: {lines}; {imported} memories before this chunk were imported\n")
                return EXIT_ERROR
            for memory in created:
                write_line(message_to_dict(memory), io.out)
            imported += len(created)
            if bar is not None:
                bar.update(len(created))
    finally:
        if bar is not None:
            bar.close()
        if stream is not sys.stdin:
            stream.close()
    return EXIT_OK
