"""TLS and mutual TLS server credentials from settings.

- ``TMWS_TLS_CERT_FILE`` + ``TMWS_TLS_KEY_FILE`` (PEM): serve TLS.
- ``TMWS_TLS_CLIENT_CA_FILE`` (PEM) in addition: require a client certificate
  signed by that CA (mutual TLS); a client without one fails the handshake.

Certificates are read once at start; rotate by restarting (replicas behind a
load balancer roll over one by one).
"""

from __future__ import annotations

from pathlib import Path

import grpc


class TlsConfigError(ValueError):
    """The TLS settings are incomplete or a file cannot be read."""


def _read(path: Path | str, setting: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"{setting} {str(path)!r}: {exc.strerror or exc}") from exc
    if b"-----BEGIN" not in data:
        raise TlsConfigError(f"{setting} {str(path)!r}: not a PEM file")
    return data


def server_credentials(
    cert_file: Path | str | None, key_file: Path | str | None, client_ca_file: Path | str | None
) -> grpc.ServerCredentials | None:
    """Server credentials for the TLS settings, or ``None`` for plaintext.

    Args:
        cert_file: Server certificate chain (PEM), ``TMWS_TLS_CERT_FILE``.
        key_file: Its private key (PEM), ``TMWS_TLS_KEY_FILE``.
        client_ca_file: CA bundle (PEM) client certificates must chain to,
            ``TMWS_TLS_CLIENT_CA_FILE``; given = client certificates required.

    Returns:
        The credentials, or ``None`` when no TLS setting is given.

    Raises:
        TlsConfigError: Only one of certificate and key is given, a client CA
            is given without them, or a file is unreadable or not PEM.
    """
    if not cert_file and not key_file:
        if client_ca_file:
            raise TlsConfigError("TMWS_TLS_CLIENT_CA_FILE needs TMWS_TLS_CERT_FILE and TMWS_TLS_KEY_FILE")
        return None
    if not cert_file or not key_file:
        raise TlsConfigError("TLS needs both TMWS_TLS_CERT_FILE and TMWS_TLS_KEY_FILE")
    chain = _read(cert_file, "TMWS_TLS_CERT_FILE")
    key = _read(key_file, "TMWS_TLS_KEY_FILE")
    client_ca = _read(client_ca_file, "TMWS_TLS_CLIENT_CA_FILE") if client_ca_file else None
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
