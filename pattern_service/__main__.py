"""Command line: ``python -m pattern_service serve`` (default), ``migrate``, ``prepare-model``, ``hash-key``
or ``reembed --embedder NAME [--switch]`` (see :mod:`pattern_service.reembed`).

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


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (see :mod:`pattern_service.startup` for start-up failures)."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["hash-key"]:
        from pattern_service.api.keys import main as hash_key

        return hash_key(args[1:])
    parser = argparse.ArgumentParser(prog="tmws-pattern-service", description="Pattern Service gRPC server")
    commands = ("serve", "migrate", "prepare-model", "hash-key", "reembed")
    parser.add_argument("command", nargs="?", default="serve", choices=commands)
    parser.add_argument("--address", help="host:port to listen on (TMWS_GRPC_ADDRESS)")
    parser.add_argument("--data-dir", type=Path, help="data directory of the embedded backends (TMWS_DATA_DIR)")
    parser.add_argument("--workers", type=int, help="server processes sharing the port (TMWS_WORKERS)")
    parser.add_argument(
        "--embedder", "--model", dest="embedder", help="reembed: the embedder to move to (onnx, onnx-fp32, hashing)"
    )
    parser.add_argument("--switch", action="store_true", help="reembed: put the built index in place (server stopped)")
    parser.add_argument("--target-qdrant-url", default="", help="reembed: build into this second Qdrant server")
    opts = parser.parse_args(args)
    if opts.command == "reembed" and opts.embedder not in ("onnx", "onnx-fp32", "hashing"):
        parser.error("reembed needs --embedder onnx|onnx-fp32|hashing")
    overrides: dict[str, object] = {}
    if opts.address:
        overrides["grpc_address"] = opts.address
    if opts.data_dir:
        overrides["data_dir"] = opts.data_dir
    if opts.workers:
        overrides["workers"] = opts.workers
    settings: Settings | None = None
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
        configure_logging(settings.log_level, settings.log_format)
        return _run(opts.command, settings, opts)
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
    from pattern_service.server import serve

    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
