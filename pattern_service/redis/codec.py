"""Compact binary form of cached execution results for the Redis cache layer.

A value is one format byte followed by the body: ``j`` + UTF-8 JSON, or ``z``
+ zlib-compressed JSON when that is smaller (bodies of 256 bytes or more).
The JSON is a positional array (no field names), so a typical result costs a
few hundred bytes. Never pickle: a value read back from a shared Redis is
data, not code. Decoding builds a fresh, frozen :class:`ExecutionResult` equal
to the one encoded (JSON arrays come back as lists, as in the local layer).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pattern_service.domain import (
    ExecutionResult,
    MatchSource,
    PatternType,
    RouteAlternative,
    RoutingDecision,
)

FORMAT_VERSION = 1
COMPRESS_MIN_BYTES = 256
_JSON = b"j"
_ZLIB = b"z"


@dataclass(frozen=True, slots=True)
class CachedResult:
    """A decoded cache value.

    Attributes:
        tenant_id: Owner tenant.
        reads_memory: The result depends on the tenant's memories.
        result: The cached result (a fresh object per decode).
    """

    tenant_id: str
    reads_memory: bool
    result: ExecutionResult


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"not JSON-compatible: {type(value).__name__}")


def encode_result(value: ExecutionResult, *, tenant_id: str, reads_memory: bool) -> bytes:
    """Encode a result for Redis.

    Args:
        value: The result.
        tenant_id: Owner tenant (kept with the value).
        reads_memory: The result depends on the tenant's memories.

    Returns:
        The value bytes (format byte + body).

    Raises:
        TypeError, ValueError: ``result`` or ``metadata`` is not JSON-compatible (e.g. NaN).
    """
    r = value.routing
    doc = [
        FORMAT_VERSION,
        tenant_id,
        reads_memory,
        value.pattern_name,
        value.pattern_type.value,
        value.success,
        value.result,
        value.execution_time_ms,
        value.tokens_used,
        value.cache_hit,
        value.error,
        value.metadata,
        [
            r.pattern_type.value,
            r.pattern_name,
            r.confidence,
            r.reasoning,
            r.estimated_cost,
            [[a.pattern_type.value, a.pattern_name, a.score, a.estimated_cost] for a in r.alternative_routes],
            r.match_source.value,
        ],
    ]
    raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_plain).encode()
    if len(raw) >= COMPRESS_MIN_BYTES:
        packed = zlib.compress(raw, 6)
        if len(packed) < len(raw):
            return _ZLIB + packed
    return _JSON + raw


def decode_result(data: bytes) -> CachedResult:
    """Decode a value written by :func:`encode_result`.

    Args:
        data: The value bytes.

    Returns:
        Tenant, memory flag and a fresh result.

    Raises:
        ValueError: ``data`` is not a value of this format (corrupt, foreign or of another version).
    """
    try:
        fmt, body = data[:1], data[1:]
        if fmt == _ZLIB:
            body = zlib.decompress(body)
        elif fmt != _JSON:
            raise ValueError(f"unknown cache value format {fmt!r}")
        doc = json.loads(body)
        if not isinstance(doc, list) or len(doc) != 13 or doc[0] != FORMAT_VERSION:
            raise ValueError("unexpected cache value layout")
        (_, tenant, reads_memory, name, ptype, success, result, ms, tokens, hit, error, metadata, route) = doc
        rtype, rname, confidence, reasoning, cost, alternatives, source = route
        routing = RoutingDecision(
            pattern_type=PatternType(rtype),
            pattern_name=rname,
            confidence=confidence,
            reasoning=reasoning,
            estimated_cost=cost,
            alternative_routes=tuple(RouteAlternative(PatternType(t), n, s, c) for t, n, s, c in alternatives),
            match_source=MatchSource(source),
        )
        value = ExecutionResult(
            pattern_name=name,
            pattern_type=PatternType(ptype),
            success=success,
            result=result,
            execution_time_ms=ms,
            tokens_used=tokens,
            cache_hit=hit,
            error=error,
            metadata=metadata,
            routing=routing,
        )
        return CachedResult(str(tenant), bool(reads_memory), value)
    except ValueError:
        raise
    except (TypeError, KeyError, IndexError, zlib.error, UnicodeDecodeError) as exc:
        raise ValueError(f"corrupt cache value: {exc}") from exc
