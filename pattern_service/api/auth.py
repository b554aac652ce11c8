"""Authentication and per-RPC scopes (applied to each call by :mod:`pattern_service.api.guard`).

A caller presents its API key as ``authorization: Bearer <key>`` (or
``x-api-key: <key>``). :func:`authenticate` verifies it against the configured
digests (:mod:`pattern_service.api.keys`) and checks the scope the method needs
(:data:`METHOD_SCOPES`); the call guard binds the caller's
:class:`~pattern_service.api.identity.Principal` for the call, from which
:func:`~pattern_service.api.identity.tenant_of` takes the tenant.

========================================================  ==========
RPC                                                       scope
========================================================  ==========
Execute, ExecuteMany, Route, EvaluateRouting              execute
  … and an Execute/ExecuteMany item that routes to a write  + write
GetStats, ListPatternDefinitions, GetPatternDefinition,   read
MatchPatterns, GetSuccessPattern, ListSuccessPatterns
CreateSuccessPattern, UpdateSuccessPattern,               write
DeleteSuccessPattern, RecordPatternOutcome
RegisterBatch, DeletePatternDefinition, FitRouting        admin
  … on the global pattern layer (:mod:`.layers`)            + patterns:admin:global
MemoryService: GetMemory, ListMemories, SearchMemories    memories:read
MemoryService: CreateMemory, BatchCreateMemories,         memories:write
UpdateMemory, DeleteMemory, PurgeMemories
grpc.health.v1.Health, server reflection                  none (open)
any other method of ``tmws.pattern.v1``                    admin (fail closed)
========================================================  ==========

``read`` implies ``memories:read`` and ``write`` implies ``memories:write``
(:data:`~pattern_service.api.identity.IMPLIED_SCOPES`), so keys made before the
memory API keep their access; ``admin`` implies every scope.

The ``write`` check of an execution cannot live here: only the router knows
whether a query (``store …``) is a write. The servicer passes
``allow_write=has_scope(WRITE)`` to the engine, which refuses a planned write
with ``PERMISSION_DENIED`` before anything runs or is cached.

Errors: no or an unknown key → ``UNAUTHENTICATED`` (reason ``MISSING_CREDENTIALS``
or ``INVALID_API_KEY``); more than one credential (two ``authorization`` or two
``x-api-key`` headers, or both headers with different keys) → ``UNAUTHENTICATED``
(reason ``CONFLICTING_CREDENTIALS``); two ``x-tenant-id`` values →
``INVALID_ARGUMENT`` (field ``metadata.x-tenant-id``); missing scope → ``PERMISSION_DENIED`` (reason
``MISSING_SCOPE``, metadata ``required_scope``); an ``x-tenant-id`` header
other than the key's tenant → ``PERMISSION_DENIED`` (reason ``TENANT_MISMATCH``).

With no keys configured the server runs open (every scope, tenant from
``x-tenant-id``) and :func:`check_open_mode` allows that on a loopback address
only, unless ``TMWS_ALLOW_UNAUTHENTICATED=true``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from pattern_service.api.identity import TENANT_METADATA_KEY, Principal, Scope, metadata_tenant, missing_scope
from pattern_service.api.keys import KeyRing
from pattern_service.errors import PermissionDeniedError, UnauthenticatedError

log = logging.getLogger(__name__)

PACKAGE = "tmws.pattern.v1"
_EXEC = f"/{PACKAGE}.PatternExecutionService/"
_LEARN = f"/{PACKAGE}.PatternLearningService/"
_MEM = f"/{PACKAGE}.MemoryService/"

#: The scope each RPC of ``tmws.pattern.v1`` needs (full method names).
METHOD_SCOPES: dict[str, Scope] = {
    _EXEC + "Execute": Scope.EXECUTE,
    _EXEC + "ExecuteMany": Scope.EXECUTE,
    _EXEC + "Route": Scope.EXECUTE,
    _EXEC + "EvaluateRouting": Scope.EXECUTE,
    _EXEC + "FitRouting": Scope.ADMIN,
    _EXEC + "GetStats": Scope.READ,
    _EXEC + "ListPatternDefinitions": Scope.READ,
    _EXEC + "GetPatternDefinition": Scope.READ,
    _EXEC + "RegisterBatch": Scope.ADMIN,
    _EXEC + "DeletePatternDefinition": Scope.ADMIN,
    _LEARN + "MatchPatterns": Scope.READ,
    _LEARN + "GetSuccessPattern": Scope.READ,
    _LEARN + "ListSuccessPatterns": Scope.READ,
    _LEARN + "CreateSuccessPattern": Scope.WRITE,
    _LEARN + "UpdateSuccessPattern": Scope.WRITE,
    _LEARN + "DeleteSuccessPattern": Scope.WRITE,
    _LEARN + "RecordPatternOutcome": Scope.WRITE,
    _MEM + "GetMemory": Scope.MEMORIES_READ,
    _MEM + "ListMemories": Scope.MEMORIES_READ,
    _MEM + "SearchMemories": Scope.MEMORIES_READ,
    _MEM + "CreateMemory": Scope.MEMORIES_WRITE,
    _MEM + "BatchCreateMemories": Scope.MEMORIES_WRITE,
    _MEM + "UpdateMemory": Scope.MEMORIES_WRITE,
    _MEM + "DeleteMemory": Scope.MEMORIES_WRITE,
    _MEM + "PurgeMemories": Scope.MEMORIES_WRITE,
}

BEARER = "bearer "
API_KEY_METADATA_KEY = "x-api-key"


def required_scope(method: str) -> Scope | None:
    """The scope ``method`` needs; ``None`` for methods outside ``tmws.pattern.v1`` (health, reflection)."""
    scope = METHOD_SCOPES.get(method)
    if scope is None and method.startswith(f"/{PACKAGE}."):
        return Scope.ADMIN  # a method added later without an entry: fail closed
    return scope


def presented_key(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The API key a call presents, or ``None``.

    A call presents at most one credential: one ``authorization: Bearer <key>``
    header, one ``x-api-key`` header, or both naming the same key. Anything
    else is refused whatever the order of the headers, so a proxy appending a
    header cannot change whose call it is ("first one wins" would).

    Raises:
        UnauthenticatedError: ``MALFORMED_AUTHORIZATION``: an ``authorization``
            header that is not ``Bearer <key>``; ``CONFLICTING_CREDENTIALS``: two
            ``authorization`` or two ``x-api-key`` headers, or both headers with
            different keys.
    """
    bearers: list[str] = []
    api_keys: list[str] = []
    for key, value in metadata or ():
        if key != "authorization" and key != API_KEY_METADATA_KEY:
            continue
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        if key == "authorization":
            if not text[: len(BEARER)].lower() == BEARER or not text[len(BEARER) :].strip():
                raise UnauthenticatedError(
                    "the authorization metadata must be 'Bearer <api key>'", reason="MALFORMED_AUTHORIZATION"
                )
            bearers.append(text[len(BEARER) :].strip())
        elif text:
            api_keys.append(text)
    if len(bearers) > 1 or len(api_keys) > 1 or len(set(bearers + api_keys)) > 1:
        raise UnauthenticatedError(
            "the call presents more than one credential: send one 'authorization: Bearer <key>' "
            "or one 'x-api-key' header",
            reason="CONFLICTING_CREDENTIALS",
        )
    return bearers[0] if bearers else api_keys[0] if api_keys else None


def authenticate(ring: KeyRing, metadata: Iterable[tuple[str, str | bytes]] | None, scope: Scope) -> Principal:
    """The principal of a call that needs ``scope``.

    Raises:
        UnauthenticatedError: No key, a malformed header, or an unknown key.
        PermissionDeniedError: The key lacks ``scope`` (``MISSING_SCOPE``), or
            the ``x-tenant-id`` metadata names another tenant (``TENANT_MISMATCH``).
        InvalidArgumentError: A malformed ``x-tenant-id`` value.
    """
    key = presented_key(metadata)
    if key is None:
        raise UnauthenticatedError(
            "this server requires an API key: send 'authorization: Bearer <key>'", reason="MISSING_CREDENTIALS"
        )
    principal = ring.authenticate(key)
    if principal is None:
        raise UnauthenticatedError("the API key is not valid", reason="INVALID_API_KEY")
    if not principal.has(scope):
        raise missing_scope(scope)
    claimed = metadata_tenant(metadata)
    if claimed is not None and claimed != principal.tenant:
        raise PermissionDeniedError(
            f"metadata {TENANT_METADATA_KEY} names another tenant than the API key's",
            reason="TENANT_MISMATCH",
            metadata={"key_tenant": principal.tenant},
        )
    return principal


def is_loopback(address: str) -> bool:
    """Whether a ``host:port`` listen address accepts loopback connections only.

    ``localhost`` and Unix sockets count as loopback; a wildcard (``0.0.0.0``, ``[::]``) or any
    other name or address does not.
    """
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = address.rpartition(":")[0] if ":" in address else address
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class InsecureConfigurationError(RuntimeError):
    """The server would run open on a non-loopback address."""


def check_open_mode(ring: KeyRing, address: str, allow_unauthenticated: bool) -> str:
    """Refuse to run open beyond loopback; describe the authentication mode.

    Args:
        ring: The configured keys.
        address: ``TMWS_GRPC_ADDRESS``.
        allow_unauthenticated: ``TMWS_ALLOW_UNAUTHENTICATED``.

    Returns:
        A one-line description for the start-up log.

    Raises:
        InsecureConfigurationError: No keys, a non-loopback address and no
            explicit ``TMWS_ALLOW_UNAUTHENTICATED=true``.
    """
    if ring.enabled:
        return f"API keys required ({len(ring)} keys, {len(ring.tenants)} tenants)"
    if is_loopback(address):
        return "OPEN: no API keys configured, no authentication (loopback only)"
    if allow_unauthenticated:
        return f"OPEN on {address}: no authentication (TMWS_ALLOW_UNAUTHENTICATED=true)"
    raise InsecureConfigurationError(
        f"refusing to serve {address} without authentication: configure TMWS_API_KEYS_FILE or TMWS_API_KEYS, "
        "listen on a loopback address, or set TMWS_ALLOW_UNAUTHENTICATED=true"
    )


def log_mode(description: str) -> None:
    """Warn at start when the server runs open (no authentication)."""
    if description.startswith("OPEN"):
        log.warning("authentication: %s", description)


__all__ = [
    "METHOD_SCOPES",
    "InsecureConfigurationError",
    "authenticate",
    "check_open_mode",
    "is_loopback",
    "log_mode",
    "required_scope",
]
