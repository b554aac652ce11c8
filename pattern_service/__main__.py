"""Command line: ``python -m pattern_service serve`` (default), ``migrate``, ``prepare-model`` or ``hash-key``.

``prepare-model`` derives the default embedder's int8 model into the model cache
(``TMWS_MODEL_CACHE_DIR``), e.g. while building an image, so no server start pays for it.

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
    hash_key = commands.add_parser(
        "hash-key",
        help="print the configuration entry of an API key (--name, --tenant, --scopes)",
        description=HASH_KEY_DESCRIPTION,
    )
    add_hash_key_arguments(hash_key)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    opts = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if opts.command == "hash-key":
        from pattern_service.api.keys import run_hash_key

        return run_hash_key(opts)
    overrides: dict[str, object] = {}
    if opts.address:
        overrides["grpc_address"] = opts.address
    if opts.data_dir:
        overrides["data_dir"] = opts.data_dir
    if opts.workers:
        overrides["workers"] = opts.workers
    settings = Settings(**overrides)  # type: ignore[arg-type]
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if opts.command == "migrate":
        from pattern_service.store.db import upgrade_to_head

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade_to_head(settings.resolved_database_url)
        logging.getLogger(__name__).info("database at head: %s", settings.resolved_database_url)
        return 0
    if opts.command == "prepare-model":
        from pattern_service.store.embeddings import OnnxEmbedder, create_embedder

        embedder = create_embedder(settings.embedder, model_cache_dir=settings.model_cache_dir)
        if isinstance(embedder, OnnxEmbedder):
            embedder.load()
            embedder.close()
        logging.getLogger(__name__).info("embedding model ready: %s", embedder.model_id)
        return 0
    if settings.workers > 1:
        from pattern_service.workers import run_workers

        return run_workers(settings, settings.workers)
    from pattern_service.server import serve

    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
