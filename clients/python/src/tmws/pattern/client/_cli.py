"""``tmws-pattern``: the command line of the Pattern Service.

Every command prints JSON on stdout (protobuf JSON with the proto field names,
``google.protobuf.json_format.MessageToDict``). Errors go to stderr with their
status code, message, reason and field violations; the exit code is 0 on
success, 1 on an error status (or, for ``execute-many``, when any item
failed), 2 on a usage error, 3 when ``health`` finds something unhealthy and
130 when interrupted.

Examples::

    tmws-pattern execute "check system health" --mode fast
    tmws-pattern route "recall what I noted about deployments" --context '{"agent": "ops"}'
    tmws-pattern match "speed up API responses" --requirement "p99 < 50 ms" --limit 5
    tmws-pattern execute-many queries.txt --mode balanced > results.jsonl
    tmws-pattern patterns apply -f patterns.yaml --prune --dry-run
    tmws-pattern patterns export -o patterns.yaml
    tmws-pattern health && echo ok
    tmws-pattern stats
    tmws-pattern success-patterns record 5f0c… --success
    tmws-pattern memories list --agent ops --tag runbook > memories.jsonl
    tmws-pattern memories import memories.jsonl
    tmws-pattern memories purge --agent ops --force
    tmws-pattern eval labelled.jsonl --fit --plot report.png

The commands live in small modules: ``_cli_many`` (execute-many), ``_cli_patterns``
(patterns …), ``_cli_success`` (success-patterns …, match), ``_cli_memories`` (memories …),
``_cli_admin`` (stats, health),
``_cli_eval`` (eval);
shared pieces in ``_cli_common``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import grpc

from tmws.pattern.client import _cli_admin, _cli_eval, _cli_many, _cli_memories, _cli_patterns, _cli_success
from tmws.pattern.client._cli_common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Handler,
    Io,
    UsageError,
    error_to_dict,
    json_object,
    message_to_dict,
    metadata_pair,
    positive_float,
    print_error,
    print_json,
)
from tmws.pattern.client._client import DEFAULT_TARGET, PatternClient
from tmws.pattern.client._convert import DEFAULT, TimeoutLike
from tmws.pattern.client._errors import PatternServiceError
from tmws.pattern.client._version import __version__

__all__ = ["build_parser", "error_to_dict", "main", "message_to_dict"]

_MODES = _cli_many.MODES


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
        "--timeout", type=positive_float, default=None, help="deadline of each call in seconds (default: 10)"
    )
    parser.add_argument(
        "--metadata",
        type=metadata_pair,
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
    execute.add_argument("--context", type=json_object, default=None, metavar="JSON", help="context JSON object")
    execute.add_argument("--no-cache", action="store_true", help="neither read nor fill the result cache")
    execute.add_argument("--keyword-fallback", action="store_true", help="allow the keyword guess when nothing matches")
    execute.set_defaults(handler=_execute)

    route = commands.add_parser(
        "route", help="show the routing decision", description="Show the routing decision of a query (Route)."
    )
    route.add_argument("query")
    route.add_argument("--mode", choices=_MODES, default=None, help="execution mode (default: balanced)")
    route.add_argument("--context", type=json_object, default=None, metavar="JSON", help="context JSON object")
    route.add_argument("--keyword-fallback", action="store_true", help="allow the keyword guess when nothing matches")
    route.set_defaults(handler=_route)

    _cli_success.add_match_arguments(
        commands.add_parser(
            "match", help="find matching success patterns", description="Find success patterns (MatchPatterns)."
        )
    )
    _cli_success.add_parser(commands)
    _cli_memories.add_parser(commands)
    _cli_many.add_parser(commands)
    _cli_patterns.add_parser(commands)
    _cli_admin.add_parser(commands)
    _cli_eval.add_parser(commands)
    return parser


async def _execute(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    result = await client.execute(
        args.query,
        execution_mode=args.mode,
        context=args.context,
        use_cache=False if args.no_cache else None,
        keyword_fallback=True if args.keyword_fallback else None,
        timeout=timeout,
    )
    print_json(message_to_dict(result), io.out)
    return EXIT_OK


async def _route(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    decision = await client.route(
        args.query,
        execution_mode=args.mode,
        context=args.context,
        keyword_fallback=True if args.keyword_fallback else None,
        timeout=timeout,
    )
    print_json(message_to_dict(decision), io.out)
    return EXIT_OK


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


async def _run(args: argparse.Namespace, io: Io) -> int:
    credentials: grpc.ChannelCredentials | None = None
    if args.tls or args.ca_file:
        root: bytes | None = None
        if args.ca_file:
            try:
                root = await asyncio.to_thread(_read_bytes, args.ca_file)
            except OSError as exc:
                raise UsageError(f"cannot read {args.ca_file}: {exc.strerror or exc}") from exc
        credentials = grpc.ssl_channel_credentials(root_certificates=root)
    handler: Handler = args.handler
    timeout: TimeoutLike = args.timeout if args.timeout is not None else DEFAULT
    async with PatternClient.connect(args.target, credentials=credentials, metadata=args.metadata) as client:
        try:
            return await handler(client, args, io, timeout)
        except PatternServiceError as error:
            print_error(error, io.err)
            return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tmws-pattern`` command line.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success, 1 on an error status (or a failed
        ``execute-many`` item), 2 on a usage error, 3 when ``health`` finds
        something unhealthy, 130 when interrupted.

    Raises:
        SystemExit: With code 2 for invalid arguments (from ``argparse``), or
            0 for ``--help``/``--version``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    io = Io(sys.stdout, sys.stderr)
    try:
        return asyncio.run(_run(args, io))
    except UsageError as exc:
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
