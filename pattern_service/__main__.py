"""Command line: ``python -m pattern_service serve`` (default; ``--accept-empty-database``), ``migrate``,
``prepare-model``, ``hash-key``, ``reindex`` or ``reembed --embedder NAME [--switch]`` (see
:mod:`pattern_service.reembed`; ``reindex`` and ``--accept-empty-database``: :mod:`pattern_service.store.emptied`).

``prepare-model`` derives the default embedder's int8 model into the model cache
(``TMWS_MODEL_CACHE_DIR``), e.g. while building an image, so no server start pays for it.

A start-up failure prints one line naming the setting and the fix and exits with
a distinct code (:mod:`pattern_service.startup`); the traceback only with
``TMWS_LOG_LEVEL=DEBUG``.

Settings come from ``TMWS_*`` environment variables (see :mod:`pattern_service.config`);
``--address`` and ``--data-dir`` override ``TMWS_GRPC_ADDRESS`` and ``TMWS_DATA_DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from pattern_service.config import Settings
from pattern_service.logs import configure_logging
from pattern_service.startup import debug_requested, describe, preflight


def _parser() -> argparse.ArgumentParser:
    from pattern_service.api.keys import HASH_KEY_DESCRIPTION, add_hash_key_arguments

    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--address", help="host:port to listen on (TMWS_GRPC_ADDRESS)")
    server.add_argument("--data-dir", type=Path, help="data directory of the embedded backends (TMWS_DATA_DIR)")
    server.add_argument("--workers", type=int, help="server processes sharing the port (TMWS_WORKERS)")
    parser = argparse.ArgumentParser(
        prog="tmws-pattern-service",
        description="Pattern Service gRPC server. Without a command: serve. "
        "'tmws-pattern-service COMMAND --help' lists a command's options.",
        parents=[server],
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in (
        ("serve", "run the gRPC server (the default)"),
        ("migrate", "upgrade the SQL database to the newest schema and exit"),
        ("prepare-model", "derive the embedding model into the model cache and exit"),
    ):
        # SUPPRESS: an option given before the command is not reset by the command's own default.
        sub = commands.add_parser(name, help=text, description=text, argument_default=argparse.SUPPRESS)
        sub.add_argument("--address", help="host:port to listen on (TMWS_GRPC_ADDRESS)")
        sub.add_argument("--data-dir", type=Path, help="data directory of the embedded backends (TMWS_DATA_DIR)")
        sub.add_argument("--workers", type=int, help="server processes sharing the port (TMWS_WORKERS)")
    accept_help = (
        "start even if the SQL database is empty beside a populated vector index, deleting the index's points "
        "(TMWS_ACCEPT_EMPTY_DATABASE)"
    )
    parser.add_argument("--accept-empty-database", action="store_true", help=accept_help)
    commands.choices["serve"].add_argument(
        "--accept-empty-database", action="store_true", default=argparse.SUPPRESS, help=accept_help
    )
    reindex = commands.add_parser(
        "reindex",
        help="make the vector index match the SQL database (also when the database is empty) and exit",
        description="Open the database and the vector index, reconcile the index with the database (adding "
        "missing vectors, deleting points without a row: all of them when the database is empty) and exit. "
        "Run it with the server stopped.",
        argument_default=argparse.SUPPRESS,
    )
    reindex.add_argument("--data-dir", type=Path, help="data directory of the embedded backends (TMWS_DATA_DIR)")
    reembed = commands.add_parser(
        "reembed",
        help="rebuild every vector from SQL with another embedder (see pattern_service.reembed)",
        description="Rebuild every vector from SQL with another embedder while the server keeps serving; "
        "--switch (server stopped) puts the built index in place.",
        argument_default=argparse.SUPPRESS,
    )
    reembed.add_argument("--address", help="host:port to listen on (TMWS_GRPC_ADDRESS)")
    reembed.add_argument("--data-dir", type=Path, help="data directory of the embedded backends (TMWS_DATA_DIR)")
    reembed.add_argument(
        "--embedder",
        "--model",
        dest="embedder",
        required=True,
        choices=("onnx", "onnx-fp32", "hashing"),
        help="the embedder to move to",
    )
    reembed.add_argument("--switch", action="store_true", default=False, help="put the built index in place")
    reembed.add_argument("--target-qdrant-url", default="", help="build into this second Qdrant server")
    hash_key = commands.add_parser(
        "hash-key",
        help="print the configuration entry of an API key (--name, --tenant, --scopes)",
        description=HASH_KEY_DESCRIPTION,
    )
    add_hash_key_arguments(hash_key)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (see :mod:`pattern_service.startup` for start-up failures)."""
    opts = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if opts.command == "hash-key":
        from pattern_service.api.keys import run_hash_key

        return run_hash_key(opts)
    overrides: dict[str, object] = {}
    if getattr(opts, "address", None):
        overrides["grpc_address"] = opts.address
    if getattr(opts, "data_dir", None):
        overrides["data_dir"] = opts.data_dir
    if getattr(opts, "workers", None):
        overrides["workers"] = opts.workers
    if getattr(opts, "accept_empty_database", False) or opts.command == "reindex":
        overrides["accept_empty_database"] = True
    settings: Settings | None = None
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
        configure_logging(settings.log_level, settings.log_format)
        return _run(opts.command or "serve", settings, opts)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if settings is None:
            configure_logging("DEBUG" if debug_requested() else "INFO")
        failure = describe(exc, settings)
        if debug_requested():
            logging.getLogger(__name__).debug("start-up failed", exc_info=exc)
        logging.getLogger(__name__).critical("%s", failure)
        return failure.exit_code


def _run(command: str, settings: Settings, opts: argparse.Namespace) -> int:
    log = logging.getLogger(__name__)
    if command == "reembed":
        from pattern_service import reembed

        progress = sys.stderr.isatty()
        if opts.switch:
            moved = asyncio.run(
                reembed.switch(settings, opts.embedder, target_url=opts.target_qdrant_url, progress=progress)
            )
            log.info(
                "switched to %s (old index kept at %s); start the server with TMWS_EMBEDDER=%s",
                opts.embedder,
                moved,
                opts.embedder,
            )
        else:
            built = asyncio.run(
                reembed.build(settings, opts.embedder, target_url=opts.target_qdrant_url, progress=progress)
            )
            log.info(
                "built the %s index (%s new vectors); stop the server, then run reembed --embedder %s --switch",
                opts.embedder,
                sum(built.values()),
                opts.embedder,
            )
        return 0
    if command == "reindex":
        from pattern_service.reembed import reindex

        repaired = asyncio.run(reindex(settings))
        log.info("vector index matches the database: %s (upserted, deleted) per collection", repaired)
        return 0
    if command == "migrate":
        from pattern_service.store.db import upgrade_to_head

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade_to_head(settings.resolved_database_url)
        log.info("database at head: %s", settings.resolved_database_url)
        return 0
    if command == "prepare-model":
        from pattern_service.store.embeddings import OnnxEmbedder, create_embedder

        embedder = create_embedder(settings.embedder, model_cache_dir=settings.model_cache_dir)
        if isinstance(embedder, OnnxEmbedder):
            embedder.load()
            embedder.close()
        log.info("embedding model ready: %s", embedder.model_id)
        return 0
    preflight(settings)
    if settings.workers > 1:
        from pattern_service.workers import run_workers

        return run_workers(settings, settings.workers)
    from pattern_service.server import run

    run(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
