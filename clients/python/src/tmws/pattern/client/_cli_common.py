"""Shared pieces of the ``tmws-pattern`` command line: exit codes, output, argument types."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Awaitable, Callable
from typing import IO, Any

from google.protobuf import json_format
from google.protobuf.message import Message

from tmws.pattern.client._client import PatternClient
from tmws.pattern.client._convert import TimeoutLike
from tmws.pattern.client._errors import PatternServiceError
from tmws.pattern.v1 import PATTERN_LAYER_GLOBAL, PATTERN_LAYER_TENANT, PATTERN_LAYER_UNSPECIFIED, PatternLayer

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: ``health``: the service answered but is not serving (or a component is down).
EXIT_UNHEALTHY = 3

#: Largest integer a float holds exactly (protobuf ``Struct`` numbers are doubles).
_MAX_EXACT_INT = 2**53


class UsageError(Exception):
    """A bad argument or input found after parsing (exit code 2)."""


class Io:
    """The output streams of one run."""

    def __init__(self, out: IO[str], err: IO[str]) -> None:
        self.out = out
        self.err = err


Handler = Callable[[PatternClient, argparse.Namespace, Io, TimeoutLike], Awaitable[int]]


def integral(value: Any) -> Any:
    """``value`` with every float that holds an integer turned into an ``int`` (recursively).

    ``google.protobuf.Struct`` stores every number as a double, so ``42`` comes back as
    ``42.0``; the command line prints integers as integers.
    """
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) <= _MAX_EXACT_INT:
            return int(value)
        return value
    if isinstance(value, dict):
        return {key: integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [integral(item) for item in value]
    return value


def message_to_dict(message: Message) -> dict[str, Any]:
    """Convert a message to its JSON dict with proto field names and every field shown.

    Numbers of ``Struct`` fields that hold integers are printed as integers.

    Args:
        message: Any protobuf message.

    Returns:
        The dict ``json.dumps`` can print.
    """
    converted: dict[str, Any] = integral(
        json_format.MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    )
    return converted


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


def print_json(value: Any, out: IO[str]) -> None:
    """Write ``value`` as indented JSON and a newline."""
    out.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    out.flush()


def write_line(record: dict[str, Any], out: IO[str]) -> None:
    """Write ``record`` as one compact JSON line."""
    out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
    out.flush()


def print_error(error: PatternServiceError, err: IO[str]) -> None:
    """Write an error status, its reason, field violations and retry delay to ``err``."""
    err.write(f"error: {error.code.name}: {error.message}\n")
    info = error.error_info
    if info is not None and info.reason:
        err.write(f"  reason: {info.reason} ({info.domain})\n")
    for violation in error.field_violations:
        err.write(f"  field violation: {violation.field}: {violation.description}\n")
    if error.retry_delay is not None:
        err.write(f"  retry after: {error.retry_delay:g} s\n")
    err.flush()


def json_object(text: str) -> dict[str, Any]:
    """``argparse`` type: a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def metadata_pair(text: str) -> tuple[str, str | bytes]:
    """``argparse`` type: ``KEY=VALUE`` call metadata (bytes for ``-bin`` keys)."""
    key, sep, value = text.partition("=")
    key = key.strip().lower()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return (key, value.encode() if key.endswith("-bin") else value)


def positive_float(text: str) -> float:
    """``argparse`` type: a number > 0."""
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def positive_int(text: str) -> int:
    """``argparse`` type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


#: ``--layer`` choices and their ``PatternLayer`` values.
LAYERS: dict[str, PatternLayer.ValueType] = {"tenant": PATTERN_LAYER_TENANT, "global": PATTERN_LAYER_GLOBAL}


def add_layer_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--layer tenant|global`` (unset: the server's choice by the caller's scopes)."""
    parser.add_argument(
        "--layer",
        choices=sorted(LAYERS),
        default=None,
        help="registry layer to change: the caller tenant's own or the global one (needs patterns:admin:global); "
        "default: global for a key with patterns:admin:global (or an open server), else the tenant's",
    )


def layer_of(args: argparse.Namespace) -> PatternLayer.ValueType:
    """The ``PatternLayer`` of ``--layer`` (``PATTERN_LAYER_UNSPECIFIED`` when not given)."""
    return LAYERS[args.layer] if args.layer else PATTERN_LAYER_UNSPECIFIED


def require_cli_extra(module: str) -> Any:
    """Import ``module``, one of the ``cli`` extra's dependencies.

    Raises:
        UsageError: It is not installed (the message says how to install it).
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(f"this command needs {module!r}: pip install 'tmws-pattern-client[cli]'") from exc
