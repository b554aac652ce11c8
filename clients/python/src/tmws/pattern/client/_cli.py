"""``tmws-pattern``: the command line of the Pattern Service.

Every command prints JSON on stdout (protobuf JSON with the proto field names,
``google.protobuf.json_format.MessageToDict``). Errors go to stderr with their
status code, message, reason and field violations; the exit code is 0 on
success, 1 on an error status (or, for ``execute-many``, when any item
failed), 2 on a usage error and 130 when interrupted.

Examples::

    tmws-pattern execute "check system health" --mode fast
    tmws-pattern route "recall what I noted about deployments" --context '{"agent": "ops"}'
    tmws-pattern match "speed up API responses" --requirement "p99 < 50 ms" --limit 5
    tmws-pattern execute-many queries.txt --mode balanced > results.jsonl
    tmws-pattern stats
    tmws-pattern eval labelled.jsonl --fit --plot report.png
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import stat
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import IO, Any, NoReturn

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from tmws.pattern.client._cli_eval import add_eval_parser, run_eval
from tmws.pattern.client._client import DEFAULT_TARGET, PatternClient
from tmws.pattern.client._convert import DEFAULT, TimeoutLike, to_struct
from tmws.pattern.client._enums import parse_execution_mode, parse_success_pattern_status
from tmws.pattern.client._errors import PatternServiceError
from tmws.pattern.client._stream import ExecuteManyOutcome
from tmws.pattern.client._version import __version__
from tmws.pattern.v1 import pattern_execution_service_pb2 as exec_pb2

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_MODES = ("fast", "balanced", "comprehensive")
_PROGRESS_INTERVAL = 0.1
_READ_BATCH_BYTES = 64 * 1024


class _UsageError(Exception):
    """A bad argument or input found after parsing (exit code 2)."""


def message_to_dict(message: Message) -> dict[str, Any]:
    """Convert a message to its JSON dict with proto field names and every field shown.

    Args:
        message: Any protobuf message.

    Returns:
        The dict ``json.dumps`` can print.
    """
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def error_to_dict(error: PatternServiceError) -> dict[str, Any]:
    """Convert an error to ``{"code", "message", "details"}`` (details as protobuf JSON).

    Args:
        error: A typed error.

    Returns:
        The dict.
    """
    return {
        "code": error.code.name,
        "message": error.message,
        "details": [json_format.MessageToDict(d, preserving_proto_field_name=True) for d in error.details],
    }


def _print_json(value: Any, out: IO[str]) -> None:
    out.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    out.flush()


def _print_error(error: PatternServiceError, err: IO[str]) -> None:
    err.write(f"error: {error.code.name}: {error.message}\n")
    info = error.error_info
    if info is not None and info.reason:
        err.write(f"  reason: {info.reason} ({info.domain})\n")
    for violation in error.field_violations:
        err.write(f"  field violation: {violation.field}: {violation.description}\n")
    if error.retry_delay is not None:
        err.write(f"  retry after: {error.retry_delay:g} s\n")
    err.flush()


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _metadata_pair(text: str) -> tuple[str, str | bytes]:
    key, sep, value = text.partition("=")
    key = key.strip().lower()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return (key, value.encode() if key.endswith("-bin") else value)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Build the ``tmws-pattern`` argument parser.

    Returns:
        The parser, with one subcommand per operation.
    """
    parser = argparse.ArgumentParser(
        prog="tmws-pattern",
        description="Command line of the TMWS Pattern Service. Prints JSON on stdout.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--target",
        default=os.environ.get("TMWS_TARGET") or DEFAULT_TARGET,
        help="host:port of the service (default: $TMWS_TARGET or %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=_positive_float, default=None, help="deadline of each call in seconds (default: 10)"
    )
    parser.add_argument(
        "--metadata",
        type=_metadata_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="call metadata (repeatable), e.g. authorization=Bearer...",
    )
    parser.add_argument("--tls", action="store_true", help="use TLS (system root certificates unless --ca-file)")
    parser.add_argument("--ca-file", default=None, help="PEM root certificates for --tls")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    execute = commands.add_parser("execute", help="execute one query", description="Execute one query (Execute).")
    execute.add_argument("query")
    execute.add_argument("--mode", choices=_MODES, default=None, help="execution mode (default: balanced)")
    execute.add_argument("--context", type=_json_object, default=None, metavar="JSON", help="context JSON object")
    execute.add_argument("--no-cache", action="store_true", help="neither read nor fill the result cache")
    execute.set_defaults(handler=_execute)

    route = commands.add_parser(
        "route", help="show the routing decision", description="Show the routing decision of a query (Route)."
    )
    route.add_argument("query")
    route.add_argument("--mode", choices=_MODES, default=None, help="execution mode (default: balanced)")
    route.add_argument("--context", type=_json_object, default=None, metavar="JSON", help="context JSON object")
    route.set_defaults(handler=_route)

    match = commands.add_parser(
        "match", help="find matching success patterns", description="Find success patterns (MatchPatterns)."
    )
    match.add_argument("intent")
    match.add_argument("--context", default="", help="free-text context")
    match.add_argument("--requirement", action="append", default=[], help="a requirement (repeatable)")
    match.add_argument("--limit", type=_positive_int, default=0, help="maximum matches (default: 10)")
    match.add_argument(
        "--min-confidence", type=float, default=None, help="minimum calibrated confidence (default: 0.3)"
    )
    match.add_argument("--tag", action="append", default=[], help="only patterns with this tag (repeatable)")
    match.add_argument("--pattern-type", action="append", default=[], help="only this category (repeatable)")
    match.add_argument("--status", action="append", default=[], help="only this status (repeatable)")
    match.add_argument("--min-quality-score", type=float, default=None)
    match.add_argument("--min-success-rate", type=float, default=None)
    match.set_defaults(handler=_match)

    many = commands.add_parser(
        "execute-many",
        help="stream queries from a file or stdin",
        description=(
            "Stream queries through ExecuteMany and print one JSON object per result line: "
            '{"request_id", "result"} or {"request_id", "error": {"code", "message", "details"}}. '
            "Each input line is a query (request_id = line number) or, when it starts with '{', a JSON object "
            'with "query" and optional "request_id", "mode", "context", "use_cache". Blank lines are skipped. '
            "Exits 1 if any item failed."
        ),
    )
    many.add_argument("file", nargs="?", default="-", help="input file, or - for stdin (default)")
    many.add_argument("--mode", choices=_MODES, default=None, help="mode of lines that give none")
    many.add_argument("--window", type=_positive_int, default=None, help="maximum requests in flight")
    many.add_argument("--no-cache", action="store_true", help="neither read nor fill the result cache")
    many.set_defaults(handler=_execute_many)

    stats = commands.add_parser("stats", help="show server statistics", description="Show statistics (GetStats).")
    stats.set_defaults(handler=_stats)
    add_eval_parser(commands, _eval)
    return parser


class _Io:
    """The output streams of one run."""

    def __init__(self, out: IO[str], err: IO[str]) -> None:
        self.out = out
        self.err = err


async def _execute(client: PatternClient, args: argparse.Namespace, io: _Io, timeout: TimeoutLike) -> int:
    result = await client.execute(
        args.query,
        execution_mode=args.mode,
        context=args.context,
        use_cache=False if args.no_cache else None,
        timeout=timeout,
    )
    _print_json(message_to_dict(result), io.out)
    return EXIT_OK


async def _route(client: PatternClient, args: argparse.Namespace, io: _Io, timeout: TimeoutLike) -> int:
    decision = await client.route(args.query, execution_mode=args.mode, context=args.context, timeout=timeout)
    _print_json(message_to_dict(decision), io.out)
    return EXIT_OK


async def _match(client: PatternClient, args: argparse.Namespace, io: _Io, timeout: TimeoutLike) -> int:
    try:
        statuses = [parse_success_pattern_status(s) for s in args.status]
    except ValueError as exc:
        raise _UsageError(f"--status: {exc}") from exc
    response = await client.match_patterns(
        args.intent,
        context=args.context,
        requirements=args.requirement,
        pattern_types=args.pattern_type,
        statuses=statuses,
        tags=args.tag,
        min_quality_score=args.min_quality_score,
        min_success_rate=args.min_success_rate,
        limit=args.limit,
        min_confidence=args.min_confidence,
        timeout=timeout,
    )
    _print_json(message_to_dict(response), io.out)
    return EXIT_OK


async def _eval(client: PatternClient, args: argparse.Namespace, io: _Io, timeout: TimeoutLike) -> int:
    try:
        return await run_eval(client, args, io.out, io.err, timeout)
    except (ValueError, RuntimeError) as exc:
        raise _UsageError(str(exc)) from exc


async def _stats(client: PatternClient, args: argparse.Namespace, io: _Io, timeout: TimeoutLike) -> int:
    _print_json(message_to_dict(await client.get_stats(timeout=timeout)), io.out)
    return EXIT_OK


class _Progress:
    """A ``[####....] done/total`` line on stderr, shown only when stderr is a terminal."""

    def __init__(self, err: IO[str], total: int | None) -> None:
        self._err = err
        self._total = total
        self._enabled = err.isatty()
        self._last = 0.0

    def update(self, done: int, *, force: bool = False) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < _PROGRESS_INTERVAL:
            return
        self._last = now
        if self._total:
            width = 30
            filled = min(width, width * done // self._total)
            self._err.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self._total}")
        else:
            self._err.write(f"\r[{done} done]")
        self._err.flush()

    def finish(self, done: int) -> None:
        if self._enabled:
            self.update(done, force=True)
            self._err.write("\n")
            self._err.flush()


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


def _parse_line(
    line: str, line_number: int, default_mode: str | None, use_cache: bool | None
) -> exec_pb2.ExecuteManyRequest:
    """Parse one input line into a request.

    Raises:
        ValueError: With a message naming what is wrong with the line.
    """
    text = line.strip()
    if not text.startswith("{"):
        return exec_pb2.ExecuteManyRequest(
            request_id=str(line_number),
            query=text,
            execution_mode=parse_execution_mode(default_mode),
            use_cache=use_cache,
        )
    try:
        item = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from exc
    if not isinstance(item, dict):
        raise ValueError("a JSON line must be an object")
    query = item.get("query")
    if not isinstance(query, str):
        raise ValueError('a JSON line needs a string "query"')
    request_id = item.get("request_id", line_number)
    if not isinstance(request_id, str | int) or isinstance(request_id, bool):
        raise ValueError('"request_id" must be a string or an integer')
    mode = item.get("mode", item.get("execution_mode"))
    if mode is not None and not isinstance(mode, str | int):
        raise ValueError('"mode" must be a string')
    context = item.get("context")
    if context is not None and not isinstance(context, dict):
        raise ValueError('"context" must be an object')
    line_cache = item.get("use_cache", use_cache)
    if line_cache is not None and not isinstance(line_cache, bool):
        raise ValueError('"use_cache" must be a boolean')
    return exec_pb2.ExecuteManyRequest(
        request_id=str(request_id),
        query=query,
        execution_mode=parse_execution_mode(mode if mode is not None else default_mode),
        context=to_struct(context),
        use_cache=line_cache,
    )


def _write_line(record: dict[str, Any], out: IO[str]) -> None:
    out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
    out.flush()


async def _execute_many(client: PatternClient, args: argparse.Namespace, io: _Io, timeout: TimeoutLike) -> int:
    if args.file == "-":
        stream: IO[str] = sys.stdin
        total = None
        close = False
    else:
        try:
            stream = await asyncio.to_thread(open, args.file, encoding="utf-8")
        except OSError as exc:
            raise _UsageError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
        close = True
        total = await asyncio.to_thread(_count_queries, args.file) if io.err.isatty() else None
    use_cache = False if args.no_cache else None
    failed = 0
    done = 0
    progress = _Progress(io.err, total)

    def record(outcome: ExecuteManyOutcome | tuple[str, PatternServiceError | ValueError]) -> None:
        nonlocal failed, done
        done += 1
        if isinstance(outcome, ExecuteManyOutcome):
            if outcome.error is None:
                assert outcome.result is not None
                _write_line({"request_id": outcome.request_id, "result": message_to_dict(outcome.result)}, io.out)
            else:
                failed += 1
                _write_line({"request_id": outcome.request_id, "error": error_to_dict(outcome.error)}, io.out)
        else:
            failed += 1
            request_id, error = outcome
            _write_line(
                {
                    "request_id": request_id,
                    "error": {"code": grpc.StatusCode.INVALID_ARGUMENT.name, "message": str(error), "details": []},
                },
                io.out,
            )
        progress.update(done)

    async def requests() -> AsyncIterator[exec_pb2.ExecuteManyRequest]:
        line_number = 0
        async for line in _read_lines(stream):
            line_number += 1
            if not line.strip():
                continue
            try:
                yield _parse_line(line, line_number, args.mode, use_cache)
            except (ValueError, TypeError) as exc:
                record((str(line_number), ValueError(f"line {line_number}: {exc}")))

    try:
        async with client.execute_many(
            requests(), max_in_flight=args.window, timeout=None if timeout is DEFAULT else timeout
        ) as results:
            async for outcome in results:
                record(outcome)
    finally:
        progress.finish(done)
        if close:
            stream.close()
    return EXIT_ERROR if failed else EXIT_OK


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


_Handler = Callable[[PatternClient, argparse.Namespace, _Io, TimeoutLike], Awaitable[int]]


async def _run(args: argparse.Namespace, io: _Io) -> int:
    credentials: grpc.ChannelCredentials | None = None
    if args.tls or args.ca_file:
        root: bytes | None = None
        if args.ca_file:
            try:
                root = await asyncio.to_thread(_read_bytes, args.ca_file)
            except OSError as exc:
                raise _UsageError(f"cannot read {args.ca_file}: {exc.strerror or exc}") from exc
        credentials = grpc.ssl_channel_credentials(root_certificates=root)
    handler: _Handler = args.handler
    timeout: TimeoutLike = args.timeout if args.timeout is not None else DEFAULT
    async with PatternClient.connect(args.target, credentials=credentials, metadata=args.metadata) as client:
        try:
            return await handler(client, args, io, timeout)
        except PatternServiceError as error:
            _print_error(error, io.err)
            return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tmws-pattern`` command line.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success, 1 on an error status (or a failed
        ``execute-many`` item), 2 on a usage error, 130 when interrupted.

    Raises:
        SystemExit: With code 2 for invalid arguments (from ``argparse``), or
            0 for ``--help``/``--version``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    io = _Io(sys.stdout, sys.stderr)
    try:
        return asyncio.run(_run(args, io))
    except _UsageError as exc:
        _usage_error(parser, str(exc))
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `| head`): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR


def _usage_error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    parser.exit(EXIT_USAGE, f"{parser.prog}: error: {message}\n")
