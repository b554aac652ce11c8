"""SQL persistence of pattern definitions and the registry version."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pattern_service.domain import PatternDefinition, PatternType
from pattern_service.errors import NotFoundError, UnavailableError
from pattern_service.store.db import Database
from pattern_service.store.orm import PatternDefinitionRow, RegistryStateRow, utcnow

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


class SqlPatternDefinitionStore:
    """:class:`~pattern_service.engine.ports.PatternDefinitionStore` on SQL.

    Definitions are global (shared by every tenant). Each ``apply_batch`` and
    ``delete`` increments the registry version by exactly one in the same
    transaction as its change.

    Args:
        db: The database.
    """

    def __init__(self, db: Database):
        self.db = db

    async def load(self) -> tuple[list[PatternDefinition], int]:
        """All stored definitions (by name) and the current registry version.

        Raises:
            UnavailableError: The database cannot be reached.
        """
        async with self.db.session() as session:
            rows = await session.scalars(select(PatternDefinitionRow).order_by(PatternDefinitionRow.name))
            definitions = [_to_domain(r) for r in rows]
            version = await session.scalar(select(RegistryStateRow.version).where(RegistryStateRow.id == _STATE_ID))
        return definitions, int(version or 0)

    async def load_state(self) -> tuple[list[PatternDefinition], int, dict[str, Any] | None]:
        """All stored definitions (by name), the registry version and the stored calibration, in one read.

        Raises:
            UnavailableError: The database cannot be reached.
        """
        async with self.db.session() as session:
            rows = await session.scalars(select(PatternDefinitionRow).order_by(PatternDefinitionRow.name))
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
        """Whether the default set was ever loaded.

        Raises:
            UnavailableError: The database cannot be reached.
        """
        async with self.db.session() as session:
            seeded = await session.scalar(select(RegistryStateRow.seeded).where(RegistryStateRow.id == _STATE_ID))
        return bool(seeded)

    async def version(self) -> int:
        """The current registry version.

        Raises:
            UnavailableError: The database cannot be reached.
        """
        async with self.db.session() as session:
            version = await session.scalar(select(RegistryStateRow.version).where(RegistryStateRow.id == _STATE_ID))
        return int(version or 0)

    async def apply_batch(
        self,
        definitions: Sequence[PatternDefinition],
        *,
        mark_seeded: bool = False,
        calibration: Mapping[str, Any] | None = None,
    ) -> tuple[list[PatternDefinition], int, int, int]:
        """Insert or replace definitions by name in one transaction.

        A replaced definition keeps its ``create_time``; ``update_time`` is now.

        Args:
            definitions: Already validated, unique names.
            mark_seeded: Also record that the default set has been loaded.
            calibration: Also replace the stored confidence calibration (same transaction).

        Returns:
            (stored definitions with timestamps, created count, replaced count, new registry version).

        Raises:
            UnavailableError: The database cannot be reached, or concurrent writers kept conflicting.
        """
        for attempt in range(_MAX_ATTEMPTS):
            try:
                return await self._apply_once(definitions, mark_seeded, calibration)
            except IntegrityError as exc:  # a concurrent batch inserted the same name first: retry
                if attempt == _MAX_ATTEMPTS - 1:
                    raise UnavailableError(f"pattern definitions kept conflicting: {exc.orig}") from exc
        raise AssertionError("unreachable")

    async def _apply_once(
        self, definitions: Sequence[PatternDefinition], mark_seeded: bool, calibration: Mapping[str, Any] | None
    ) -> tuple[list[PatternDefinition], int, int, int]:
        now = utcnow()
        created = replaced = 0
        rows: list[PatternDefinitionRow] = []
        async with self.db.session(write=True) as session:
            version = await _bump_version(session, mark_seeded=mark_seeded, calibration=calibration)
            names = [d.name for d in definitions]
            existing = {
                r.name: r
                for r in await session.scalars(select(PatternDefinitionRow).where(PatternDefinitionRow.name.in_(names)))
            }
            for d in definitions:
                row = existing.get(d.name)
                if row is None:
                    row = PatternDefinitionRow(name=d.name, create_time=now)
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
        """Delete one definition.

        Returns:
            The new registry version.

        Raises:
            NotFoundError: No definition has that name.
            UnavailableError: The database cannot be reached.
        """
        async with self.db.session(write=True) as session:
            version = await _bump_version(session)
            row = await session.get(PatternDefinitionRow, name)
            if row is None:
                raise NotFoundError("PatternDefinition", name)  # rolls the version bump back
            await session.delete(row)
        return version
