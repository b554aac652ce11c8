"""One tenant's effective registry as a definition store: the global layer with the tenant's layer over it.

A tenant's :class:`~pattern_service.engine.registry.PatternRegistry` is an
ordinary registry over a :class:`LayeredDefinitionStore`, so matching,
compiling and the match cache are the global registry's code:

- **reads** (``load_state``) give the effective set: the global registry's
  loaded definitions (from memory: no SQL read of the global layer per
  tenant), the tenant's fitted thresholds of global patterns applied, then the
  tenant's own definitions, which shadow global ones of the same name;
- **writes** go to the tenant's layer only (``RegisterBatch``, ``FitRouting``:
  thresholds of global patterns become the tenant's overrides, and the
  calibration the tenant's);
- the **version** is ``global version + layer version``: it grows with every
  change of either, so cache keys and routing plans of the tenant never
  outlive a change of what it sees.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from pattern_service.calibration import RoutingCalibration
from pattern_service.domain import PatternDefinition
from pattern_service.engine.ports import LayerStore
from pattern_service.errors import FailedPreconditionError, NotFoundError

#: ``ErrorInfo.reason`` of deleting, from a tenant layer, a name only the global layer has.
GLOBAL_PATTERN_REASON = "GLOBAL_LAYER_PATTERN"


class GlobalSource(Protocol):
    """The loaded global layer (a :class:`~pattern_service.engine.registry.PatternRegistry`)."""

    @property
    def version(self) -> int:
        """The global registry version."""
        ...

    @property
    def calibration(self) -> RoutingCalibration:
        """The global calibration."""
        ...

    def iter_definitions(self) -> Iterator[PatternDefinition]:
        """The global definitions."""
        ...

    def get(self, name: str) -> PatternDefinition | None:
        """The global definition of that name."""
        ...


class LayeredDefinitionStore:
    """A :class:`~pattern_service.engine.ports.PatternDefinitionStore` of a tenant's effective registry.

    Args:
        tenant_id: The tenant.
        global_source: The loaded global registry.
        layer: The tenant's layer store.

    Attributes:
        own_names: Names the tenant's own layer defines (as of the last load or change).
        has_overrides: Whether the tenant has fitted thresholds or a calibration of its own.
    """

    def __init__(self, tenant_id: str, global_source: GlobalSource, layer: LayerStore) -> None:
        self.tenant_id = tenant_id
        self._global = global_source
        self._layer = layer
        self.own_names: frozenset[str] = frozenset()
        self.has_overrides = False

    @property
    def is_empty(self) -> bool:
        """Whether the tenant's layer changes nothing (the shared global registry serves it as well)."""
        return not self.own_names and not self.has_overrides

    async def load(self) -> tuple[list[PatternDefinition], int]:
        """The effective definitions and version."""
        definitions, version, _ = await self.load_state()
        return definitions, version

    async def load_state(self) -> tuple[list[PatternDefinition], int, dict[str, Any] | None]:
        """The effective definitions, version and calibration (see the module docstring).

        Raises:
            UnavailableError: The database cannot be reached.
        """
        layer = await self._layer.load_layer()
        global_version = self._global.version
        global_calibration = self._global.calibration
        merged = {d.name: d for d in self._global.iter_definitions()}
        for name, threshold in layer.thresholds.items():
            if name in merged:
                merged[name] = replace(merged[name], similarity_threshold=threshold)
        merged.update((d.name, d) for d in layer.definitions)
        self.own_names = frozenset(d.name for d in layer.definitions)
        self.has_overrides = bool(layer.thresholds) or layer.calibration is not None
        calibration = layer.calibration if layer.calibration is not None else global_calibration.to_dict()
        return list(merged.values()), global_version + layer.version, calibration

    async def is_seeded(self) -> bool:
        """Always true: a tenant layer is never seeded with the default set."""
        return True

    async def version(self) -> int:
        """The effective version: global version + the layer's version."""
        return self._global.version + await self._layer.version()

    async def apply_batch(
        self,
        definitions: Sequence[PatternDefinition],
        *,
        mark_seeded: bool = False,
        calibration: Mapping[str, Any] | None = None,
    ) -> tuple[list[PatternDefinition], int, int, int]:
        """Write definitions to the tenant's layer (one transaction, one layer version).

        With a ``calibration`` (a ``FitRouting`` of the tenant, see
        :meth:`PatternRegistry.apply_fit`), the given definitions carry fitted
        thresholds: those of the tenant's own patterns are stored on them,
        those of global patterns become the tenant's threshold overrides (the
        global definitions are not copied into the layer), and the calibration
        becomes the tenant's.

        Returns:
            (effective definitions as stored, created count, replaced count —
            both of the tenant's layer —, new effective version).

        Raises:
            UnavailableError: The database cannot be reached.
        """
        del mark_seeded  # a tenant layer is never seeded
        if calibration is None:
            stored, created, replaced, layer_version = await self._layer.apply_batch(definitions)
            self.own_names |= {d.name for d in stored}
            return stored, created, replaced, self._global.version + layer_version
        own = [d for d in definitions if d.name in self.own_names]
        overrides = {
            d.name: float(d.similarity_threshold)
            for d in definitions
            if d.name not in self.own_names and d.similarity_threshold is not None
        }
        stored, created, replaced, layer_version = await self._layer.apply_batch(
            own, calibration=calibration, thresholds=overrides
        )
        self.has_overrides = True
        fitted = [d for d in definitions if d.name not in self.own_names]
        return [*stored, *fitted], created, replaced, self._global.version + layer_version

    async def delete(self, name: str) -> int:
        """Delete the tenant's own definition ``name``; a global one of that name is uncovered.

        Returns:
            The new effective version.

        Raises:
            NotFoundError: No definition of that name, in either layer.
            FailedPreconditionError: ``GLOBAL_LAYER_PATTERN``: only the global
                layer has ``name``; a tenant cannot delete it (it may shadow it
                by registering its own ``name``).
            UnavailableError: The database cannot be reached.
        """
        try:
            layer_version = await self._layer.delete(name)
        except NotFoundError:
            if self._global.get(name) is None:
                raise
            raise FailedPreconditionError(
                f"pattern {name!r} belongs to the global layer, which only a caller with the "
                "'patterns:admin:global' scope changes (layer PATTERN_LAYER_GLOBAL); to change it for "
                f"tenant {self.tenant_id!r} only, register a pattern of the same name in the tenant's layer",
                reason=GLOBAL_PATTERN_REASON,
                metadata={"pattern_name": name, "layer": "PATTERN_LAYER_GLOBAL"},
            ) from None
        self.own_names -= {name}
        return self._global.version + layer_version


__all__ = ["GLOBAL_PATTERN_REASON", "GlobalSource", "LayeredDefinitionStore"]
