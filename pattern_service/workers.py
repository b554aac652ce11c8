"""Several server processes sharing one port (``TMWS_WORKERS`` / ``serve --workers N``).

The pattern of grpc's own multiprocessing example: the worker processes are
started before gRPC is initialised in them (``spawn``: a fresh interpreter
each), and every worker binds the same address with ``SO_REUSEPORT`` so the
kernel spreads connections across them. The parent runs the migrations once,
then supervises: SIGTERM/SIGINT are forwarded to every worker, and the parent
exits when all have stopped (with the first non-zero exit code, if any).

Workers share nothing in memory; they share the backends. The embedded vector
index is single-process (qdrant-edge locks its files), so more than one worker
needs a Qdrant server (``TMWS_QDRANT_URL``); PostgreSQL and Redis are
recommended so that every worker sees the same data and cache invalidations.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from types import FrameType

from pattern_service.config import Settings
from pattern_service.errors import FailedPreconditionError

log = logging.getLogger(__name__)


def check_workers(settings: Settings, workers: int) -> None:
    """Refuse a multi-process configuration that cannot work.

    Raises:
        FailedPreconditionError: ``workers > 1`` with the embedded vector index,
            or with a port of 0 (each worker would get a different port).
    """
    if workers <= 1:
        return
    if not settings.qdrant_url:
        raise FailedPreconditionError(
            "TMWS_WORKERS > 1 needs a Qdrant server (TMWS_QDRANT_URL): the embedded index is single-process",
            reason="WORKERS_NEED_SHARED_BACKENDS",
        )
    if settings.grpc_address.rpartition(":")[2] == "0":
        raise FailedPreconditionError(
            "TMWS_WORKERS > 1 needs a fixed port in TMWS_GRPC_ADDRESS", reason="WORKERS_NEED_FIXED_PORT"
        )


def _worker_main(settings_json: str, index: int) -> None:
    """Entry point of one worker process (a fresh interpreter: gRPC starts here)."""
    from pattern_service.server import run

    settings = Settings.model_validate_json(settings_json)
    from pattern_service.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format, worker=index)
    run(settings, reuse_port=True)


def run_workers(settings: Settings, workers: int) -> int:
    """Start ``workers`` server processes on the same address and wait for them.

    Args:
        settings: Settings of every worker (migrations are run here once, so
            the workers start with ``run_migrations`` off).
        workers: Number of processes (>= 2).

    Returns:
        0 when every worker exited cleanly, else the first non-zero exit code.

    Raises:
        FailedPreconditionError: See :func:`check_workers`.
    """
    check_workers(settings, workers)
    if settings.run_migrations:
        from pattern_service.store.db import upgrade_to_head

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade_to_head(settings.resolved_database_url)
    child_settings = settings.model_copy(update={"run_migrations": False})
    # Metrics endpoints cannot share a port: only worker 0 serves them.
    ctx = multiprocessing.get_context("spawn")
    procs = []
    for i in range(workers):
        per_worker = child_settings if i == 0 else child_settings.model_copy(update={"metrics_address": ""})
        proc = ctx.Process(target=_worker_main, args=(per_worker.model_dump_json(), i), name=f"tmws-worker-{i}")
        proc.start()
        procs.append(proc)
    log.info("started %d workers on %s (SO_REUSEPORT)", workers, settings.grpc_address)

    def forward(signum: int, _frame: FrameType | None) -> None:
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for proc in procs:
            proc.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    codes = [proc.exitcode or 0 for proc in procs]
    return next((code for code in codes if code), 0)
