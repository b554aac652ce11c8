"""Opaque page tokens for list RPCs (AIP-158).

A token encodes the offset of the next page and a fingerprint of the query it
belongs to, so a token replayed with other filters is refused instead of
silently returning the wrong page.
"""

from __future__ import annotations

import base64
import hashlib
import json

from pattern_service.errors import InvalidArgumentError


def _fingerprint(query_key: str) -> str:
    return hashlib.sha256(query_key.encode()).hexdigest()[:16]


def encode_token(offset: int, query_key: str) -> str:
    """The token for the page starting at ``offset`` of the query identified by ``query_key``."""
    raw = json.dumps({"o": offset, "q": _fingerprint(query_key)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, query_key: str) -> int:
    """The offset a token encodes (0 for an empty token).

    Raises:
        InvalidArgumentError: Malformed token, or one from another query (field ``page_token``).
    """
    if not token:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        offset = data["o"]
        ok = isinstance(offset, int) and offset >= 0 and data["q"] == _fingerprint(query_key)
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise InvalidArgumentError.single("page_token", "is not a token of this query; restart from the first page")
    return int(offset)
