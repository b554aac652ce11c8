"""``MemoryService`` methods of :class:`~tmws.pattern.client.PatternClient`, and builders of its messages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from tmws.pattern.client._convert import DEFAULT, MetadataLike, TimeoutLike, to_field_mask, to_struct
from tmws.pattern.client._paging import follow_pages
from tmws.pattern.v1 import (
    BatchCreateMemoriesRequest,
    CreateMemoryRequest,
    DeleteMemoryRequest,
    GetMemoryRequest,
    ListMemoriesRequest,
    ListMemoriesResponse,
    Memory,
    MemoryFilter,
    PurgeMemoriesRequest,
    PurgeMemoriesResponse,
    SearchMemoriesRequest,
    SearchMemoriesResponse,
    UpdateMemoryRequest,
)
from tmws.pattern.v1 import memory_service_pb2_grpc as mem_grpc

if TYPE_CHECKING:
    from google.protobuf import field_mask_pb2

__all__ = ["MAX_BATCH_CREATE", "MemoryMethods", "memory_filter", "new_memory"]

MAX_BATCH_CREATE = 1000
"""Most memories one ``BatchCreateMemories`` call takes."""

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def new_memory(
    content: str,
    *,
    agent_id: str = "",
    memory_type: str = "",
    tags: Iterable[str] = (),
    importance: float | None = None,
    metadata: Mapping[str, Any] | None = None,
    expire_time: datetime | None = None,
    ttl: timedelta | float | None = None,
) -> Memory:
    """Build a ``Memory`` message to create.

    Args:
        content: The text remembered (1-20,000 characters).
        agent_id: The agent that stores it; empty for none.
        memory_type: Category; empty means ``general``.
        tags: Tags (stored lower-cased).
        importance: In [0, 1]; ``None`` means 0.5.
        metadata: JSON-like extra data.
        expire_time: When it expires (naive means UTC); ``None``: never.
        ttl: Or its time to live (a ``timedelta`` or seconds).

    Returns:
        The message.

    Raises:
        ValueError: Both ``expire_time`` and ``ttl`` are given.
        TypeError: ``metadata`` is not JSON-like.
    """
    msg = Memory(content=content, agent_id=agent_id, memory_type=memory_type, tags=list(tags))
    if importance is not None:
        msg.importance = importance
    struct = to_struct(metadata) if metadata else None
    if struct is not None:
        msg.metadata.CopyFrom(struct)
    if expire_time is not None and ttl is not None:
        raise ValueError("give expire_time or ttl, not both")
    if expire_time is not None:
        msg.expire_time.FromDatetime(_aware(expire_time))
    if ttl is not None:
        msg.ttl.FromTimedelta(ttl if isinstance(ttl, timedelta) else timedelta(seconds=ttl))
    return msg


def memory_filter(
    *,
    agent_id: str = "",
    memory_type: str = "",
    tags_any: Iterable[str] = (),
    tags_all: Iterable[str] = (),
    min_importance: float | None = None,
    max_importance: float | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> MemoryFilter:
    """Build a ``MemoryFilter`` (every given condition must hold).

    Args:
        agent_id: Only this agent's memories.
        memory_type: Only this type.
        tags_any: At least one of these tags.
        tags_all: Every one of these tags.
        min_importance: Importance >= this.
        max_importance: Importance <= this.
        created_after: Created at or after this time (naive means UTC).
        created_before: Created at or before this time (naive means UTC).

    Returns:
        The filter.
    """
    flt = MemoryFilter(agent_id=agent_id, memory_type=memory_type, tags_any=list(tags_any), tags_all=list(tags_all))
    if min_importance is not None:
        flt.min_importance = min_importance
    if max_importance is not None:
        flt.max_importance = max_importance
    if created_after is not None:
        flt.create_time_start.FromDatetime(_aware(created_after))
    if created_before is not None:
        flt.create_time_end.FromDatetime(_aware(created_before))
    return flt


class MemoryMethods:
    """The ``MemoryService`` methods (mixed into :class:`~tmws.pattern.client.PatternClient`)."""

    _memories: mem_grpc.MemoryServiceAsyncStub

    if TYPE_CHECKING:  # PatternClient defines it; declared here only for the type checker

        async def _unary(
            self,
            method: grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp],
            request: _Req,
            timeout: TimeoutLike,
            metadata: MetadataLike | None,
        ) -> _Resp: ...

    def _init_memories(self, channel: grpc.aio.Channel) -> None:
        self._memories = mem_grpc.MemoryServiceStub(channel)

    @property
    def memory_stub(self) -> mem_grpc.MemoryServiceAsyncStub:
        """The raw ``MemoryService`` stub."""
        return self._memories

    async def create_memory(
        self, memory: Memory, *, timeout: TimeoutLike = DEFAULT, metadata: MetadataLike | None = None
    ) -> Memory:
        """Create a memory (``CreateMemory``); build it with :func:`new_memory`.

        Args:
            memory: The memory; output-only fields are ignored.
            timeout: Deadline in seconds; default: the client's default.
            metadata: Extra call metadata.

        Returns:
            The memory as stored (``memory_id``, times).

        Raises:
            InvalidArgument: With one field violation per invalid field.
            PermissionDenied: The key lacks ``memories:write``.
            PatternServiceError: For any other error status.
        """
        request = CreateMemoryRequest(memory=memory)
        return (await self._unary(self._memories.CreateMemory, request, timeout, metadata)).memory

    async def batch_create_memories(
        self,
        memories: Iterable[Memory],
        *,
        timeout: TimeoutLike = DEFAULT,
        metadata: MetadataLike | None = None,
    ) -> list[Memory]:
        """Create 1-1,000 memories atomically (``BatchCreateMemories``): all or none.

        Args:
            memories: The memories.
            timeout: Deadline in seconds; default: the client's default.
            metadata: Extra call metadata.

        Returns:
            The stored memories, in order.

        Raises:
            InvalidArgument: Every violation of every memory (paths ``requests[i].memory.<field>``); none stored.
            PatternServiceError: For any other error status.
        """
        request = BatchCreateMemoriesRequest(requests=[CreateMemoryRequest(memory=m) for m in memories])
        return list((await self._unary(self._memories.BatchCreateMemories, request, timeout, metadata)).memories)

    async def get_memory(
        self, memory_id: str, *, timeout: TimeoutLike = DEFAULT, metadata: MetadataLike | None = None
    ) -> Memory:
        """Return one memory (``GetMemory``).

        Raises:
            InvalidArgument: ``memory_id`` is not a UUID.
            NotFound: No such memory (or it expired).
            PatternServiceError: For any other error status.
        """
        request = GetMemoryRequest(memory_id=memory_id)
        return (await self._unary(self._memories.GetMemory, request, timeout, metadata)).memory

    async def list_memories(
        self,
        *,
        filter: MemoryFilter | None = None,
        order_by: str = "",
        page_size: int = 0,
        page_token: str = "",
        timeout: TimeoutLike = DEFAULT,
        metadata: MetadataLike | None = None,
    ) -> ListMemoriesResponse:
        """List one page of memories (``ListMemories``).

        Args:
            filter: Which memories (:func:`memory_filter`); ``None``: all.
            order_by: ``create_time desc`` (default), ``create_time``, ``importance desc`` or ``importance``.
            page_size: Maximum memories (0: the server default, 50).
            page_token: ``next_page_token`` of the previous page (same filter and order).
            timeout: Deadline in seconds; default: the client's default.
            metadata: Extra call metadata.

        Returns:
            The page: memories, ``next_page_token`` and ``total_size``.

        Raises:
            InvalidArgument: A bad filter, order, page size or token.
            PatternServiceError: For any other error status.
        """
        request = ListMemoriesRequest(filter=filter, order_by=order_by, page_size=page_size, page_token=page_token)
        return await self._unary(self._memories.ListMemories, request, timeout, metadata)

    async def iter_all_memories(
        self,
        *,
        filter: MemoryFilter | None = None,
        order_by: str = "",
        page_size: int = 0,
        timeout: TimeoutLike = DEFAULT,
        metadata: MetadataLike | None = None,
    ) -> AsyncIterator[Memory]:
        """Iterate over every memory passing ``filter``, fetching pages as needed.

        Raises:
            PatternServiceError: If a page request fails.
        """
        pages = follow_pages(
            lambda token: self.list_memories(
                filter=filter,
                order_by=order_by,
                page_size=page_size,
                page_token=token,
                timeout=timeout,
                metadata=metadata,
            ),
            lambda page: page.memories,
        )
        async for memory in pages:
            yield memory

    async def update_memory(
        self,
        memory: Memory,
        update_mask: Iterable[str] | str | field_mask_pb2.FieldMask,
        *,
        timeout: TimeoutLike = DEFAULT,
        metadata: MetadataLike | None = None,
    ) -> Memory:
        """Update the fields named in ``update_mask`` (``UpdateMemory``).

        Args:
            memory: ``memory_id`` and the new values.
            update_mask: Paths (``"content,tags"``, a list, or a ``FieldMask``).
            timeout: Deadline in seconds; default: the client's default.
            metadata: Extra call metadata.

        Returns:
            The memory after the update.

        Raises:
            InvalidArgument: A bad field or mask path.
            NotFound: No such memory.
            PatternServiceError: For any other error status.
        """
        request = UpdateMemoryRequest(memory=memory, update_mask=to_field_mask(update_mask))
        return (await self._unary(self._memories.UpdateMemory, request, timeout, metadata)).memory

    async def delete_memory(
        self, memory_id: str, *, timeout: TimeoutLike = DEFAULT, metadata: MetadataLike | None = None
    ) -> None:
        """Delete one memory and its vector (``DeleteMemory``).

        Raises:
            NotFound: No such memory.
            PatternServiceError: For any other error status.
        """
        request = DeleteMemoryRequest(memory_id=memory_id)
        await self._unary(self._memories.DeleteMemory, request, timeout, metadata)

    async def purge_memories(
        self,
        filter: MemoryFilter,
        *,
        force: bool = False,
        timeout: TimeoutLike = DEFAULT,
        metadata: MetadataLike | None = None,
    ) -> PurgeMemoriesResponse:
        """Delete (``force``) or count the memories passing ``filter`` (``PurgeMemories``).

        Args:
            filter: Which memories; an empty ``MemoryFilter()`` means all of the tenant's.
            force: Actually delete; without it nothing changes.
            timeout: Deadline in seconds; default: the client's default.
            metadata: Extra call metadata.

        Returns:
            ``purge_count`` and up to 100 ids in ``purge_sample``.

        Raises:
            InvalidArgument: A bad filter.
            PatternServiceError: For any other error status.
        """
        request = PurgeMemoriesRequest(filter=filter, force=force)
        return await self._unary(self._memories.PurgeMemories, request, timeout, metadata)

    async def search_memories(
        self,
        query: str,
        *,
        filter: MemoryFilter | None = None,
        min_score: float | None = None,
        limit: int = 0,
        timeout: TimeoutLike = DEFAULT,
        metadata: MetadataLike | None = None,
    ) -> SearchMemoriesResponse:
        """Memories closest in meaning to ``query`` with their scores (``SearchMemories``, ``recall``'s ranking).

        Args:
            query: What to look for.
            filter: Which memories may be returned.
            min_score: Relevance floor in [0, 1]; ``None``: the server's default.
            limit: Best memories considered, 1-100 (0: 10).
            timeout: Deadline in seconds; default: the client's default.
            metadata: Extra call metadata.

        Returns:
            ``results`` (memory and score, best first), the ``min_score`` applied and ``below_min_score``.

        Raises:
            InvalidArgument: A bad query, filter, floor or limit.
            PatternServiceError: For any other error status.
        """
        request = SearchMemoriesRequest(query=query, filter=filter, limit=limit)
        if min_score is not None:
            request.min_score = min_score
        return await self._unary(self._memories.SearchMemories, request, timeout, metadata)
