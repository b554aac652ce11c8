"""Logging set-up: ``TMWS_LOG_FORMAT=text`` (default) or ``json``, at ``TMWS_LOG_LEVEL``.

``json`` writes one JSON object per line (python-json-logger) with the fields
``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``, plus
``exc_info`` for an exception, ``worker`` under ``TMWS_WORKERS`` > 1, any
``extra={...}`` of the call, and ``trace_id``/``span_id`` (lowercase hex, as
OpenTelemetry writes them) when the record is logged inside a traced call.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

from pattern_service import tracing

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` to records logged inside a recorded span (and ``worker`` if set).

    Args:
        worker: The worker index under ``TMWS_WORKERS`` > 1, else ``None``.
    """

    def __init__(self, worker: int | None = None):
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate ``record`` (never drops it)."""
        ids = tracing.current_ids()
        if ids is not None:
            record.trace_id, record.span_id = ids
        if self.worker is not None:
            record.worker = self.worker
        return True


def formatter(fmt: Literal["text", "json"], worker: int | None = None) -> logging.Formatter:
    """The formatter of ``TMWS_LOG_FORMAT``."""
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            datefmt="%Y-%m-%dT%H:%M:%S%z",
        )
    prefix = f"[worker {worker}] " if worker is not None else ""
    return logging.Formatter(f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s")


def configure_logging(level: str, fmt: Literal["text", "json"] = "text", *, worker: int | None = None) -> None:
    """Send the root logger's records to stderr in ``fmt`` at ``level`` (replaces its handlers).

    Args:
        level: A ``logging`` level name (``INFO``, ``DEBUG``, …).
        fmt: ``text`` or ``json``.
        worker: The worker index under ``TMWS_WORKERS`` > 1.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt, worker))
    handler.addFilter(TraceContextFilter(worker))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
