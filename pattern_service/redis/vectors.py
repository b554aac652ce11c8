"""The vector-follow channel: replicas whose vector index is their own follow each other's writes.

SQL is shared by every replica; the embedded vector index is not. Every change
a replica's outbox applied is announced on the replica bus as
``{"kind": "vectors", "collection": ..., "ids": [...]}``; the others re-read
those rows from SQL and apply them to their own index
(:meth:`~pattern_service.store.outbox.VectorSync.follow`). Messages can be lost,
so the app also reconciles each index with SQL periodically.
"""

from __future__ import annotations

from typing import Any

from pattern_service.engine.ports import ReplicaBus
from pattern_service.store.outbox import VectorSync

#: Message kind of the channel on the replica bus.
VECTORS_KIND = "vectors"


def follow_vector_changes(bus: ReplicaBus, sync: VectorSync) -> None:
    """Announce ``sync``'s applied changes on ``bus`` and apply the other replicas' to ``sync``'s index.

    Args:
        bus: The replica bus (e.g. :class:`~pattern_service.redis.sync.RedisCacheBackend`).
        sync: This replica's outbox syncer; its ``on_applied`` hook is set.
    """

    async def announce(collection: str, ids: list[str]) -> None:
        await bus.publish(VECTORS_KIND, collection=collection, ids=ids)

    async def follow(message: dict[str, Any]) -> None:
        ids = message.get("ids")
        if isinstance(ids, list):
            await sync.follow(str(message.get("collection")), [str(i) for i in ids])

    sync.on_applied = announce
    bus.add_handler(VECTORS_KIND, follow)


__all__ = ["VECTORS_KIND", "follow_vector_changes"]
