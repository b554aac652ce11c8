"""API keys: hashed at rest, each bound to a tenant and scopes, verified in constant time.

Keys are configured only as SHA-256 digests (API keys are random, high-entropy
secrets, so a fast unsalted hash is what makes a leaked key file useless
without the keys; a password hash would only slow down every call).

Configuration (either or both; names must be unique, digests too):

- ``TMWS_API_KEYS_FILE``: a JSON or YAML file (by extension: ``.yaml``/``.yml``
  is YAML, anything else JSON) holding a list of entries, or ``{"keys": [...]}``;
- ``TMWS_API_KEYS``: the same list as inline JSON.

Each entry: ``{"name": "ci-bot", "tenant": "acme", "scopes": ["execute", "read"],
"key_sha256": "<64 hex digits>"}``. Scopes: ``execute``, ``read``, ``write``,
``admin`` (implies all), ``memories:read`` and ``memories:write`` (the memory API;
implied by ``read`` and ``write`` respectively).

Make a key and its digest with ``python -m pattern_service.api.keys`` (prints a
new random key and its entry), or hash an existing one with
``python -m pattern_service.api.keys <key>`` (or ``-`` to read it from stdin).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pattern_service.api.identity import TENANT_PATTERN, Principal, Scope, expand_scopes

_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")
KEY_PREFIX = "tmws_"


class KeyConfigError(ValueError):
    """The configured API keys are malformed (the server refuses to start)."""


def hash_key(key: str) -> str:
    """The SHA-256 hex digest configured for ``key``.

    Raises:
        ValueError: ``key`` is empty.
    """
    if not key:
        raise ValueError("an API key must not be empty")
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> str:
    """A new random API key (256 bits, URL-safe)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One configured key.

    Attributes:
        digest: SHA-256 of the key (32 bytes).
        principal: Who the key authenticates.
    """

    digest: bytes
    principal: Principal


class KeyRing:
    """The configured keys; empty means the server runs open.

    Args:
        keys: The keys (digests and names unique).
    """

    def __init__(self, keys: Sequence[ApiKey] = ()):
        self._keys = tuple(keys)

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (authentication is required)."""
        return bool(self._keys)

    @property
    def tenants(self) -> frozenset[str]:
        """Tenants the keys belong to."""
        return frozenset(k.principal.tenant for k in self._keys)

    def authenticate(self, presented: str) -> Principal | None:
        """The principal of a presented key, or ``None``.

        The presented key's digest is compared with every configured digest
        using :func:`hmac.compare_digest`, without stopping at a match, so the
        time taken does not depend on which key (if any) matched.
        """
        if not presented:
            return None
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        found: Principal | None = None
        for key in self._keys:
            if hmac.compare_digest(digest, key.digest):
                found = key.principal
        return found


def _entry(raw: Any, where: str) -> ApiKey:
    if not isinstance(raw, dict):
        raise KeyConfigError(f"{where}: must be an object with name, tenant, scopes, key_sha256")
    unknown = set(raw) - {"name", "tenant", "scopes", "key_sha256"}
    if unknown:
        raise KeyConfigError(f"{where}: unknown fields {sorted(unknown)}")
    name, tenant, scopes, digest = raw.get("name"), raw.get("tenant"), raw.get("scopes"), raw.get("key_sha256")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise KeyConfigError(f"{where}.name: must be 1-100 characters")
    if not isinstance(tenant, str) or not TENANT_PATTERN.match(tenant):
        raise KeyConfigError(f"{where}.tenant: must be 1-64 characters of [A-Za-z0-9_.-], the first a letter or digit")
    if not isinstance(digest, str) or not _HEX_DIGEST.match(digest.lower()):
        raise KeyConfigError(f"{where}.key_sha256: must be 64 hex digits (see `python -m pattern_service.api.keys`)")
    if not isinstance(scopes, list) or not scopes:
        raise KeyConfigError(f"{where}.scopes: must be a non-empty list of {[s.value for s in Scope]}")
    granted: list[Scope] = []
    for s in scopes:
        try:
            granted.append(Scope(s))
        except ValueError:
            raise KeyConfigError(f"{where}.scopes: unknown scope {s!r}; use {[x.value for x in Scope]}") from None
    return ApiKey(bytes.fromhex(digest.lower()), Principal(name, tenant, expand_scopes(granted)))


def parse_keys(document: Any, source: str) -> list[ApiKey]:
    """Parse a decoded key document (a list of entries, or ``{"keys": [...]}``).

    Raises:
        KeyConfigError: The document or an entry is malformed.
    """
    if isinstance(document, dict) and set(document) == {"keys"}:
        document = document["keys"]
    if not isinstance(document, list):
        raise KeyConfigError(f"{source}: must be a list of keys (or an object with a 'keys' list)")
    return [_entry(item, f"{source}[{i}]") for i, item in enumerate(document)]


def load_key_ring(keys_file: Path | str | None, inline: str) -> KeyRing:
    """Read the keys of ``TMWS_API_KEYS_FILE`` and ``TMWS_API_KEYS``.

    Args:
        keys_file: JSON or YAML file, or ``None``/empty for none.
        inline: Inline JSON, or empty for none.

    Returns:
        The key ring (empty when neither is given).

    Raises:
        KeyConfigError: A source cannot be read or parsed, an entry is
            malformed, or two entries share a name or a digest.
    """
    keys: list[ApiKey] = []
    if keys_file:
        path = Path(keys_file)
        try:
            text = path.read_text(encoding="utf-8")
            document = yaml.safe_load(text) if path.suffix.lower() in {".yaml", ".yml"} else json.loads(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise KeyConfigError(f"TMWS_API_KEYS_FILE {str(path)!r}: {exc}") from exc
        keys += parse_keys(document, "TMWS_API_KEYS_FILE")
    if inline.strip():
        try:
            document = json.loads(inline)
        except ValueError as exc:
            raise KeyConfigError(f"TMWS_API_KEYS: not valid JSON: {exc}") from exc
        keys += parse_keys(document, "TMWS_API_KEYS")
    names = [k.principal.name for k in keys]
    digests = [k.digest for k in keys]
    if len(set(names)) != len(names):
        raise KeyConfigError("API key names must be unique")
    if len(set(digests)) != len(digests):
        raise KeyConfigError("two API key entries have the same key_sha256")
    return KeyRing(keys)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pattern_service.api.keys [KEY|-] [--name N --tenant T --scopes a,b]``: print a key entry.

    Without ``KEY`` a new random key is generated and printed once (store it:
    only its digest goes into the configuration).

    Returns:
        The exit code (2 for invalid arguments).
    """
    parser = argparse.ArgumentParser(prog="hash-key", description=HASH_KEY_DESCRIPTION)
    add_hash_key_arguments(parser)
    return run_hash_key(parser.parse_args(argv))


HASH_KEY_DESCRIPTION = (
    "Print the TMWS_API_KEYS(_FILE) entry of an API key (only its SHA-256 digest); "
    "without KEY a new key is generated and shown once on stderr."
)


def add_hash_key_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``hash-key`` command's arguments (``key``, ``--name``, ``--tenant``, ``--scopes``) to ``parser``."""
    parser.add_argument(
        "key", nargs="?", metavar="KEY", help="the key to hash; '-' reads it from stdin; omitted: generate one"
    )
    parser.add_argument(
        "--name", default="my-key", help="name of the key entry (shown in logs, unique); default: my-key"
    )
    parser.add_argument(
        "--tenant", default="default", help="tenant every call made with this key acts for; default: default"
    )
    parser.add_argument(
        "--scopes",
        default="execute,read",
        help=(
            "comma-separated scopes: execute, read, write, admin (admin = all), memories:read, memories:write "
            "(implied by read, write); default: execute,read"
        ),
    )


def run_hash_key(opts: argparse.Namespace) -> int:
    """Print the key entry of parsed ``hash-key`` arguments; returns the exit code (2 for invalid ones)."""
    key = opts.key
    generated = key is None
    if key == "-":
        key = sys.stdin.readline().rstrip("\r\n")
    if generated:
        key = generate_key()
    if not key:
        print("hash-key: the key must not be empty", file=sys.stderr)
        return 2
    entry = {"name": opts.name, "tenant": opts.tenant, "scopes": opts.scopes.split(","), "key_sha256": hash_key(key)}
    try:
        parse_keys([entry], "arguments")  # the server's own checks
    except KeyConfigError as exc:
        print(f"hash-key: {exc}", file=sys.stderr)
        return 2
    if generated:
        print(f"key (shown once): {key}", file=sys.stderr)
    print(json.dumps(entry))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
