"""What the server installs for security and limits, built from settings in one call.

:func:`server_security` reads the API keys and the TLS files, refuses an open
server on a non-loopback address, and returns the call guard (authentication
first, so refused callers never take a concurrency slot; then the concurrency
limit; then the refusal of undecodable requests, see :mod:`pattern_service.api.guard`)
and the port credentials for :class:`~pattern_service.server.PatternServer`.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from prometheus_client import CollectorRegistry

from pattern_service.api.auth import check_open_mode
from pattern_service.api.guard import CallGuard, ConcurrencyLimit
from pattern_service.api.keys import load_key_ring
from pattern_service.api.rpc_metrics import RpcMetrics
from pattern_service.api.tls import server_credentials
from pattern_service.api.transport import COMPRESSED_METHODS
from pattern_service.config import Settings
from pattern_service.metrics import Metrics


@dataclass(frozen=True, slots=True)
class ServerSecurity:
    """Call guard and credentials of one server.

    Attributes:
        guard: Wraps the methods of both services (see :func:`~pattern_service.api.guard.add_guarded`).
        credentials: ``add_secure_port`` credentials, or ``None`` for plaintext.
        description: One line for the start-up log (authentication and transport).
    """

    guard: CallGuard
    credentials: grpc.ServerCredentials | None
    description: str

    @property
    def limiter(self) -> ConcurrencyLimit:
        """The concurrency limit (its ``active`` count is observable)."""
        return self.guard.limit


def server_security(settings: Settings, metrics: Metrics | None = None) -> ServerSecurity:
    """Build the security of a server from its settings.

    Args:
        settings: ``TMWS_API_KEYS_FILE``, ``TMWS_API_KEYS``, ``TMWS_ALLOW_UNAUTHENTICATED``,
            ``TMWS_TLS_*``, ``TMWS_MAX_CONCURRENT_RPCS`` and the listen address.
        metrics: Where refused calls are counted (``tmws_grpc_errors_total``).

    Returns:
        The call guard and credentials.

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
    limiter = ConcurrencyLimit(
        settings.max_concurrent_rpcs,
        on_reject=(lambda method: on_reject(method, grpc.StatusCode.RESOURCE_EXHAUSTED.name)) if on_reject else None,
    )
    return ServerSecurity(
        guard=CallGuard(
            ring,
            limiter,
            on_auth_reject=on_reject,
            rpc_metrics=metrics.rpc if metrics is not None else RpcMetrics(CollectorRegistry()),
            max_message_bytes=settings.max_message_bytes,
            compress_responses=settings.response_compression != "none",
            compressed_methods=COMPRESSED_METHODS,
        ),
        credentials=credentials,
        description=f"{mode}; {transport}",
    )
