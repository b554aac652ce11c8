"""``tmws-pattern execute-many``: stream queries from a file or stdin through ``ExecuteMany``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import stat
import sys
from collections.abc import AsyncIterator
from typing import IO, Any

import grpc

from tmws.pattern.client._cli_common import (
    EXIT_ERROR,
    EXIT_OK,
    Io,
    UsageError,
    error_to_dict,
    message_to_dict,
    positive_int,
    write_line,
)
from tmws.pattern.client._client import PatternClient
from tmws.pattern.client._convert import DEFAULT, TimeoutLike, to_struct
from tmws.pattern.client._enums import parse_execution_mode
from tmws.pattern.client._stream import ExecuteManyOutcome
from tmws.pattern.v1 import ExecuteManyRequest

_READ_BATCH_BYTES = 64 * 1024
MODES = ("fast", "balanced", "comprehensive")


class LineError(ValueError):
    """An input line that cannot become a request.

    Attributes:
        request_id: The line's own ``request_id`` when it gives a valid one, else its line number.
    """

    def __init__(self, request_id: str, message: str) -> None:
        super().__init__(message)
        self.request_id = request_id


def add_parser(commands: Any) -> None:
    """Add ``execute-many`` to the subcommands."""
    many = commands.add_parser(
        "execute-many",
        help="stream queries from a file or stdin",
        description=(
            "Stream queries through ExecuteMany and print one JSON object per result line: "
            '{"request_id", "result"} or {"request_id", "error": {"code", "message", "details"}}. '
            "Each input line is a query (request_id = line number) or, when it starts with '{', a JSON object "
            'with "query" and optional "request_id", "mode", "context", "use_cache". Blank lines are skipped. '
            "A progress bar (rate, ETA, errors) is drawn on stderr when it is a terminal. "
            "Exits 1 if any item failed (0 with --exit-zero)."
        ),
    )
    many.add_argument("file", nargs="?", default="-", help="input file, or - for stdin (default)")
    many.add_argument("--mode", choices=MODES, default=None, help="mode of lines that give none")
    many.add_argument("--window", type=positive_int, default=None, help="maximum requests in flight")
    many.add_argument("--no-cache", action="store_true", help="neither read nor fill the result cache")
    many.add_argument("--exit-zero", action="store_true", help="exit 0 even when items failed")
    many.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bar on stderr: auto = when stderr is a terminal (default)",
    )
    many.set_defaults(handler=execute_many)


class Progress:
    """A tqdm progress bar on stderr: done/total, rate, ETA and the error count.

    Args:
        err: Where to draw.
        total: Items expected (``None`` when reading a stream).
        enabled: Draw it at all.
    """

    def __init__(self, err: IO[str], total: int | None, enabled: bool) -> None:
        self._bar: Any = None
        self._errors = 0
        if enabled:
            from tqdm import tqdm

            try:
                columns = os.get_terminal_size(err.fileno()).columns
            except (OSError, ValueError, AttributeError):
                columns = 0
            # A terminal that reports no size (a fresh pty) gets 100x24 instead of a hidden bar.
            sizing: dict[str, Any] = {"dynamic_ncols": True} if columns > 0 else {"ncols": 100, "nrows": 24}
            self._bar = tqdm(total=total, file=err, unit="q", mininterval=0.1, postfix={"errors": 0}, **sizing)

    def update(self, failed: bool) -> None:
        """Count one finished item."""
        if self._bar is None:
            return
        if failed:
            self._errors += 1
            self._bar.set_postfix(errors=self._errors, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self._bar is not None:
            self._bar.close()


def _is_regular_file(stream: IO[str]) -> bool:
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):
        return False


def _count_queries(path: str) -> int:
    """Count the non-blank lines of a file without holding it in memory."""
    count = 0
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                count += 1
    return count


async def _read_lines(stream: IO[str]) -> AsyncIterator[str]:
    """Yield the lines of ``stream`` without blocking the event loop.

    Regular files are read in batches of about 64 KiB; pipes and terminals a
    line at a time, so that each query is sent as soon as it is written.
    """
    loop = asyncio.get_running_loop()
    if _is_regular_file(stream):
        while True:
            batch = await loop.run_in_executor(None, stream.readlines, _READ_BATCH_BYTES)
            if not batch:
                return
            for line in batch:
                yield line
    else:
        while True:
            line = await loop.run_in_executor(None, stream.readline)
            if not line:
                return
            yield line


def parse_line(line: str, line_number: int, default_mode: str | None, use_cache: bool | None) -> ExecuteManyRequest:
    """Parse one input line into a request.

    Raises:
        LineError: With a message naming what is wrong with the line, and the line's own
            ``request_id`` when it has a valid one (else the line number).
    """
    text = line.strip()
    if not text.startswith("{"):
        try:
            default = parse_execution_mode(default_mode)
        except ValueError as exc:
            raise LineError(str(line_number), f"line {line_number}: {exc}") from exc
        return ExecuteManyRequest(request_id=str(line_number), query=text, execution_mode=default, use_cache=use_cache)
    try:
        item = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LineError(str(line_number), f"line {line_number}: invalid JSON: {exc}") from exc
    if not isinstance(item, dict):
        raise LineError(str(line_number), f"line {line_number}: a JSON line must be an object")
    request_id = item.get("request_id", line_number)
    if not isinstance(request_id, str | int) or isinstance(request_id, bool):
        raise LineError(str(line_number), f'line {line_number}: "request_id" must be a string or an integer')
    rid = str(request_id)
    try:
        query = item.get("query")
        if not isinstance(query, str):
            raise ValueError('a JSON line needs a string "query"')
        mode = item.get("mode", item.get("execution_mode"))
        if mode is not None and not isinstance(mode, str | int):
            raise ValueError('"mode" must be a string')
        context = item.get("context")
        if context is not None and not isinstance(context, dict):
            raise ValueError('"context" must be an object')
        line_cache = item.get("use_cache", use_cache)
        if line_cache is not None and not isinstance(line_cache, bool):
            raise ValueError('"use_cache" must be a boolean')
        return ExecuteManyRequest(
            request_id=rid,
            query=query,
            execution_mode=parse_execution_mode(mode if mode is not None else default_mode),
            context=to_struct(context),
            use_cache=line_cache,
        )
    except (ValueError, TypeError) as exc:
        raise LineError(rid, f"line {line_number}: {exc}") from exc


async def execute_many(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    """Run ``execute-many``; returns the exit code."""
    show = args.progress == "always" or (args.progress == "auto" and io.err.isatty())
    if args.file == "-":
        stream: IO[str] = sys.stdin
        total = None
        close = False
    else:
        try:
            stream = await asyncio.to_thread(open, args.file, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
        close = True
        total = await asyncio.to_thread(_count_queries, args.file) if show else None
    use_cache = False if args.no_cache else None
    failed = 0
    progress = Progress(io.err, total, show)

    def record(outcome: ExecuteManyOutcome | LineError) -> None:
        nonlocal failed
        if isinstance(outcome, LineError):
            failed += 1
            error = {"code": grpc.StatusCode.INVALID_ARGUMENT.name, "message": str(outcome), "details": []}
            write_line({"request_id": outcome.request_id, "error": error}, io.out)
            progress.update(True)
        elif outcome.error is None:
            assert outcome.result is not None
            write_line({"request_id": outcome.request_id, "result": message_to_dict(outcome.result)}, io.out)
            progress.update(False)
        else:
            failed += 1
            write_line({"request_id": outcome.request_id, "error": error_to_dict(outcome.error)}, io.out)
            progress.update(True)

    async def requests() -> AsyncIterator[ExecuteManyRequest]:
        line_number = 0
        async for line in _read_lines(stream):
            line_number += 1
            if not line.strip():
                continue
            try:
                yield parse_line(line, line_number, args.mode, use_cache)
            except LineError as exc:
                record(exc)

    try:
        async with client.execute_many(
            requests(), max_in_flight=args.window, timeout=None if timeout is DEFAULT else timeout
        ) as results:
            async for outcome in results:
                record(outcome)
    finally:
        progress.close()
        if close:
            stream.close()
    return EXIT_ERROR if failed and not args.exit_zero else EXIT_OK
