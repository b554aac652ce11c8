"""TLS and mutual TLS against a real server, with a CA and certificates made by the test."""

from __future__ import annotations

import datetime
import ipaddress
import pathlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from server_helpers import make_settings, start_server

from pattern_service.server import PatternServer
from tmws.pattern.client import PatternClient, Unavailable

_NOW = datetime.datetime.now(datetime.UTC)


@dataclass
class Issued:
    """A certificate and its key, as PEM."""

    cert: bytes
    key: bytes
    _private: ec.EllipticCurvePrivateKey
    _name: x509.Name


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_ca(common_name: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - datetime.timedelta(days=1))
        .not_valid_after(_NOW + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key), key, name)


def issue(ca: Issued, common_name: str, *, server: bool) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca._name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - datetime.timedelta(days=1))
        .not_valid_after(_NOW + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(ca._private, hashes.SHA256())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key), key, name)


@dataclass
class Pki:
    ca: Issued
    server: Issued
    client: Issued
    stranger: Issued  # a client certificate from another CA
    files: dict[str, pathlib.Path]


@pytest.fixture
def pki(tmp_path: pathlib.Path) -> Pki:
    ca, other_ca = make_ca("tmws test CA"), make_ca("someone else's CA")
    server, client = issue(ca, "localhost", server=True), issue(ca, "agent-1", server=False)
    stranger = issue(other_ca, "agent-x", server=False)
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "server.pem", "key": tmp_path / "server.key"}
    files["ca"].write_bytes(ca.cert)
    files["cert"].write_bytes(server.cert)
    files["key"].write_bytes(server.key)
    return Pki(ca, server, client, stranger, files)


async def _started(tmp_path: pathlib.Path, **settings: object) -> PatternServer:
    return await start_server(make_settings(tmp_path / "data", **settings))


@pytest.fixture
async def tls_server(tmp_path: pathlib.Path, pki: Pki) -> AsyncIterator[PatternServer]:
    srv = await _started(tmp_path, tls_cert_file=str(pki.files["cert"]), tls_key_file=str(pki.files["key"]))
    yield srv
    await srv.stop(0)


@pytest.fixture
async def mtls_server(tmp_path: pathlib.Path, pki: Pki) -> AsyncIterator[PatternServer]:
    srv = await _started(
        tmp_path,
        tls_cert_file=str(pki.files["cert"]),
        tls_key_file=str(pki.files["key"]),
        tls_client_ca_file=str(pki.files["ca"]),
    )
    yield srv
    await srv.stop(0)


def _client(server: PatternServer, credentials: grpc.ChannelCredentials | None) -> PatternClient:
    # wait_for_ready=False: a refused handshake fails the call with UNAVAILABLE at once.
    return PatternClient.connect(
        f"localhost:{server.port}", credentials=credentials, default_timeout=30.0, wait_for_ready=False
    )


async def test_tls_serves_clients_that_trust_the_ca(tls_server: PatternServer, pki: Pki) -> None:
    async with _client(tls_server, grpc.ssl_channel_credentials(root_certificates=pki.ca.cert)) as client:
        assert (await client.execute("calculate 6 * 7")).success


async def test_tls_refuses_plaintext_and_untrusting_clients(tls_server: PatternServer, pki: Pki) -> None:
    async with _client(tls_server, None) as plaintext:
        with pytest.raises(Unavailable):
            await plaintext.get_stats()
    untrusting = grpc.ssl_channel_credentials(root_certificates=make_ca("unrelated").cert)
    async with _client(tls_server, untrusting) as client:
        with pytest.raises(Unavailable):
            await client.get_stats()


async def test_mutual_tls_requires_a_client_certificate_from_the_ca(mtls_server: PatternServer, pki: Pki) -> None:
    good = grpc.ssl_channel_credentials(pki.ca.cert, private_key=pki.client.key, certificate_chain=pki.client.cert)
    async with _client(mtls_server, good) as client:
        assert (await client.execute("calculate 2 + 2")).success
    no_cert = grpc.ssl_channel_credentials(root_certificates=pki.ca.cert)
    async with _client(mtls_server, no_cert) as anonymous:
        with pytest.raises(Unavailable):
            await anonymous.get_stats()
    foreign = grpc.ssl_channel_credentials(
        pki.ca.cert, private_key=pki.stranger.key, certificate_chain=pki.stranger.cert
    )
    async with _client(mtls_server, foreign) as stranger:
        with pytest.raises(Unavailable):
            await stranger.get_stats()
