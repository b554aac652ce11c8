"""Start-up failures as one clear line: what is wrong, which setting, how to fix it, and a distinct exit code.

``python -m pattern_service`` runs :func:`preflight` before opening any backend
(settings that can be checked without I/O to the backends: keys, TLS, open mode,
the pattern file, workers) and maps whatever still fails during start-up through
:func:`describe`. The traceback is logged only with ``TMWS_LOG_LEVEL=DEBUG``.

=========  ====================================================================
exit code  meaning
=========  ====================================================================
69         a backend is unreachable (``EX_UNAVAILABLE``: database, Redis, Qdrant)
71         the listen address cannot be bound (``EX_OSERR``)
73         too little free disk space for the local stores (``EX_CANTCREAT``,
           ``TMWS_MIN_FREE_DISK_MB``; :mod:`pattern_service.store.disk`)
78         the configuration is wrong (``EX_CONFIG``: settings, key/TLS/pattern files,
           embedder that does not match the stored vectors, workers)
=========  ====================================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

EXIT_UNAVAILABLE = 69
EXIT_OSERR = 71
EXIT_CANTCREAT = 73
EXIT_CONFIG = 78


@dataclass
class StartupError(Exception):
    """A start-up failure with the setting to blame and the fix.

    Attributes:
        problem: What is wrong.
        setting: The environment variable (or argument) to change.
        fix: How to fix it.
        exit_code: One of the codes of this module.
    """

    problem: str
    setting: str
    fix: str
    exit_code: int = EXIT_CONFIG

    def __str__(self) -> str:
        return f"error: {self.setting}: {self.problem} (fix: {self.fix})"


def debug_requested() -> bool:
    """``TMWS_LOG_LEVEL=DEBUG`` (read directly: the settings themselves may be what failed)."""
    return os.environ.get("TMWS_LOG_LEVEL", "").strip().upper() == "DEBUG"


def _from_validation(exc: Any) -> StartupError:
    errors = exc.errors()
    first = errors[0]
    field = str(first["loc"][0]) if first.get("loc") else "?"
    setting = f"TMWS_{field.upper()}"
    given = first.get("input")
    shown = f" (got {given!r})" if isinstance(given, str | int | float) else ""
    more = f"; and {len(errors) - 1} more invalid setting(s)" if len(errors) > 1 else ""
    return StartupError(
        f"{first['msg']}{shown}{more}",
        setting,
        f"set {setting} to a valid value (see README, Configuration) or unset it for the default",
    )


def describe(exc: BaseException, settings: Any = None) -> StartupError:
    """The :class:`StartupError` for an exception raised while starting.

    Args:
        exc: What was raised.
        settings: The settings, when they could be read (names the backend URLs).

    Returns:
        The error to print; unexpected exceptions get exit code 1 and a generic fix.
    """
    from pydantic import ValidationError

    from pattern_service.api.auth import InsecureConfigurationError
    from pattern_service.api.keys import KeyConfigError
    from pattern_service.api.tls import TlsConfigError
    from pattern_service.errors import DiskFullError, FailedPreconditionError, InvalidArgumentError, UnavailableError

    if isinstance(exc, StartupError):
        return exc
    if isinstance(exc, ValidationError):
        return _from_validation(exc)
    if isinstance(exc, KeyConfigError):
        return StartupError(
            str(exc),
            "TMWS_API_KEYS_FILE / TMWS_API_KEYS",
            "name a readable JSON/YAML key file (entries from: python -m pattern_service hash-key)",
        )
    if isinstance(exc, TlsConfigError):
        return StartupError(
            str(exc), "TMWS_TLS_CERT_FILE / TMWS_TLS_KEY_FILE", "name both PEM files, readable by the server"
        )
    if isinstance(exc, InsecureConfigurationError):
        return StartupError(
            str(exc),
            "TMWS_GRPC_ADDRESS",
            "configure API keys, listen on 127.0.0.1, or set TMWS_ALLOW_UNAUTHENTICATED=true",
        )
    if isinstance(exc, FailedPreconditionError):
        if exc.reason == "EMBEDDING_MODEL_MISMATCH":
            return StartupError(
                exc.message,
                "TMWS_EMBEDDER",
                "start with the embedder the stored vectors were made with, or move them to the new one with "
                "`python -m pattern_service reembed --embedder NAME` (then --switch)",
            )
        if exc.reason == "EMPTY_DATABASE_BESIDE_INDEX":
            return StartupError(
                exc.message,
                "TMWS_DATABASE_URL / TMWS_DATA_DIR",
                "point TMWS_DATABASE_URL (or TMWS_DATA_DIR) at this index's database; if the empty database is "
                "right, run `python -m pattern_service reindex` (or serve --accept-empty-database) to empty the index",
            )
        if exc.reason.startswith("WORKERS_"):
            return StartupError(exc.message, "TMWS_WORKERS", "set TMWS_WORKERS=1 or provide what the message names")
        return StartupError(exc.message, "TMWS_EMBEDDER / TMWS_MODEL_CACHE_DIR", "see the message")
    if isinstance(exc, DiskFullError):
        return StartupError(
            exc.message,
            "TMWS_DATA_DIR / TMWS_MIN_FREE_DISK_MB",
            "free disk space there or move TMWS_DATA_DIR to a larger filesystem",
            EXIT_CANTCREAT,
        )
    if isinstance(exc, UnavailableError):
        return StartupError(
            exc.message,
            _backend_settings(settings),
            "start the backend or correct its URL; the service retries nothing at start",
            EXIT_UNAVAILABLE,
        )
    if isinstance(exc, InvalidArgumentError) and "default pattern set" in exc.message:
        detail = "; ".join(f"{v.field}: {v.description}" for v in exc.violations[:3])
        return StartupError(
            f"{exc.message}: {detail}",
            "TMWS_PATTERNS_FILE",
            "correct the file (tmws-pattern patterns apply --dry-run checks one)",
        )
    if isinstance(exc, RuntimeError) and ("could not bind" in str(exc) or "Failed to bind" in str(exc)):
        return StartupError(str(exc), "TMWS_GRPC_ADDRESS", "free the port or choose another host:port", EXIT_OSERR)
    if isinstance(exc, OSError) and getattr(exc, "filename", None):
        return StartupError(
            f"{exc.strerror or exc}: {exc.filename}", "TMWS_DATA_DIR", "check the path exists and is writable"
        )
    return StartupError(f"{type(exc).__name__}: {exc}", "(unexpected)", "rerun with TMWS_LOG_LEVEL=DEBUG", 1)


def _backend_settings(settings: Any) -> str:
    names = ["TMWS_DATABASE_URL"]
    if settings is not None:
        if getattr(settings, "redis_url", ""):
            names.append("TMWS_REDIS_URL")
        if getattr(settings, "qdrant_url", ""):
            names.append("TMWS_QDRANT_URL")
    return " / ".join(names)


def preflight(settings: Any) -> None:
    """Check what can be checked before any backend is opened.

    Raises:
        StartupError: A key/TLS file, the open-mode rule, the pattern file or the workers setting is wrong.
        KeyConfigError, TlsConfigError, InsecureConfigurationError: From the security settings.
    """
    from pattern_service.api.security import server_security

    server_security(settings)
    if settings.patterns_file is not None:
        from pattern_service.engine.validation import load_default_definitions

        path = settings.patterns_file
        try:
            definitions = load_default_definitions(path, default_cache_ttl=settings.cache_ttl)
        except OSError as exc:
            raise StartupError(
                f"cannot read {str(path)!r}: {exc.strerror or exc}", "TMWS_PATTERNS_FILE", "name a readable YAML file"
            ) from exc
        except Exception as exc:
            raise StartupError(
                f"{str(path)!r} is not a valid pattern file: {exc}",
                "TMWS_PATTERNS_FILE",
                "use the layout of patterns.yaml (tmws-pattern patterns export writes one)",
            ) from exc
        if not definitions:
            raise StartupError(f"{str(path)!r} holds no patterns", "TMWS_PATTERNS_FILE", "add a 'patterns' list")
