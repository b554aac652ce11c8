"""SQL persistence of pattern definitions and the registry version, by registry layer.

One :class:`SqlPatternDefinitionStore` serves one layer: the global layer
(``tenant_id = ''``; its version, seeded flag and calibration in
``registry_state``) or one tenant's own layer (its version, calibration and
fitted thresholds of global patterns in ``registry_layers``). Every change of
a layer bumps that layer's version by one in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pattern_service.domain import PatternDefinition, PatternType
from pattern_service.engine.ports import LayerState
from pattern_service.errors import NotFoundError, UnavailableError
from pattern_service.store.db import Database
from pattern_service.store.orm import (
    GLOBAL_LAYER,
    PatternDefinitionRow,
    RegistryLayerRow,
    RegistryStateRow,
    utcnow,
)

_STATE_ID = 1
_MAX_ATTEMPTS = 3


def _to_domain(row: PatternDefinitionRow) -> PatternDefinition:
    return PatternDefinition(
        name=row.name,
        pattern_type=PatternType(row.pattern_type),
        trigger_pattern=row.trigger_pattern,
        cost_tokens=row.cost_tokens,
        priority=row.priority,
        cache_ttl=row.cache_ttl,
        metadata=dict(row.metadata_ or {}),
        description=row.description,
        examples=tuple(row.examples or ()),
        create_time=row.create_time,
        update_time=row.update_time,
        similarity_threshold=row.similarity_threshold,
    )


async def _bump_version(
    session: AsyncSession, *, mark_seeded: bool = False, calibration: Mapping[str, Any] | None = None
) -> int:
    """Increment the registry version by one (first statement of a write: it takes the write lock).

    Args:
        session: The write transaction.
        mark_seeded: Also record that the default set has been loaded.
        calibration: Also replace the stored confidence calibration.

    Returns:
        The new version.
    """
    values: dict[str, object] = {"version": RegistryStateRow.version + 1}
    if mark_seeded:
        values["seeded"] = True
    if calibration is not None:
        values["calibration"] = dict(calibration)
    result = await session.execute(update(RegistryStateRow).where(RegistryStateRow.id == _STATE_ID).values(**values))
    if getattr(result, "rowcount", 0) == 0:  # the migration seeds the row; recreate it if it was removed
        session.add(
            RegistryStateRow(
                id=_STATE_ID,
                version=1,
                seeded=mark_seeded,
                calibration=None if calibration is None else dict(calibration),
            )
        )
        await session.flush()
        return 1
    version = await session.scalar(select(RegistryStateRow.version).where(RegistryStateRow.id == _STATE_ID))
    return int(version or 0)


async def _bump_layer_version(
    session: AsyncSession,
    tenant_id: str,
    *,
    calibration: Mapping[str, Any] | None = None,
    thresholds: Mapping[str, float] | None = None,
) -> int:
    """Increment the version of a tenant's layer by one (creating its row at version 1).

    Args:
        session: The write transaction.
        tenant_id: The tenant.
        calibration: Also replace the tenant's calibration.
        thresholds: Also merge these fitted thresholds of global patterns into the tenant's.

    Returns:
        The layer's new version.
    """
    row = await session.get(RegistryLayerRow, tenant_id, with_for_update=True)
    if row is None:
        row = RegistryLayerRow(tenant_id=tenant_id, version=0, calibration=None, thresholds=None)
        session.add(row)
    row.version = int(row.version) + 1
    if calibration is not None:
        row.calibration = dict(calibration)
    if thresholds is not None:
        row.thresholds = {**(row.thresholds or {}), **{n: float(t) for n, t in thresholds.items()}}
    await session.flush()  # a concurrent first write of the same tenant fails here (IntegrityError): retried
    return int(row.version)


class SqlPatternDefinitionStore:
    """:class:`~pattern_service.engine.ports.PatternDefinitionStore` of one registry layer on SQL.

    Each ``apply_batch`` and ``delete`` increments the layer's version by
    exactly one in the same transaction as its change.

    Args:
        db: The database.
        tenant_id: The layer: :data:`~pattern_service.store.orm.GLOBAL_LAYER`
            (``''``, the default) or a tenant id (see :meth:`for_layer`).
    """

    def __init__(self, db: Database, tenant_id: str = GLOBAL_LAYER):
        self.db = db
        self.tenant_id = tenant_id

    @property
    def is_global(self) -> bool:
        """Whether this store serves the global layer."""
        return self.tenant_id == GLOBAL_LAYER

    def for_layer(self, tenant_id: str) -> SqlPatternDefinitionStore:
        """The store of ``tenant_id``'s own layer (same database)."""
        return SqlPatternDefinitionStore(self.db, tenant_id)

    def _rows(self) -> Any:
        return (
            select(PatternDefinitionRow)
            .where(PatternDefinitionRow.tenant_id == self.tenant_id)
            .order_by(PatternDefinitionRow.name)
        )

    async def _bump(
        self,
        session: AsyncSession,
        *,
        mark_seeded: bool = False,
        calibration: Mapping[str, Any] | None = None,
        thresholds: Mapping[str, float] | None = None,
    ) -> int:
        if self.is_global:
            return await _bump_version(session, mark_seeded=mark_seeded, calibration=calibration)
        return await _bump_layer_version(session, self.tenant_id, calibration=calibration, thresholds=thresholds)

    async def layer_versions(self) -> dict[str, int]:
        """The version of every tenant layer, by tenant (one query; for replicas to notice changes).

        Raises:
            UnavailableError: The database cannot be reached.
        """
        async with self.db.session() as session:
            rows = await session.execute(select(RegistryLayerRow.tenant_id, RegistryLayerRow.version))
            return {str(t): int(v) for t, v in rows}

    async def load_layer(self) -> LayerState:
        """This tenant layer's definitions, version, calibration and fitted thresholds, in one read.

        Raises:
            UnavailableError: The database cannot be reached.
        """
        async with self.db.session() as session:
            definitions = [_to_domain(r) for r in await session.scalars(self._rows())]
            row = await session.get(RegistryLayerRow, self.tenant_id)
        if row is None:
            return LayerState(definitions, 0)
        calibration = dict(row.calibration) if isinstance(row.calibration, Mapping) else None
        thresholds = {str(n): float(t) for n, t in (row.thresholds or {}).items()}
        return LayerState(definitions, int(row.version), calibration, thresholds)

    async def load(self) -> tuple[list[PatternDefinition], int]:
        """All stored definitions (by name) and the current registry version.

        Raises:
            UnavailableError: The database cannot be reached.
        """
        if not self.is_global:
            layer = await self.load_layer()
            return layer.definitions, layer.version
        async with self.db.session() as session:
            rows = await session.scalars(self._rows())
            definitions = [_to_domain(r) for r in rows]
            version = await session.scalar(select(RegistryStateRow.version).where(RegistryStateRow.id == _STATE_ID))
        return definitions, int(version or 0)

    async def load_state(self) -> tuple[list[PatternDefinition], int, dict[str, Any] | None]:
        """All stored definitions (by name), the registry version and the stored calibration, in one read.

        Raises:
            UnavailableError: The database cannot be reached.
        """
        if not self.is_global:
            layer = await self.load_layer()
            return layer.definitions, layer.version, layer.calibration
        async with self.db.session() as session:
            rows = await session.scalars(self._rows())
            definitions = [_to_domain(r) for r in rows]
            state = (
                await session.execute(
                    select(RegistryStateRow.version, RegistryStateRow.calibration).where(
                        RegistryStateRow.id == _STATE_ID
                    )
                )
            ).first()
        if state is None:
            return definitions, 0, None
        calibration = dict(state.calibration) if isinstance(state.calibration, Mapping) else None
        return definitions, int(state.version or 0), calibration

    async def is_seeded(self) -> bool:
        """Whether the default set was ever loaded (a tenant layer is never seeded: always true).

        Raises:
            UnavailableError: The database cannot be reached.
        """
        if not self.is_global:
            return True
        async with self.db.session() as session:
            seeded = await session.scalar(select(RegistryStateRow.seeded).where(RegistryStateRow.id == _STATE_ID))
        return bool(seeded)

    async def version(self) -> int:
        """The current version of this layer.

        Raises:
            UnavailableError: The database cannot be reached.
        """
        if not self.is_global:
            async with self.db.session() as session:
                layer = await session.scalar(
                    select(RegistryLayerRow.version).where(RegistryLayerRow.tenant_id == self.tenant_id)
                )
            return int(layer or 0)
        async with self.db.session() as session:
            version = await session.scalar(select(RegistryStateRow.version).where(RegistryStateRow.id == _STATE_ID))
        return int(version or 0)

    async def apply_batch(
        self,
        definitions: Sequence[PatternDefinition],
        *,
        mark_seeded: bool = False,
        calibration: Mapping[str, Any] | None = None,
        thresholds: Mapping[str, float] | None = None,
    ) -> tuple[list[PatternDefinition], int, int, int]:
        """Insert or replace definitions of this layer by name in one transaction.

        A replaced definition keeps its ``create_time``; ``update_time`` is now.

        Args:
            definitions: Already validated, unique names.
            mark_seeded: Also record that the default set has been loaded (global layer).
            calibration: Also replace the stored confidence calibration (same transaction).
            thresholds: Tenant layer only: also merge these fitted similarity
                thresholds of global patterns into the tenant's (same transaction).

        Returns:
            (stored definitions with timestamps, created count, replaced count, new registry version).

        Raises:
            UnavailableError: The database cannot be reached, or concurrent writers kept conflicting.
        """
        for attempt in range(_MAX_ATTEMPTS):
            try:
                return await self._apply_once(definitions, mark_seeded, calibration, thresholds)
            except IntegrityError as exc:  # a concurrent batch inserted the same name first: retry
                if attempt == _MAX_ATTEMPTS - 1:
                    raise UnavailableError(f"pattern definitions kept conflicting: {exc.orig}") from exc
        raise AssertionError("unreachable")

    async def _apply_once(
        self,
        definitions: Sequence[PatternDefinition],
        mark_seeded: bool,
        calibration: Mapping[str, Any] | None,
        thresholds: Mapping[str, float] | None,
    ) -> tuple[list[PatternDefinition], int, int, int]:
        now = utcnow()
        created = replaced = 0
        rows: list[PatternDefinitionRow] = []
        async with self.db.session(write=True) as session:
            version = await self._bump(session, mark_seeded=mark_seeded, calibration=calibration, thresholds=thresholds)
            names = [d.name for d in definitions]
            existing = {
                r.name: r
                for r in await session.scalars(
                    select(PatternDefinitionRow).where(
                        PatternDefinitionRow.tenant_id == self.tenant_id, PatternDefinitionRow.name.in_(names)
                    )
                )
            }
            for d in definitions:
                row = existing.get(d.name)
                if row is None:
                    row = PatternDefinitionRow(tenant_id=self.tenant_id, name=d.name, create_time=now)
                    session.add(row)
                    created += 1
                else:
                    replaced += 1
                row.pattern_type = PatternType(d.pattern_type).value
                row.trigger_pattern = d.trigger_pattern
                row.cost_tokens = d.cost_tokens
                row.priority = d.priority
                row.cache_ttl = d.cache_ttl
                row.description = d.description
                row.examples = list(d.examples)
                row.metadata_ = dict(d.metadata)
                row.similarity_threshold = d.similarity_threshold
                row.update_time = now
                rows.append(row)
            await session.flush()
        return [_to_domain(r) for r in rows], created, replaced, version

    async def delete(self, name: str) -> int:
        """Delete one definition of this layer.

        Returns:
            The layer's new version.

        Raises:
            NotFoundError: This layer has no definition of that name.
            UnavailableError: The database cannot be reached.
        """
        async with self.db.session(write=True) as session:
            version = await self._bump(session)
            result = await session.execute(
                delete(PatternDefinitionRow).where(
                    PatternDefinitionRow.tenant_id == self.tenant_id, PatternDefinitionRow.name == name
                )
            )
            if getattr(result, "rowcount", 0) == 0:
                raise NotFoundError("PatternDefinition", name)  # rolls the version bump back
        return version
