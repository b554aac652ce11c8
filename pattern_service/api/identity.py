"""Who is calling: the tenant and scopes every read, write, cache key and statistic is scoped by.

The call guard (:mod:`pattern_service.api.guard`, with :mod:`pattern_service.api.auth`)
verifies the caller's API key and puts a :class:`Principal` in a context
variable for the duration of the call; :func:`tenant_of` and :func:`has_scope` read it.

- **Authenticated** (API keys configured): the tenant is the key's tenant; an
  ``x-tenant-id`` header must be absent or equal to it (checked by the
  call guard), and the scopes are the key's.
- **Open** (no keys configured, loopback only unless explicitly allowed): no
  principal is set; the tenant comes from the ``x-tenant-id`` metadata
  (default ``default``) and every scope is granted.
"""

from __future__ import annotations

import contextvars
import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from pattern_service.domain import DEFAULT_TENANT
from pattern_service.errors import InvalidArgumentError, PermissionDeniedError

TENANT_METADATA_KEY = "x-tenant-id"
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TENANT = TENANT_PATTERN


class Scope(enum.StrEnum):
    """What a key may do.

    ``admin`` implies every other scope except ``patterns:admin:global``; ``read``
    implies ``memories:read`` and ``write`` implies ``memories:write`` (keys made
    before the memory API keep reaching memories), while a key granted only
    ``memories:*`` reaches nothing else. ``patterns:admin:global`` changes the
    global pattern layer every tenant sees (:mod:`pattern_service.engine.registries`)
    and implies ``admin``; ``admin`` alone changes only its tenant's layer.
    """

    EXECUTE = "execute"
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"
    PATTERNS_ADMIN_GLOBAL = "patterns:admin:global"
    MEMORIES_READ = "memories:read"
    MEMORIES_WRITE = "memories:write"


ALL_SCOPES = frozenset(Scope)
#: Scopes ``admin`` does not imply (they reach beyond the key's tenant).
CROSS_TENANT_SCOPES = frozenset({Scope.PATTERNS_ADMIN_GLOBAL})

#: Scopes each scope grants besides itself (``admin``: every tenant-scoped one, see :func:`expand_scopes`).
IMPLIED_SCOPES: dict[Scope, frozenset[Scope]] = {
    Scope.READ: frozenset({Scope.MEMORIES_READ}),
    Scope.WRITE: frozenset({Scope.MEMORIES_WRITE}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    Attributes:
        name: The key's name (for logs; never the key itself).
        tenant: The tenant every call of this key is scoped to.
        scopes: Granted scopes (``admin`` already expanded to all of them).
    """

    name: str
    tenant: str
    scopes: frozenset[Scope]

    def has(self, scope: Scope) -> bool:
        """Whether this principal holds ``scope``."""
        return scope in self.scopes


def expand_scopes(scopes: Iterable[Scope]) -> frozenset[Scope]:
    """The granted set: ``patterns:admin:global`` implies ``admin``, which implies every
    tenant-scoped scope; others as :data:`IMPLIED_SCOPES` says."""
    granted = frozenset(scopes)
    if Scope.PATTERNS_ADMIN_GLOBAL in granted:
        granted |= {Scope.ADMIN}
    if Scope.ADMIN in granted:
        return granted | (ALL_SCOPES - CROSS_TENANT_SCOPES)
    return granted.union(*(IMPLIED_SCOPES.get(s, frozenset()) for s in granted))


_PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("tmws_principal", default=None)


def current_principal() -> Principal | None:
    """The authenticated caller of the running call, or ``None`` when the server runs open."""
    return _PRINCIPAL.get()


def set_principal(principal: Principal | None) -> contextvars.Token[Principal | None]:
    """Bind ``principal`` to the current context (the call guard does this per call).

    Returns:
        The token for :func:`reset_principal`.
    """
    return _PRINCIPAL.set(principal)


def reset_principal(token: contextvars.Token[Principal | None]) -> None:
    """Undo :func:`set_principal`."""
    _PRINCIPAL.reset(token)


def has_scope(scope: Scope) -> bool:
    """Whether the caller of the running call holds ``scope`` (always true when the server runs open)."""
    principal = current_principal()
    return principal is None or principal.has(scope)


def require_scope(scope: Scope) -> None:
    """Refuse the running call unless its caller holds ``scope``.

    Raises:
        PermissionDeniedError: ``MISSING_SCOPE`` with metadata ``required_scope``.
    """
    if not has_scope(scope):
        raise missing_scope(scope)


def missing_scope(scope: Scope) -> PermissionDeniedError:
    """The error for a caller without ``scope``."""
    return PermissionDeniedError(
        f"this call needs the {scope.value!r} scope", reason="MISSING_SCOPE", metadata={"required_scope": scope.value}
    )


def metadata_tenant(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The ``x-tenant-id`` metadata value, validated; ``None`` when absent.

    Raises:
        InvalidArgumentError: The value is not 1-64 characters of
            ``[A-Za-z0-9_.-]`` starting with a letter or digit, or the header is
            given more than once (even with equal values: which tenant a call
            belongs to is never decided by header order). Field
            ``metadata.x-tenant-id``.
    """
    found: str | None = None
    for key, value in metadata or ():
        if key == TENANT_METADATA_KEY:
            if found is not None:
                raise InvalidArgumentError.single(
                    f"metadata.{TENANT_METADATA_KEY}", "must be given once; the call carries it more than once"
                )
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            if not _TENANT.match(text):
                raise InvalidArgumentError.single(
                    f"metadata.{TENANT_METADATA_KEY}", "must be 1-64 characters of [A-Za-z0-9_.-]"
                )
            found = text
    return found


def tenant_of(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The caller's tenant id: the API key's tenant, or (open server) the ``x-tenant-id`` metadata.

    Raises:
        InvalidArgumentError: Open server and an invalid ``x-tenant-id`` value
            (field ``metadata.x-tenant-id``).
    """
    principal = current_principal()
    if principal is not None:
        return principal.tenant
    return metadata_tenant(context.invocation_metadata()) or DEFAULT_TENANT
