"""Tenant-scoped pattern registries: the shared global registry and each tenant's layer over it.

Every tenant sees the **global layer** (the default set and what callers with
the ``patterns:admin:global`` scope register) with its **own layer** over it:
a tenant's ``RegisterBatch`` / ``DeletePatternDefinition`` / ``FitRouting``
change only its layer; its pattern shadows a global one of the same name for
that tenant only; deleting it uncovers the global one. A tenant cannot delete
a global pattern (``FAILED_PRECONDITION``, reason ``GLOBAL_LAYER_PATTERN``):
it shadows it instead.

Cost: a tenant without a layer of its own is served by the one compiled global
:class:`~pattern_service.engine.registry.PatternRegistry` (one dict lookup per
call, no copy). A tenant with a layer gets its own compiled registry over a
:class:`~pattern_service.engine.tenant_registry.LayeredDefinitionStore`, built
once per effective version (a change of its layer or of the global layer)
and starting from the global registry's example vectors (only its own new
examples are embedded). A tenant's effective version is ``global version +
layer version``; a tenant that emptied its layer keeps counting its layer's
version, so its cache keys never repeat.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Sequence

from pattern_service.domain import PatternDefinition, PatternType
from pattern_service.engine.ports import LayeredStores
from pattern_service.engine.registry import BatchResult, PatternRegistry
from pattern_service.engine.tenant_registry import LayeredDefinitionStore
from pattern_service.errors import FailedPreconditionError

logger = logging.getLogger(__name__)


class PatternLayer(enum.Enum):
    """The registry layer a definition belongs to, or a change targets."""

    GLOBAL = "global"
    TENANT = "tenant"


class TenantRegistries:
    """The global registry and the tenants' effective registries.

    Args:
        global_registry: The global registry (not yet loaded).
        store: Its store; when it cannot serve tenant layers (no
            :class:`LayeredStores`), every tenant sees the global registry and
            tenant-layer changes are refused.
    """

    def __init__(self, global_registry: PatternRegistry, store: object) -> None:
        self.global_registry = global_registry
        self._stores = store if isinstance(store, LayeredStores) else None
        self._tenants: dict[str, PatternRegistry] = {}
        self._layers: dict[str, LayeredDefinitionStore] = {}
        #: Names of each served tenant layer, as of its registry's current compiled state.
        self._own: dict[str, frozenset[str]] = {}
        #: Layer versions of tenants that have (had) a layer but are served by the global registry.
        self._offsets: dict[str, int] = {}
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ reads

    def for_tenant(self, tenant_id: str) -> PatternRegistry:
        """The compiled registry ``tenant_id`` routes with (the shared global one when it has no layer)."""
        return self._tenants.get(tenant_id, self.global_registry)

    def version_of(self, tenant_id: str) -> int:
        """``tenant_id``'s effective registry version (global version + its layer's version)."""
        registry = self._tenants.get(tenant_id)
        if registry is not None:
            return registry.version
        return self.global_registry.version + self._offsets.get(tenant_id, 0)

    def layer_of(self, tenant_id: str, name: str) -> PatternLayer:
        """The layer ``tenant_id``'s effective definition ``name`` comes from."""
        own = self._own.get(tenant_id)
        return PatternLayer.TENANT if own is not None and name in own else PatternLayer.GLOBAL

    def definitions(self, tenant_id: str, pattern_type: PatternType | None = None) -> list[PatternDefinition]:
        """``tenant_id``'s effective definitions (optionally of one type), priority descending then name."""
        return self.for_tenant(tenant_id).definitions(pattern_type)

    # ---------------------------------------------------------------- loading

    async def load(self) -> None:
        """Load (and seed once) the global registry, then every tenant layer.

        Raises:
            InvalidArgumentError: The default pattern set is invalid.
        """
        await self.global_registry.load()
        if self._stores is None:
            return
        async with self._lock:
            for tenant_id in sorted(await self._stores.layer_versions()):
                await self._load_tenant(tenant_id)

    async def refresh_if_changed(self, tenant_id: str | None = None) -> bool:
        """Reload what another replica changed: the global layer, then one tenant's or every tenant's.

        Args:
            tenant_id: Only this tenant's layer (a message named it); ``None`` = every layer.

        Returns:
            Whether anything was reloaded.
        """
        changed = await self.global_registry.refresh_if_changed()
        if self._stores is None:
            return changed
        if tenant_id is None:
            stored = await self._stores.layer_versions()
        else:
            stored = {tenant_id: await self._stores.for_layer(tenant_id).version()}
        stale = {t for t, v in stored.items() if self._layer_version(t) != v}
        if changed:  # every tenant registry holds the old global layer
            stale.update(self._tenants)
        if not stale:
            return changed
        async with self._lock:
            for t in sorted(stale):
                await self._load_tenant(t)
        return True

    def _layer_version(self, tenant_id: str) -> int:
        registry = self._tenants.get(tenant_id)
        if registry is not None:
            return registry.version - self.global_registry.version
        return self._offsets.get(tenant_id, 0)

    async def _load_tenant(self, tenant_id: str) -> None:
        """(Re)build ``tenant_id``'s effective registry from the store (caller holds the lock)."""
        registry, layer = self._tenants.get(tenant_id), self._layers.get(tenant_id)
        if registry is None or layer is None:
            registry, layer = self._new_registry(tenant_id)
            await registry.load()
        else:
            await registry.reload()
        self._settle(tenant_id, registry, layer)

    def _new_registry(self, tenant_id: str) -> tuple[PatternRegistry, LayeredDefinitionStore]:
        if self._stores is None:
            raise FailedPreconditionError(
                f"tenant {tenant_id!r} cannot have a registry layer: this definition store keeps the global layer only",
                reason="NO_TENANT_LAYERS",
            )
        layer = LayeredDefinitionStore(tenant_id, self.global_registry, self._stores.for_layer(tenant_id))
        return self.global_registry.derive(layer), layer

    def _settle(self, tenant_id: str, registry: PatternRegistry, layer: LayeredDefinitionStore) -> None:
        """Keep ``registry`` for ``tenant_id``, or serve it by the global one when its layer is empty.

        Called once ``registry`` swapped in its new state, so the layers
        reported (:meth:`layer_of`) are those of the state that routes.
        """
        if layer.is_empty:
            self._tenants.pop(tenant_id, None)
            self._layers.pop(tenant_id, None)
            self._own.pop(tenant_id, None)
            self._offsets[tenant_id] = registry.version - self.global_registry.version
        else:
            self._tenants[tenant_id] = registry
            self._layers[tenant_id] = layer
            self._own[tenant_id] = layer.own_names
            self._offsets.pop(tenant_id, None)

    async def _writable(self, tenant_id: str) -> tuple[PatternRegistry, LayeredDefinitionStore]:
        """``tenant_id``'s registry to change (a new one, loaded, when it has none; caller holds the lock)."""
        registry, layer = self._tenants.get(tenant_id), self._layers.get(tenant_id)
        if registry is None or layer is None:
            registry, layer = self._new_registry(tenant_id)
            await registry.load()
        return registry, layer

    async def _follow_global(self) -> None:
        """After a change of the global layer: rebuild every tenant's effective registry (caller holds the lock)."""
        for tenant_id, registry in sorted(self._tenants.items()):
            if await registry.refresh_if_changed():
                self._settle(tenant_id, registry, self._layers[tenant_id])

    # ---------------------------------------------------------------- changes

    async def register_batch(
        self,
        definitions: Sequence[PatternDefinition],
        *,
        tenant_id: str,
        layer: PatternLayer,
        validate_only: bool = False,
    ) -> BatchResult:
        """Register or replace definitions in one layer atomically (see :meth:`PatternRegistry.register_batch`).

        Returns:
            As :meth:`PatternRegistry.register_batch`; for a tenant layer the
            created/replaced counts are of the tenant's layer (shadowing a
            global pattern creates) and the version is the tenant's effective one.

        Raises:
            InvalidArgumentError: With every violation; nothing changed.
        """
        async with self._lock:
            if layer is PatternLayer.GLOBAL:
                result = await self.global_registry.register_batch(definitions, validate_only=validate_only)
                if not validate_only:
                    await self._follow_global()
                return result
            registry, store = await self._writable(tenant_id)
            result = await registry.register_batch(definitions, validate_only=validate_only)
            if validate_only:
                created = sum(1 for d in result.definitions if d.name not in store.own_names)
                return BatchResult(result.definitions, created, len(result.definitions) - created, result.version)
            self._settle(tenant_id, registry, store)
            return result

    async def delete(self, name: str, *, tenant_id: str, layer: PatternLayer) -> int:
        """Delete a definition of one layer; returns the new version (the tenant's effective one for its layer).

        Raises:
            NotFoundError: No definition of that name (in that layer, or at all).
            FailedPreconditionError: ``GLOBAL_LAYER_PATTERN``: a tenant layer
                was targeted and only the global layer has ``name``.
        """
        async with self._lock:
            if layer is PatternLayer.GLOBAL:
                version = await self.global_registry.delete(name)
                await self._follow_global()
                return version
            registry, store = await self._writable(tenant_id)
            await store.delete(name)
            # A deleted tenant pattern may uncover a global one: rebuild from the store, not by removal.
            await registry.reload()
            self._settle(tenant_id, registry, store)
            return registry.version

    def changing(self, tenant_id: str, layer: PatternLayer) -> _Change:
        """An async context giving the registry of ``layer`` (a tenant's is created when needed) to change.

        On exit, the tenants follow a global change, and a tenant registry
        whose layer stayed empty is dropped again (``FitRouting`` with
        ``validate_only`` changes nothing).
        """
        return _Change(self, tenant_id, layer)


class _Change:
    """See :meth:`TenantRegistries.changing`."""

    def __init__(self, owner: TenantRegistries, tenant_id: str, layer: PatternLayer) -> None:
        self._owner = owner
        self._tenant_id = tenant_id
        self._layer = layer
        self._store: LayeredDefinitionStore | None = None
        self._registry: PatternRegistry | None = None

    async def __aenter__(self) -> PatternRegistry:
        owner = self._owner
        await owner._lock.acquire()
        try:
            if self._layer is PatternLayer.GLOBAL:
                self._registry = owner.global_registry
            else:
                self._registry, self._store = await owner._writable(self._tenant_id)
        except BaseException:
            owner._lock.release()
            raise
        return self._registry

    async def __aexit__(self, *exc: object) -> None:
        owner = self._owner
        try:
            if self._layer is PatternLayer.GLOBAL:
                await owner._follow_global()
            elif self._registry is not None and self._store is not None:
                owner._settle(self._tenant_id, self._registry, self._store)
        finally:
            owner._lock.release()


__all__ = ["PatternLayer", "TenantRegistries"]
