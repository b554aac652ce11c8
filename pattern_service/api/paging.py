"""Opaque page tokens for list RPCs (AIP-158): the one codec of every list.

A token encodes where the next page starts (an offset, or the keyset position
of the last item returned) and a fingerprint of the query it belongs to, so a
token replayed with other filters, or by another tenant, is refused instead of
silently returning the wrong page. The stores never see a token: they take and
return a typed :class:`~pattern_service.domain.KeysetCursor`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import datetime
from typing import Any

from pattern_service.domain import KeysetCursor
from pattern_service.errors import InvalidArgumentError

#: ``ErrorInfo.reason`` of a refused ``page_token``.
INVALID_PAGE_TOKEN = "INVALID_PAGE_TOKEN"


def _fingerprint(query_key: str) -> str:
    return hashlib.sha256(query_key.encode()).hexdigest()[:16]


def _pack(position: dict[str, Any], query_key: str) -> str:
    raw = json.dumps({**position, "q": _fingerprint(query_key)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unpack(token: str, query_key: str) -> dict[str, Any]:
    """The position fields of a token of the query ``query_key``.

    Raises:
        InvalidArgumentError: Malformed, or made for another query (field ``page_token``).
    """
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        fingerprint = data["q"] if isinstance(data, dict) else None
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        fingerprint = None
    if fingerprint is None:
        raise _refused("is malformed; pass a next_page_token unchanged")
    if fingerprint != _fingerprint(query_key):
        raise _refused("is not a token of this query; restart from the first page")
    return dict(data)


def _refused(description: str) -> InvalidArgumentError:
    return InvalidArgumentError.single("page_token", description, reason=INVALID_PAGE_TOKEN)


def encode_token(offset: int, query_key: str) -> str:
    """The token for the page starting at ``offset`` of the query identified by ``query_key``."""
    return _pack({"o": offset}, query_key)


def decode_token(token: str, query_key: str) -> int:
    """The offset a token encodes (0 for an empty token).

    Raises:
        InvalidArgumentError: Malformed token, or one from another query (field ``page_token``).
    """
    if not token:
        return 0
    offset = _unpack(token, query_key).get("o")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise _refused("is malformed; pass a next_page_token unchanged")
    return offset


def encode_cursor(cursor: KeysetCursor | None, query_key: str) -> str:
    """The token for the page after ``cursor`` of the query identified by ``query_key``.

    ``None`` (there is no next page) encodes as ``""``, the inverse of :func:`decode_cursor`.
    """
    if cursor is None:
        return ""
    position: dict[str, Any] = {"c": cursor.created_at.isoformat(), "i": cursor.id}
    if cursor.rank is not None:
        position["r"] = cursor.rank
    return _pack(position, query_key)


def decode_cursor(token: str, query_key: str) -> KeysetCursor | None:
    """The keyset position a token encodes (``None`` for an empty token: the first page).

    Raises:
        InvalidArgumentError: Malformed token, or one from another query (field ``page_token``).
    """
    if not token:
        return None
    data = _unpack(token, query_key)
    rank = data.get("r")
    try:
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int | float)):
            raise ValueError
        return KeysetCursor(
            created_at=datetime.fromisoformat(data["c"]),
            id=str(data["i"]),
            rank=None if rank is None else float(rank),
        )
    except (KeyError, TypeError, ValueError):
        raise _refused("is malformed; pass a next_page_token unchanged") from None
