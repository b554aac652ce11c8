"""What the server installs for security and limits, built from settings in one call.

:func:`server_security` reads the API keys and the TLS files, refuses an open
server on a non-loopback address, and returns the interceptors (auth first,
so refused callers never take a concurrency slot; then the concurrency limit;
innermost the decoder that reports undecodable requests as ``INVALID_ARGUMENT``)
and the port credentials for :class:`~pattern_service.server.PatternServer`.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from pattern_service.api.auth import AuthInterceptor, check_open_mode
from pattern_service.api.decoding import DecodeErrorInterceptor
from pattern_service.api.keys import load_key_ring
from pattern_service.api.limits import ConcurrencyLimitInterceptor
from pattern_service.api.tls import server_credentials
from pattern_service.config import Settings
from pattern_service.metrics import Metrics


@dataclass(frozen=True, slots=True)
class ServerSecurity:
    """Interceptors and credentials of one server.

    Attributes:
        interceptors: Pass to ``grpc.aio.server(interceptors=...)``.
        credentials: ``add_secure_port`` credentials, or ``None`` for plaintext.
        description: One line for the start-up log (authentication and transport).
        limiter: The concurrency limit (its ``active`` count is observable).
    """

    interceptors: tuple[grpc.aio.ServerInterceptor, ...]
    credentials: grpc.ServerCredentials | None
    description: str
    limiter: ConcurrencyLimitInterceptor


def server_security(settings: Settings, metrics: Metrics | None = None) -> ServerSecurity:
    """Build the security of a server from its settings.

    Args:
        settings: ``TMWS_API_KEYS_FILE``, ``TMWS_API_KEYS``, ``TMWS_ALLOW_UNAUTHENTICATED``,
            ``TMWS_TLS_*``, ``TMWS_MAX_CONCURRENT_RPCS`` and the listen address.
        metrics: Where refused calls are counted (``tmws_grpc_errors_total``).

    Returns:
        The interceptors and credentials.

    Raises:
        KeyConfigError: The API key configuration is malformed.
        TlsConfigError: The TLS settings are incomplete or unreadable.
        InsecureConfigurationError: No keys on a non-loopback address without
            ``TMWS_ALLOW_UNAUTHENTICATED=true``.
    """
    ring = load_key_ring(settings.api_keys_file or None, settings.api_keys)
    mode = check_open_mode(ring, settings.grpc_address, settings.allow_unauthenticated)
    credentials = server_credentials(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)
    transport = "plaintext"
    if credentials is not None:
        transport = "mutual TLS" if settings.tls_client_ca_file else "TLS"
    on_reject = metrics.observe_error if metrics is not None else None
    limiter = ConcurrencyLimitInterceptor(
        settings.max_concurrent_rpcs,
        on_reject=(lambda method: on_reject(method, grpc.StatusCode.RESOURCE_EXHAUSTED.name)) if on_reject else None,
    )
    return ServerSecurity(
        interceptors=(AuthInterceptor(ring, on_reject=on_reject), limiter, DecodeErrorInterceptor()),
        credentials=credentials,
        description=f"{mode}; {transport}",
        limiter=limiter,
    )
