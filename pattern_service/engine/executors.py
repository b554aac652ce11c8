"""Executors of the three paths (README, "How it works").

* infrastructure: runs the pattern's tool; a tool failure is a failed part
  (``success`` false, error text), not an exception.
* memory: runs the pattern's operation on the :class:`MemoryStore`, scoped by
  tenant and filtered by the context (a defect of the original seed implementation: it
  queried a missing column with the whole query as a LIKE substring).
* hybrid: both parts concurrently (``asyncio.gather(return_exceptions=True)``);
  a failed part is reported beside the other part's data, never hidden.

Every input is validated by :meth:`MemoryExecutor.prepare` before any part runs,
so a bad context changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pattern_service.domain import Memory, MemoryAggregate, MemoryFilter, MemoryOperation, NewMemory
from pattern_service.engine.memory_context import MemoryRequest
from pattern_service.engine.ports import MemoryStore
from pattern_service.engine.tools import ToolCall, ToolRegistry, ToolServices, read_only
from pattern_service.errors import InvalidArgumentError
from pattern_service.tracing import span

logger = logging.getLogger(__name__)

DEFAULT_MIN_IMPORTANCE = 0.7
#: Relevance floor of ``recall`` (cosine similarity, all-MiniLM-L6-v2 scale): below it a memory
#: shares no meaning with the query (an unrelated memory scores about 0.0-0.15, a related one 0.3+).
DEFAULT_RECALL_MIN_SCORE = 0.2
DEFAULT_RECENT_WINDOW = timedelta(days=7)
_TAG = r"['\"‘’“”]?([\w][\w.\-]*)['\"‘’“”]?"
#: How a query names a tag: "tagged with X", "tag as X", "tagged X", "labelled X", "the tag X",
#: "tag: X", "by tag X", "the 'X' tag", "X-tagged", "under the X tag", "filed under X", "in the X category".
_TAG_IN_QUERY = (
    re.compile(rf"\b(?:tag(?:ged)?|label(?:l?ed)?)\s+(?:with|as)\s+{_TAG}", re.IGNORECASE),
    re.compile(rf"\b(?:tagged|label(?:l)?ed)\s+{_TAG}", re.IGNORECASE),
    re.compile(rf"\b(?:tag|label)\s*:?\s+{_TAG}", re.IGNORECASE),
    re.compile(rf"{_TAG}(?:\s+|-)(?:tag|label)(?:ged|l?ed)?\b", re.IGNORECASE),
    re.compile(rf"\bfiled\s+(?:under|as|in)\s+(?:the\s+)?{_TAG}", re.IGNORECASE),
    re.compile(rf"\bin\s+(?:the\s+)?{_TAG}\s+(?:category|bucket)\b", re.IGNORECASE),
)
#: Words the tag grammar can capture that are never tags.
_NOT_TAGS = frozenset(
    {
        "a",
        "an",
        "the",
        "with",
        "as",
        "by",
        "any",
        "some",
        "this",
        "that",
        "these",
        "those",
        "which",
        "what",
        "same",
        "my",
        "our",
        "your",
        "their",
        "its",
        "each",
        "every",
        "all",
        "no",
        "and",
        "or",
        "for",
        "of",
        "to",
        "in",
        "on",
        "is",
        "are",
        "was",
        "be",
        "me",
        "us",
        "them",
        "it",
        "memories",
        "memory",
        "notes",
        "note",
        "items",
        "entries",
        "stuff",
        "everything",
        "anything",
        "whatever",
        "something",
        "things",
        "tag",
        "tags",
        "label",
        "labels",
    }
)


@dataclass(frozen=True, slots=True)
class PartResult:
    """What one part of a path produced.

    Attributes:
        part: ``infrastructure`` or ``memory``.
        success: The part completed.
        data: JSON-compatible data (possibly empty on failure).
        error: Error text when it failed.
        expires_at: Earliest expiry of the memories it returned, or ``None``.
    """

    part: str
    success: bool
    data: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    #: Earliest ``expire_at`` of the memories in ``data`` (a cached result must not outlive it).
    expires_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"success": ..., "error": ..., **data}``."""
        return {"success": self.success, "error": self.error, **self.data}


def memory_to_json(m: Memory) -> dict[str, Any]:
    """A memory as a JSON object (``created_at``, ``expire_at`` RFC 3339; ``expire_at`` null for never)."""
    return {
        "memory_id": m.memory_id,
        "content": m.content,
        "agent_id": m.agent_id,
        "memory_type": m.memory_type,
        "tags": list(m.tags),
        "importance": m.importance,
        "metadata": dict(m.metadata),
        "created_at": m.created_at.isoformat(),
        "expire_at": m.expire_at.isoformat() if m.expire_at is not None else None,
        "score": m.score,
    }


def aggregate_to_json(a: MemoryAggregate) -> dict[str, Any]:
    """An aggregate as a JSON object."""
    return {
        "total": a.total,
        "by_type": dict(a.by_type),
        "top_tags": [{"tag": t, "count": n} for t, n in a.top_tags],
        "mean_importance": a.mean_importance,
        "newest": a.newest.isoformat() if a.newest else None,
    }


def tags_in(query: str, context: Mapping[str, Any]) -> tuple[str, ...]:
    """Tags ``search_by_tag`` reads: those the query names (``_TAG_IN_QUERY``), then ``context.tags`` (lower-cased)."""
    found = [
        m.group(1).lower().strip(".-")
        for rx in _TAG_IN_QUERY
        for m in rx.finditer(query)
        if m.group(1).lower() not in _NOT_TAGS
    ]
    extra = context.get("tags")
    items = [extra] if isinstance(extra, str) else (extra if isinstance(extra, list | tuple) else [])
    found += [t.strip().lower() for t in items if isinstance(t, str) and t.strip()]
    return tuple(dict.fromkeys(found))


class InfrastructureExecutor:
    """Runs tools from the tool registry.

    Args:
        tools: The tool registry.
        services: What tools may use.
    """

    def __init__(self, tools: ToolRegistry, services: ToolServices) -> None:
        self._tools = tools
        self._services = services

    async def run(
        self, tool: str, *, query: str, subject: str, context: Mapping[str, Any], tenant_id: str
    ) -> PartResult:
        """Run ``tool``; returns ``{"tool": name, "output": {...}}`` or a failed part with the tool's error."""
        call = ToolCall(query, subject, read_only(context), tenant_id, self._services)
        with span("tool.run", **{"tool.name": tool}):
            outcome = await self._tools.invoke(tool, call)
        data = {"tool": tool, "output": dict(outcome.output)}
        return PartResult("infrastructure", outcome.success, data, outcome.error)


@dataclass(frozen=True, slots=True)
class MemoryCall:
    """A validated memory operation, ready to run.

    Attributes:
        operation: The operation.
        text: Recall text or stored content.
        tags: Tags searched by ``search_by_tag``.
        min_importance: Floor of ``filter_by_importance``.
        flt: Filters of every read.
        request: The parsed context.
        min_score: Relevance floor of ``recall``, or ``None`` for none.
    """

    operation: MemoryOperation
    text: str
    tags: tuple[str, ...]
    min_importance: float
    flt: MemoryFilter
    request: MemoryRequest
    min_score: float | None = None


class MemoryExecutor:
    """Runs memory operations on the memory store.

    Args:
        store: The memory store.
        clock: Current UTC time (for ``window_seconds`` and ``recent``).
        recall_min_score: Default relevance floor of ``recall`` in [0, 1]
            (``TMWS_RECALL_MIN_SCORE``); a context's ``min_score`` overrides it.
    """

    def __init__(
        self,
        store: MemoryStore,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        recall_min_score: float = DEFAULT_RECALL_MIN_SCORE,
    ) -> None:
        self._store = store
        self._clock = clock
        self._recall_min_score = recall_min_score

    def prepare(self, operation: MemoryOperation, request: MemoryRequest, *, query: str, subject: str) -> MemoryCall:
        """Resolve what the operation needs from the query and the context.

        ``recall`` compares with the subject (the whole query when the subject is
        empty); ``store`` writes ``context.content`` or else the subject;
        ``search_by_tag`` takes its tag from "tagged with X" / "tag as X" in the
        query and/or ``context.tags``; ``filter_by_importance`` defaults to a
        floor of 0.7; ``recent`` defaults to the last 7 days. ``recall``'s
        relevance floor is the context's ``min_score``, else the server
        default when the query has a subject; a subject-less recall ("recall
        memories" with context filters) has nothing to be relevant to and
        gets no default floor.

        Raises:
            InvalidArgumentError: Nothing to store, or no tag to search.
        """
        since, until = request.since, request.until
        if request.window_seconds is not None:
            start = self._clock() - timedelta(seconds=request.window_seconds)
            since = max(since, start) if since else start
        if operation is MemoryOperation.RECENT and since is None:
            since = self._clock() - DEFAULT_RECENT_WINDOW
        tags: tuple[str, ...] = ()
        text = subject or query
        if operation is MemoryOperation.SEARCH_BY_TAG:
            tags = tags_in(query, {"tags": list(request.tags)})
            if not tags:
                raise InvalidArgumentError.single("context.tags", "name a tag: 'tagged with X' or context.tags")
        elif operation is MemoryOperation.STORE:
            text = request.content or subject
            if not text:
                raise InvalidArgumentError.single("context.content", "nothing to store: give context.content or text")
        flt = MemoryFilter(
            agent_id=request.agent,
            tags=() if operation in (MemoryOperation.SEARCH_BY_TAG, MemoryOperation.STORE) else request.tags,
            memory_type=request.memory_type,
            min_importance=None if operation is MemoryOperation.FILTER_BY_IMPORTANCE else request.min_importance,
            since=since,
            until=until,
        )
        floor = request.min_importance if request.min_importance is not None else DEFAULT_MIN_IMPORTANCE
        min_score = request.min_score
        if min_score is None and subject:
            min_score = self._recall_min_score
        return MemoryCall(operation, text, tags, floor, flt, request, min_score)

    @property
    def default_min_score(self) -> float:
        """The server's relevance floor of ``recall`` in [0, 1] (``TMWS_RECALL_MIN_SCORE``)."""
        return self._recall_min_score

    async def recall(
        self, tenant_id: str, text: str, flt: MemoryFilter, limit: int, min_score: float
    ) -> tuple[list[Memory], int]:
        """The ``recall`` operation: the ``limit`` memories closest to ``text``, then the relevance floor.

        The one ranking of semantic memory search: ``Execute``'s ``recall`` and
        ``MemoryService.SearchMemories`` both call this.

        Args:
            tenant_id: Caller tenant.
            text: What to compare with.
            flt: Filters pushed down to the index and checked on the SQL rows.
            limit: Best hits considered (>= 1).
            min_score: Relevance floor in [0, 1]; 0 keeps every hit.

        Returns:
            (hits at or above the floor, best first with ``score`` set; how many of the ``limit`` best fell below).

        Raises:
            PatternServiceError: From the store (e.g. ``UnavailableError``).
        """
        hits = await self._store.recall(tenant_id, text, flt, limit)
        found = [m for m in hits if m.score is None or m.score >= min_score] if min_score > 0 else list(hits)
        return found, len(hits) - len(found)

    async def run(self, call: MemoryCall, tenant_id: str) -> PartResult:
        """Run a prepared operation for ``tenant_id``.

        ``recall`` drops the hits scoring below its relevance floor (see
        :meth:`prepare`) and reports the floor as ``min_score`` (0 for none)
        and how many of the ``limit`` best hits it dropped as
        ``below_min_score``; the kept hits are still best first.

        Returns:
            A successful part: ``{"operation", "count", "memories": [...]}`` for
            reads, ``{"operation": "store", "memory": {...}}`` for a write,
            ``{"operation": "aggregate", "aggregate": {...}}``.

        Raises:
            PatternServiceError: From the store (e.g. ``UnavailableError``).
        """
        op, flt, limit = call.operation, call.flt, call.request.limit
        if op is MemoryOperation.STORE:
            r = call.request
            memory = NewMemory(
                tenant_id=tenant_id,
                content=call.text,
                agent_id=r.agent,
                memory_type=r.memory_type or "general",
                tags=r.tags,
                importance=r.importance if r.importance is not None else 0.5,
                metadata=dict(r.extra),
            )
            stored = await self._store.store(memory)
            return PartResult("memory", True, {"operation": op.value, "memory": memory_to_json(stored)})
        if op is MemoryOperation.AGGREGATE:
            agg = await self._store.aggregate(tenant_id, flt)
            return PartResult("memory", True, {"operation": op.value, "aggregate": aggregate_to_json(agg)})
        extra: dict[str, Any] = {}
        if op is MemoryOperation.RECALL:
            floor = call.min_score or 0.0
            found, below = await self.recall(tenant_id, call.text, flt, limit, floor)
            extra = {"query": call.text, "min_score": floor, "below_min_score": below}
        elif op is MemoryOperation.SEARCH_BY_TAG:
            found = await self._store.search_by_tag(tenant_id, call.tags, flt, limit)
            extra = {"tags": list(call.tags)}
        elif op is MemoryOperation.FILTER_BY_IMPORTANCE:
            found = await self._store.filter_by_importance(tenant_id, call.min_importance, flt, limit)
            extra = {"min_importance": call.min_importance}
        else:
            found = await self._store.recent(tenant_id, flt, limit)
            extra = {"since": flt.since.isoformat() if flt.since else None}
        memories = [memory_to_json(m) for m in found]
        expires_at = min((m.expire_at for m in found if m.expire_at is not None), default=None)
        return PartResult(
            "memory",
            True,
            {"operation": op.value, **extra, "count": len(memories), "memories": memories},
            expires_at=expires_at,
        )


class HybridExecutor:
    """Runs an infrastructure and a memory part concurrently and reports both."""

    def __init__(self, infrastructure: InfrastructureExecutor, memory: MemoryExecutor) -> None:
        self._infrastructure = infrastructure
        self._memory = memory

    async def run(
        self, tool: str, call: MemoryCall, *, query: str, subject: str, context: Mapping[str, Any], tenant_id: str
    ) -> tuple[PartResult, PartResult]:
        """Both parts; an exception of one part becomes a failed :class:`PartResult` with its text."""
        results = await asyncio.gather(
            self._infrastructure.run(tool, query=query, subject=subject, context=context, tenant_id=tenant_id),
            self._memory.run(call, tenant_id),
            return_exceptions=True,
        )
        parts: list[PartResult] = []
        for name, res in zip(("infrastructure", "memory"), results, strict=True):
            if isinstance(res, PartResult):
                parts.append(res)
            elif isinstance(res, Exception):
                logger.warning("hybrid %s part failed: %s", name, res, exc_info=res)
                parts.append(PartResult(name, False, {}, f"{type(res).__name__}: {res}"))
            else:
                raise res
        return parts[0], parts[1]
