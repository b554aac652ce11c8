"""``tmws-pattern eval``: evaluate (and optionally fit) routing on a labelled JSONL file.

Each input line is a JSON object with the query (``"text"`` or ``"query"``),
the expected pattern (``"pattern"`` or ``"expected_pattern_name"``; ``null`` or
``""`` = out of scope, the query should match no pattern) and optionally
``"split"``. With ``--fit`` the lines whose split is not ``test`` are fitted
(``FitRouting``) and the ``test`` lines evaluated (``EvaluateRouting``); a
file without splits is fitted and evaluated on all lines. ``--plot`` writes a
PNG with the confusion matrix and the reliability diagram (needs matplotlib:
``pip install 'tmws-pattern-client[plot]'``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import IO, Any

from google.protobuf import json_format

from tmws.pattern.client._cli_common import Io, UsageError, add_layer_argument, layer_of
from tmws.pattern.client._client import PatternClient
from tmws.pattern.client._convert import TimeoutLike
from tmws.pattern.v1 import RoutingEvaluation

__all__ = ["add_parser", "read_labelled", "run_eval"]

Labelled = tuple[str, str | None, str | None]


def add_parser(commands: Any) -> None:
    """Add the ``eval`` command to an ``argparse`` subparsers object."""
    ev = commands.add_parser(
        "eval",
        help="evaluate routing on labelled data",
        description=(
            "Evaluate routing on a labelled JSONL file (EvaluateRouting) and print a table: accuracy, out-of-scope "
            "precision/recall, per-pattern precision/recall/F1, confusions, calibration error. Lines: "
            '{"text": ..., "pattern": <name or null>, "split": "dev"|"test"}. --fit first fits thresholds and '
            "calibration on the non-test lines (FitRouting, applied unless --dry-run) and evaluates the test lines."
        ),
    )
    ev.add_argument("file", help="labelled JSONL file")
    ev.add_argument("--fit", action="store_true", help="fit on the non-test lines first (FitRouting)")
    ev.add_argument("--dry-run", action="store_true", help="with --fit: report the fit without applying it")
    add_layer_argument(ev)
    ev.add_argument(
        "--split", default=None, help="evaluate only lines of this split (default: all, or test with --fit)"
    )
    ev.add_argument("--plot", default=None, metavar="PNG", help="write a confusion matrix and reliability diagram")
    ev.add_argument("--json", action="store_true", help="print the evaluation as JSON instead of a table")
    ev.set_defaults(handler=_eval)


async def _eval(client: PatternClient, args: argparse.Namespace, io: Io, timeout: TimeoutLike) -> int:
    try:
        return await run_eval(client, args, io.out, io.err, timeout)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(str(exc)) from exc


def read_labelled(path: str) -> list[Labelled]:
    """``(query, expected pattern or None, split or None)`` per line of a JSONL file.

    Raises:
        ValueError: A line is not a JSON object with a query (the message names the line).
        OSError: The file cannot be read.
    """
    rows: list[Labelled] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"line {number}: not JSON: {exc.msg}") from None
            if not isinstance(doc, dict):
                raise ValueError(f"line {number}: not a JSON object")
            query = doc.get("text", doc.get("query"))
            if not isinstance(query, str) or not query.strip():
                raise ValueError(f'line {number}: needs a non-empty "text" (or "query")')
            expected = doc.get("pattern", doc.get("expected_pattern_name"))
            if expected is not None and not isinstance(expected, str):
                raise ValueError(f'line {number}: "pattern" must be a string or null')
            split = doc.get("split")
            rows.append((query, expected or None, split if isinstance(split, str) else None))
    return rows


def _table(e: RoutingEvaluation, out: IO[str], title: str) -> None:
    w = out.write
    w(f"{title}: {e.utterance_count} utterances ({e.in_scope_count} in scope, {e.out_of_scope_count} out of scope)\n")
    w(f"  accuracy               {e.accuracy:.3f}\n")
    w(f"  in-scope accuracy      {e.in_scope_accuracy:.3f}\n")
    w(f"  out-of-scope precision {e.out_of_scope_precision:.3f}\n")
    w(f"  out-of-scope recall    {e.out_of_scope_recall:.3f}   (refused when they should be)\n")
    w(f"  calibration error      {e.expected_calibration_error:.3f}   (ECE, 10 bins)\n")
    w(f"  writes chosen by guess {e.guessed_write_count}\n")
    w(f"  {'pattern':<28} {'precision':>9} {'recall':>7} {'F1':>6} {'support':>8}\n")
    for p in e.patterns:
        w(f"  {p.pattern_name:<28} {p.precision:>9.3f} {p.recall:>7.3f} {p.f1:>6.3f} {p.support:>8}\n")
    if e.confusions:
        w("  most confused (expected -> routed to: count)\n")
        for c in list(e.confusions)[:10]:
            expected = c.expected_pattern_name or "(no match)"
            predicted = c.predicted_pattern_name or "(no match)"
            w(f"    {expected} -> {predicted}: {c.count}   e.g. {c.examples[0]!r}\n")


def plot(e: RoutingEvaluation, path: str) -> None:
    """Write a PNG: the confusion matrix (rows expected, columns routed to) and the reliability diagram.

    Raises:
        RuntimeError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("--plot needs matplotlib: pip install 'tmws-pattern-client[plot]'") from exc
    none = "(no match)"
    names = [*sorted({p.pattern_name for p in e.patterns}), none]
    index = {n: i for i, n in enumerate(names)}
    matrix = [[0] * len(names) for _ in names]
    for p in e.patterns:
        matrix[index[p.pattern_name]][index[p.pattern_name]] = round(p.recall * p.support)
    matrix[index[none]][index[none]] = round(e.out_of_scope_recall * e.out_of_scope_count)
    for c in e.confusions:
        matrix[index[c.expected_pattern_name or none]][index[c.predicted_pattern_name or none]] += c.count
    fig, (left, right) = plt.subplots(1, 2, figsize=(16, 7.5), gridspec_kw={"width_ratios": [1.6, 1]})
    image = left.imshow(matrix, cmap="Blues")
    left.set_xticks(range(len(names)), names, rotation=70, ha="right", fontsize=7)
    left.set_yticks(range(len(names)), names, fontsize=7)
    left.set_xlabel("routed to")
    left.set_ylabel("expected")
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            if value:
                left.text(j, i, str(value), ha="center", va="center", fontsize=6, color="black")
    left.set_title(f"confusion matrix (accuracy {e.accuracy:.3f})")
    fig.colorbar(image, ax=left, fraction=0.04)
    bins = [b for b in e.calibration_bins if b.count]
    right.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    right.bar(
        [(b.lower + b.upper) / 2 for b in e.calibration_bins],
        [b.accuracy for b in e.calibration_bins],
        width=0.09,
        alpha=0.6,
        label="accuracy per bin",
    )
    right.plot([b.mean_confidence for b in bins], [b.accuracy for b in bins], marker="o", label="mean confidence")
    for b in bins:
        right.annotate(str(b.count), ((b.lower + b.upper) / 2, b.accuracy), fontsize=7, ha="center", va="bottom")
    right.set_xlim(0, 1)
    right.set_ylim(0, 1.05)
    right.set_xlabel("confidence")
    right.set_ylabel("fraction right")
    right.set_title(f"reliability diagram (ECE {e.expected_calibration_error:.3f})")
    right.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


async def run_eval(
    client: PatternClient, args: argparse.Namespace, out: IO[str], err: IO[str], timeout: TimeoutLike
) -> int:
    """Run ``eval`` (see the module docstring); returns the exit code (0)."""
    try:
        rows = read_labelled(args.file)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{args.file}: {exc}") from exc
    has_splits = any(split is not None for _, _, split in rows)
    split = args.split if args.split is not None else ("test" if args.fit and has_splits else None)
    report: dict[str, Any] = {}
    if args.fit:
        fit_rows = [(q, e) for q, e, s in rows if not has_splits or s != "test"]
        fitted = await client.fit_routing(fit_rows, validate_only=args.dry_run, layer=layer_of(args), timeout=timeout)
        report["fit"] = json_format.MessageToDict(fitted, preserving_proto_field_name=True)
        if not args.json:
            applied = (
                "not applied (--dry-run)" if args.dry_run else f"applied as registry version {fitted.registry_version}"
            )
            out.write(f"fit on {len(fit_rows)} utterances, {applied}\n")
            for change in fitted.threshold_changes:
                out.write(f"  threshold {change.pattern_name:<28} {change.threshold:.2f}\n")
            for c in fitted.calibration:
                out.write(f"  calibration {c.match_source:<10} slope {c.slope:.3f} intercept {c.intercept:.3f}\n")
            _table(fitted.before, out, "fit set, before")
            _table(fitted.after, out, "fit set, after")
    selected: Sequence[tuple[str, str | None]] = [(q, e) for q, e, s in rows if split is None or s == split]
    if not selected:
        raise ValueError(f"{args.file}: no lines of split {split!r}")
    evaluation = await client.evaluate_routing(selected, timeout=timeout)
    report["evaluation"] = json_format.MessageToDict(evaluation, preserving_proto_field_name=True)
    if args.json:
        out.write(json.dumps(report, indent=2) + "\n")
    else:
        _table(evaluation, out, f"evaluation{f' ({split} split)' if split else ''}")
    if args.plot:
        plot(evaluation, args.plot)
        err.write(f"wrote {args.plot}\n")
    return 0
