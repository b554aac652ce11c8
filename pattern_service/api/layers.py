"""Which registry layer a pattern-definition request targets, and how a layer is written in messages.

``PATTERN_LAYER_UNSPECIFIED`` means the global layer for a caller holding
``patterns:admin:global`` (an open server grants every scope, so deployments
without keys change the global registry as before) and the caller tenant's
own layer otherwise (a tenant ``admin`` key). ``PATTERN_LAYER_GLOBAL`` needs
``patterns:admin:global`` (``PERMISSION_DENIED``, reason ``MISSING_SCOPE``).
"""

from __future__ import annotations

from pattern_service.api.identity import Scope, has_scope, require_scope
from pattern_service.engine.registries import PatternLayer
from pattern_service.errors import InvalidArgumentError
from tmws.pattern.v1 import pattern_execution_service_pb2 as pe

LAYER_TO_PROTO: dict[PatternLayer, pe.PatternLayer.ValueType] = {
    PatternLayer.GLOBAL: pe.PATTERN_LAYER_GLOBAL,
    PatternLayer.TENANT: pe.PATTERN_LAYER_TENANT,
}


def target_layer(value: int, field: str = "layer") -> PatternLayer:
    """The layer a ``RegisterBatch`` / ``DeletePatternDefinition`` / ``FitRouting`` changes.

    Args:
        value: The request's ``PatternLayer`` number.
        field: The request field (for the violation).

    Raises:
        PermissionDeniedError: ``MISSING_SCOPE``: the global layer without ``patterns:admin:global``.
        InvalidArgumentError: Not a ``PatternLayer`` value.
    """
    if value == pe.PATTERN_LAYER_UNSPECIFIED:
        return PatternLayer.GLOBAL if has_scope(Scope.PATTERNS_ADMIN_GLOBAL) else PatternLayer.TENANT
    if value == pe.PATTERN_LAYER_GLOBAL:
        require_scope(Scope.PATTERNS_ADMIN_GLOBAL)
        return PatternLayer.GLOBAL
    if value == pe.PATTERN_LAYER_TENANT:
        return PatternLayer.TENANT
    raise InvalidArgumentError.single(field, "must be PATTERN_LAYER_UNSPECIFIED, _GLOBAL or _TENANT")


__all__ = ["LAYER_TO_PROTO", "target_layer"]
