"""``python -m pattern_service reembed --embedder NAME [--switch]``: rebuild every vector with another embedder.

Changing ``TMWS_EMBEDDER`` on a store written with another model is refused at
start (the vector collections are tagged with their model). ``reembed`` is the
way forward, in two steps:

1. **Build** (the server keeps running on the old embedder and serving reads from
   the old index): every memory and success pattern is read from SQL, embedded
   with the new embedder and written to a *new* index beside the old one
   (``<TMWS_DATA_DIR>/vectors-next`` for the embedded index, ``<TMWS_QDRANT_PATH>-next``
   for qdrant-client local mode), with a progress bar. It is resumable: an
   interrupted build, run again, embeds only what the new index lacks.
2. **Switch** (``--switch``, with the server stopped): rows written or changed since
   the build started are brought over, the index is reconciled with SQL both ways,
   the old index is kept as ``vectors-<old model>`` and the new one takes its place.
   Then start the server with the new ``TMWS_EMBEDDER``.

With a Qdrant server (``TMWS_QDRANT_URL``) the two indexes cannot sit side by side
under the collection names the service uses; there, rebuild into a second Qdrant
(``--target-qdrant-url``) and point ``TMWS_QDRANT_URL`` at it.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from pattern_service.config import Settings
from pattern_service.engine.ports import Embedder
from pattern_service.startup import StartupError
from pattern_service.store.binding import VectorBinding
from pattern_service.store.db import Database
from pattern_service.store.embeddings import OnnxEmbedder, create_embedder
from pattern_service.store.orm import utcnow
from pattern_service.store.outbox import VectorSync
from pattern_service.store.vector_bindings import VECTOR_BINDINGS
from pattern_service.store.vectors.base import VectorIndex

log = logging.getLogger(__name__)

STATE_FILE = "REEMBED.json"
BATCH = 256


@dataclass
class Plan:
    """Where the old and the new index live.

    Attributes:
        current: The index the server uses (directory).
        target: The index being built (directory), or ``None`` with ``target_url``.
        target_url: A second Qdrant server to build into.
    """

    current: Path | None
    target: Path | None
    target_url: str = ""


def plan_for(settings: Settings, target_url: str = "") -> Plan:
    """The old and new index locations of ``settings``.

    Raises:
        StartupError: A Qdrant server without ``--target-qdrant-url``.
    """
    if settings.qdrant_url:
        if not target_url:
            raise StartupError(
                "a Qdrant server cannot hold the new index beside the old one under the same collection names",
                "TMWS_QDRANT_URL",
                "pass --target-qdrant-url of a second Qdrant, then point TMWS_QDRANT_URL at it",
            )
        return Plan(None, None, target_url)
    if settings.qdrant_path:
        current = Path(settings.qdrant_path)
        return Plan(current, current.with_name(current.name + "-next"))
    return Plan(settings.vector_dir, settings.data_dir / "vectors-next")


def _open_index(settings: Settings, plan: Plan) -> VectorIndex:
    if plan.target_url:
        from pattern_service.store.vectors.qdrant import QdrantVectorIndex

        return QdrantVectorIndex(url=plan.target_url, api_key=settings.qdrant_api_key or None)
    assert plan.target is not None
    if settings.qdrant_path:
        from pattern_service.store.vectors.qdrant import QdrantVectorIndex

        return QdrantVectorIndex(path=str(plan.target))
    from pattern_service.store.vectors.edge import EdgeVectorIndex

    return EdgeVectorIndex(
        plan.target,
        index_threshold=settings.vector_index_threshold,
        hnsw_ef=settings.vector_hnsw_ef,
        search_threads=settings.vector_search_threads,
    )


def _state_path(settings: Settings, plan: Plan) -> Path:
    return (plan.target or settings.data_dir) / STATE_FILE


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


class _Bar:
    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=label, unit="vec", file=sys.stderr)

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


async def _ids(db: Database, binding: VectorBinding[Any, Any], since: datetime | None = None) -> list[str]:
    query = select(binding.id_column)
    if since is not None:
        row: Any = binding.row_type
        query = query.where((row.updated_at >= since) | (row.created_at >= since))
    async with db.session() as session:
        return [str(i) for i in await session.scalars(query)]


async def _copy(sync: VectorSync, collection: str, ids: Sequence[str], bar: _Bar) -> None:
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        await sync.sync_points(collection, chunk)
        bar.update(len(chunk))


async def build(
    settings: Settings, embedder_name: str, *, target_url: str = "", progress: bool = True
) -> dict[str, int]:
    """Build the new index from SQL with ``embedder_name`` (the server may keep running).

    Returns:
        Vectors embedded per collection (0 for what an earlier run already built).

    Raises:
        StartupError: No change of embedder, a Qdrant server without a target, or a target built with
            yet another embedder.
    """
    if embedder_name == settings.embedder:
        raise StartupError(f"the server already uses {embedder_name!r}", "--embedder", "name the embedder to move to")
    plan = plan_for(settings, target_url)
    state_path = _state_path(settings, plan)
    state = _read_state(state_path)
    if state is not None and state.get("embedder") != embedder_name:
        raise StartupError(
            f"{state_path.parent} holds a build for {state.get('embedder')!r}",
            "--embedder",
            f"finish that one, or delete {state_path.parent} to start over",
        )
    if state is None:
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state = {"embedder": embedder_name, "started_at": utcnow().isoformat(), "from": settings.embedder}
        state_path.write_text(json.dumps(state))
    db = Database(settings.resolved_database_url, connect_timeout=settings.db_connect_timeout)
    embedder = await _embedder(settings, embedder_name)
    index = _open_index(settings, plan)
    embedded: dict[str, int] = {}
    try:
        sync = VectorSync(db, index, embedder, VECTOR_BINDINGS)
        await sync.ensure_collections()
        for binding in VECTOR_BINDINGS:
            collection = binding.collection
            present = await index.list_ids(collection)
            todo = [i for i in await _ids(db, binding) if i not in present]
            bar = _Bar(len(todo), collection, progress)
            try:
                await _copy(sync, collection, todo, bar)
            finally:
                bar.close()
            embedded[collection] = len(todo)
    finally:
        await index.close()
        await db.dispose()
        _close(embedder)
    log.info("reembed: built %s with %s: %s", plan.target or plan.target_url, embedder_name, embedded)
    return embedded


async def switch(settings: Settings, embedder_name: str, *, target_url: str = "", progress: bool = True) -> Path | None:
    """Catch the new index up with SQL and put it in the old one's place (the server must be stopped).

    Returns:
        Where the old index was moved (``None`` with ``--target-qdrant-url``).

    Raises:
        StartupError: No finished build for ``embedder_name``.
    """
    plan = plan_for(settings, target_url)
    state = _read_state(_state_path(settings, plan))
    if state is None or state.get("embedder") != embedder_name:
        raise StartupError(
            f"no build for {embedder_name!r} to switch to",
            "--embedder",
            f"run `python -m pattern_service reembed --embedder {embedder_name}` first",
        )
    since = datetime.fromisoformat(state["started_at"])
    db = Database(settings.resolved_database_url, connect_timeout=settings.db_connect_timeout)
    embedder = await _embedder(settings, embedder_name)
    index = _open_index(settings, plan)
    try:
        sync = VectorSync(db, index, embedder, VECTOR_BINDINGS)
        await sync.ensure_collections()
        for binding in VECTOR_BINDINGS:
            collection = binding.collection
            changed = await _ids(db, binding, since)
            bar = _Bar(len(changed), f"{collection} (changed)", progress)
            try:
                await _copy(sync, collection, changed, bar)
            finally:
                bar.close()
        repaired = await sync.reconcile_all()
        log.info("reembed: caught up since %s; reconciled %s", since.isoformat(), repaired)
    finally:
        await index.close()
        await db.dispose()
        _close(embedder)
    _state_path(settings, plan).unlink(missing_ok=True)
    if plan.target is None or plan.current is None:
        return None
    backup = plan.current.with_name(f"{plan.current.name}-{state.get('from', 'old')}")
    if backup.exists():
        shutil.rmtree(backup)
    if plan.current.exists():
        plan.current.rename(backup)
    plan.target.rename(plan.current)
    return backup


async def _embedder(settings: Settings, name: str) -> Embedder:
    embedder = create_embedder(name, model_cache_dir=settings.model_cache_dir)
    if isinstance(embedder, OnnxEmbedder):
        await embedder.aload()
    return embedder


def _close(embedder: Embedder) -> None:
    if isinstance(embedder, OnnxEmbedder):
        embedder.close()


async def reindex(settings: Settings) -> dict[str, tuple[int, int]]:
    """``python -m pattern_service reindex``: make the vector index match SQL, with the server stopped.

    Every missing vector is embedded and written, every point without a row is deleted, also
    when the database is empty (what a start refuses: :mod:`pattern_service.store.emptied`;
    the points about to go are logged).

    Returns:
        ``{collection: (upserted, deleted)}``.

    Raises:
        UnavailableError: The database or the index cannot be reached.
        FailedPreconditionError: The index holds vectors of another embedding model.
    """
    from pattern_service.app import vector_index
    from pattern_service.store.db import aupgrade_to_head
    from pattern_service.store.emptied import check_not_emptied

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url
    if settings.run_migrations:
        await aupgrade_to_head(url)
    db = Database(url, connect_timeout=settings.db_connect_timeout)
    embedder = await _embedder(settings, settings.embedder)
    index = vector_index(settings)
    try:
        sync = VectorSync(db, index, embedder, VECTOR_BINDINGS)
        await sync.ensure_collections()
        await check_not_emptied(
            db,
            index,
            database=url,
            index_location=settings.vector_location,
            accept=True,
        )
        return await sync.reconcile_all()
    finally:
        await index.close()
        await db.dispose()
        _close(embedder)
