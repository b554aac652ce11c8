"""Key files, the open-mode guard, the hash-key command and TLS settings (no server needed)."""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml

from pattern_service.__main__ import main as cli_main
from pattern_service.api import keys
from pattern_service.api.auth import InsecureConfigurationError, check_open_mode, is_loopback, required_scope
from pattern_service.api.identity import ALL_SCOPES, CROSS_TENANT_SCOPES, Scope
from pattern_service.api.keys import KeyConfigError, KeyRing, hash_key, load_key_ring
from pattern_service.api.security import server_security
from pattern_service.api.tls import TlsConfigError, server_credentials
from pattern_service.config import Settings


def _entry(name: str = "ci", tenant: str = "acme", scopes: list[str] | None = None, key: str = "secret-1") -> dict:
    return {"name": name, "tenant": tenant, "scopes": scopes or ["read"], "key_sha256": hash_key(key)}


def test_json_and_yaml_files_and_inline_keys_load(tmp_path: pathlib.Path) -> None:
    (tmp_path / "keys.json").write_text(json.dumps([_entry("one", key="k1")]))
    (tmp_path / "keys.yaml").write_text(yaml.safe_dump({"keys": [_entry("two", "beta", ["admin"], key="k2")]}))
    ring = load_key_ring(tmp_path / "keys.json", json.dumps([_entry("three", key="k3")]))
    assert len(ring) == 2 and ring.enabled
    one = ring.authenticate("k1")
    assert one is not None and one.tenant == "acme"
    assert one.scopes == frozenset({Scope.READ, Scope.MEMORIES_READ})  # read implies memories:read
    assert ring.authenticate("k3") is not None and ring.authenticate("k2") is None
    admin = load_key_ring(tmp_path / "keys.yaml", "").authenticate("k2")
    # admin implies every scope of its tenant, not the global pattern layer's
    assert admin is not None and admin.scopes == ALL_SCOPES - CROSS_TENANT_SCOPES


def test_no_keys_is_an_empty_ring() -> None:
    ring = load_key_ring(None, "")
    assert not ring.enabled and ring.authenticate("anything") is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"name": "x"}, "must be a list"),
        ([{**_entry(), "key_sha256": "abc"}], "64 hex digits"),
        ([{**_entry(), "scopes": ["root"]}], "unknown scope"),
        ([{**_entry(), "scopes": []}], "non-empty list"),
        ([{**_entry(), "tenant": "bad tenant!"}], "tenant"),
        ([{**_entry(), "key": "plaintext"}], "unknown fields"),
        ([_entry("same", key="a"), _entry("same", key="b")], "names must be unique"),
        ([_entry("a", key="same"), _entry("b", key="same")], "same key_sha256"),
    ],
)
def test_malformed_key_configuration_is_refused(document: object, message: str) -> None:
    with pytest.raises(KeyConfigError, match=message):
        load_key_ring(None, json.dumps(document))


def test_unreadable_key_file_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(KeyConfigError, match="TMWS_API_KEYS_FILE"):
        load_key_ring(tmp_path / "missing.json", "")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(KeyConfigError, match="TMWS_API_KEYS_FILE"):
        load_key_ring(tmp_path / "bad.json", "")


def test_open_mode_is_loopback_only_unless_explicitly_allowed() -> None:
    empty = KeyRing()
    assert check_open_mode(empty, "127.0.0.1:50051", False).startswith("OPEN")
    assert check_open_mode(empty, "[::1]:50051", False).startswith("OPEN")
    assert check_open_mode(empty, "localhost:0", False).startswith("OPEN")
    for address in ("0.0.0.0:50051", "[::]:50051", "10.1.2.3:50051", "example.com:443"):
        assert not is_loopback(address)
        with pytest.raises(InsecureConfigurationError, match="TMWS_ALLOW_UNAUTHENTICATED"):
            check_open_mode(empty, address, False)
        assert "TMWS_ALLOW_UNAUTHENTICATED" in check_open_mode(empty, address, True)
    keyed = load_key_ring(None, json.dumps([_entry()]))
    assert check_open_mode(keyed, "0.0.0.0:50051", False).startswith("API keys required")


def test_server_security_refuses_an_open_public_address(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InsecureConfigurationError):
        server_security(Settings(grpc_address="0.0.0.0:0", data_dir=tmp_path))
    allowed = server_security(Settings(grpc_address="0.0.0.0:0", data_dir=tmp_path, allow_unauthenticated=True))
    assert allowed.credentials is None and "plaintext" in allowed.description and allowed.guard is not None


def test_methods_outside_the_table_fail_closed() -> None:
    assert required_scope("/tmws.pattern.v1.PatternExecutionService/Execute") is Scope.EXECUTE
    assert required_scope("/tmws.pattern.v1.PatternExecutionService/SomethingNew") is Scope.ADMIN
    assert required_scope("/grpc.health.v1.Health/Check") is None


def test_hash_key_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert keys.main(["my-secret", "--name", "bot", "--tenant", "acme", "--scopes", "execute,read"]) == 0
    entry = json.loads(capsys.readouterr().out)
    assert entry == {
        "name": "bot",
        "tenant": "acme",
        "scopes": ["execute", "read"],
        "key_sha256": hash_key("my-secret"),
    }
    assert keys.main([]) == 0  # generates a key, shown once on stderr
    captured = capsys.readouterr()
    generated = captured.err.split("key (shown once): ")[1].strip()
    assert json.loads(captured.out)["key_sha256"] == hash_key(generated) and generated.startswith("tmws_")
    assert keys.main(["k", "--scopes", "root"]) == 2
    assert "unknown scope" in capsys.readouterr().err


def test_incomplete_tls_settings_are_refused(tmp_path: pathlib.Path) -> None:
    assert server_credentials("", "", "") is None
    with pytest.raises(TlsConfigError, match="both"):
        server_credentials(tmp_path / "cert.pem", "", "")
    with pytest.raises(TlsConfigError, match="needs"):
        server_credentials("", "", tmp_path / "ca.pem")
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    with pytest.raises(TlsConfigError, match="not a PEM"):
        server_credentials(tmp_path / "cert.pem", tmp_path / "key.pem", "")
    with pytest.raises(TlsConfigError, match="missing"):
        server_credentials(tmp_path / "missing.pem", tmp_path / "key.pem", "")


@pytest.mark.parametrize("argv", [["hash-key", "--help"], ["--address", "127.0.0.1:1", "hash-key", "--help"]])
def test_hash_key_help_lists_and_explains_every_option(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli_main(argv)
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option, meaning in (
        ("--name", "name of the key entry"),
        ("--tenant", "tenant every call made with this key acts for"),
        ("--scopes", "comma-separated scopes"),
        ("KEY", "the key to hash"),
    ):
        assert option in text and meaning in text
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    assert "hash-key" in capsys.readouterr().out


def test_hash_key_through_the_server_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["hash-key", "s3cret", "--name", "ci", "--tenant", "acme", "--scopes", "admin"]) == 0
    entry = json.loads(capsys.readouterr().out)
    assert entry == {"name": "ci", "tenant": "acme", "scopes": ["admin"], "key_sha256": hash_key("s3cret")}
