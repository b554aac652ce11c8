"""``PatternClient``: the typed asyncio client of both Pattern Service APIs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import grpc
from google.protobuf import field_mask_pb2

from tmws.pattern.client._convert import (
    DEFAULT,
    ContextLike,
    MetadataLike,
    TimeoutLike,
    merge_metadata,
    to_field_mask,
    to_struct,
)
from tmws.pattern.client._enums import (
    ExecutionModeLike,
    PatternTypeLike,
    SuccessPatternStatusLike,
    parse_execution_mode,
    parse_pattern_type,
    parse_success_pattern_status,
)
from tmws.pattern.client._errors import Unavailable, from_grpc_error
from tmws.pattern.client._memories import MemoryMethods
from tmws.pattern.client._paging import follow_pages
from tmws.pattern.client._stream import ExecuteManyItem, ExecuteManyStream
from tmws.pattern.client._version import __version__
from tmws.pattern.v1 import (
    MATCH_RANKING_LEARNED,
    MATCH_RANKING_RELEVANCE,
    MATCH_RANKING_UNSPECIFIED,
    PATTERN_LAYER_UNSPECIFIED,
    STATS_SCOPE_PROCESS,
    STATS_SCOPE_UNSPECIFIED,
    CreateSuccessPatternRequest,
    DeletePatternDefinitionRequest,
    DeletePatternDefinitionResponse,
    DeleteSuccessPatternRequest,
    EvaluateRoutingRequest,
    ExecuteRequest,
    ExecutionResult,
    FitRoutingRequest,
    FitRoutingResponse,
    GetPatternDefinitionRequest,
    GetStatsRequest,
    GetStatsResponse,
    GetSuccessPatternRequest,
    LabelledUtterance,
    ListPatternDefinitionsRequest,
    ListPatternDefinitionsResponse,
    ListSuccessPatternsRequest,
    ListSuccessPatternsResponse,
    MatchPatternsRequest,
    MatchPatternsResponse,
    MatchRanking,
    PatternDefinition,
    PatternLayer,
    PatternMatchFilters,
    RecordPatternOutcomeRequest,
    RegisterBatchRequest,
    RegisterBatchResponse,
    RouteRequest,
    RoutingDecision,
    RoutingEvaluation,
    SuccessPattern,
    UpdateSuccessPatternRequest,
)
from tmws.pattern.v1 import pattern_execution_service_pb2_grpc as exec_grpc
from tmws.pattern.v1 import pattern_learning_service_pb2_grpc as learn_grpc

if TYPE_CHECKING:
    from typing import Self

__all__ = ["DEFAULT_CHANNEL_OPTIONS", "DEFAULT_TARGET", "PatternClient"]

DEFAULT_TARGET = "127.0.0.1:50051"
"""The target :meth:`PatternClient.connect` uses by default."""

DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.primary_user_agent", f"tmws-pattern-client/{__version__}"),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
)
"""Channel options :meth:`PatternClient.connect` starts from; ``options`` override them by key."""

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class PatternClient(MemoryMethods):
    """Typed asyncio client of ``PatternExecutionService``, ``PatternLearningService`` and ``MemoryService``.

    One method per RPC, each taking keyword ``timeout`` (seconds; default: the
    client's ``default_timeout``; ``None``: no deadline) and ``metadata``
    (added after the client's metadata), and raising the typed
    :class:`~tmws.pattern.client.PatternServiceError` subclass of the status
    code, with the ``google.rpc`` details unpacked.

    Return values: when a response message wraps exactly one resource, the
    method returns that resource (``execute`` returns the ``ExecutionResult``,
    ``route`` the ``RoutingDecision``, the single-pattern learning methods the
    ``SuccessPattern``); otherwise it returns the response message (lists,
    ``register_batch``, ``delete_pattern_definition``, ``get_stats``,
    ``match_patterns``). ``delete_success_pattern`` returns the ids of the children it detached. The raw
    stubs are available as :attr:`execution_stub`, :attr:`learning_stub` and :attr:`memory_stub`.

    Example::

        async with PatternClient.connect("127.0.0.1:50051") as client:
            result = await client.execute("check system health", execution_mode="fast")
            print(result.pattern_name, result.tokens_used)

    Use one client (one channel) for many concurrent calls; it must be created
    and used inside one running event loop.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        metadata: MetadataLike = (),
        default_timeout: float | None = 10.0,
        wait_for_ready: bool | None = None,
        target: str | None = None,
    ) -> None:
        """Wrap an existing ``grpc.aio`` channel; :meth:`close` closes it.

        Args:
            channel: The channel to the service.
            metadata: Metadata sent with every call (e.g. authorization).
            default_timeout: Deadline in seconds of each unary call made
                without ``timeout``; ``None`` for no deadline.
            wait_for_ready: gRPC wait-for-ready for every call: ``True``
                queues calls while the channel connects instead of failing
                with ``UNAVAILABLE``.
            target: The channel's target, for messages only.

        Raises:
            ValueError: If ``default_timeout`` is not positive.
        """
        if default_timeout is not None and default_timeout <= 0:
            raise ValueError("default_timeout must be positive or None")
        self._channel = channel
        self._metadata = merge_metadata(metadata)
        self._default_timeout = default_timeout
        self._wait_for_ready = wait_for_ready
        self._target = target
        self._execution: exec_grpc.PatternExecutionServiceAsyncStub = exec_grpc.PatternExecutionServiceStub(channel)
        self._learning: learn_grpc.PatternLearningServiceAsyncStub = learn_grpc.PatternLearningServiceStub(channel)
        self._init_memories(channel)

    @classmethod
    def connect(
        cls,
        target: str = DEFAULT_TARGET,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: MetadataLike = (),
        default_timeout: float | None = 10.0,
        options: Sequence[tuple[str, Any]] = (),
        compression: grpc.Compression | None = None,
        interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None,
        wait_for_ready: bool | None = None,
    ) -> PatternClient:
        """Create a client with a new channel to ``target``.

        The channel connects lazily, on the first call (or
        :meth:`wait_until_ready`). Call this inside a running event loop, e.g.
        ``async with PatternClient.connect(target) as client: ...``.

        Args:
            target: ``host:port`` (or any gRPC target URI) of the service.
            credentials: Channel credentials (e.g.
                ``grpc.ssl_channel_credentials()``) for TLS; ``None`` for a
                plaintext channel.
            metadata: Metadata sent with every call.
            default_timeout: Deadline in seconds of each unary call made
                without ``timeout``; ``None`` for no deadline.
            options: gRPC channel options, overriding
                :data:`DEFAULT_CHANNEL_OPTIONS` by key.
            compression: Default compression of the channel.
            interceptors: ``grpc.aio`` client interceptors.
            wait_for_ready: gRPC wait-for-ready for every call.

        Returns:
            The client; close it with :meth:`close` or ``async with``.

        Raises:
            ValueError: If ``default_timeout`` is not positive.
        """
        merged = dict(DEFAULT_CHANNEL_OPTIONS)
        merged.update(options)
        channel_options = list(merged.items())
        if credentials is None:
            channel = grpc.aio.insecure_channel(
                target, options=channel_options, compression=compression, interceptors=interceptors
            )
        else:
            channel = grpc.aio.secure_channel(
                target, credentials, options=channel_options, compression=compression, interceptors=interceptors
            )
        return cls(
            channel,
            metadata=metadata,
            default_timeout=default_timeout,
            wait_for_ready=wait_for_ready,
            target=target,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self, grace: float | None = None) -> None:
        """Close the channel.

        Args:
            grace: Seconds to let calls in progress finish; ``None`` cancels
                them at once.
        """
        await self._channel.close(grace)

    async def wait_until_ready(self, timeout: float | None = None) -> None:
        """Wait until the channel is connected.

        Args:
            timeout: Seconds to wait at most; ``None`` waits indefinitely.

        Raises:
            Unavailable: If the channel is not ready within ``timeout``.
        """
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout)
        except TimeoutError:
            target = self._target or "the service"
            raise Unavailable(f"could not connect to {target} within {timeout} s") from None

    @property
    def channel(self) -> grpc.aio.Channel:
        """The underlying ``grpc.aio`` channel."""
        return self._channel

    @property
    def execution_stub(self) -> exec_grpc.PatternExecutionServiceAsyncStub:
        """The raw generated ``PatternExecutionService`` stub (errors are not translated)."""
        return self._execution

    @property
    def learning_stub(self) -> learn_grpc.PatternLearningServiceAsyncStub:
        """The raw generated ``PatternLearningService`` stub (errors are not translated)."""
        return self._learning

    @property
    def default_timeout(self) -> float | None:
        """Deadline in seconds of unary calls made without ``timeout``."""
        return self._default_timeout

    def _deadline(self, timeout: TimeoutLike) -> float | None:
        return self._default_timeout if timeout is DEFAULT else timeout

    async def _unary(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp],
        request: _Req,
        timeout: TimeoutLike,
        metadata: MetadataLike | None,
    ) -> _Resp:
        try:
            return await method(
                request,
                timeout=self._deadline(timeout),
                metadata=merge_metadata(self._metadata, metadata),
                wait_for_ready=self._wait_for_ready,
            )
        except grpc.aio.AioRpcError as exc:
            raise from_grpc_error(exc) from exc

    # --- PatternExecutionService -------------------------------------------------------------------------------

    async def execute(
        self,
        query: str,
        *,
        execution_mode: ExecutionModeLike = None,
        context: ContextLike = None,
        use_cache: bool | None = None,
        keyword_fallback: bool | None = None,
        timeout: TimeoutLike = DEFAULT,
        metadata: MetadataLike | None = None,
    ) -> ExecutionResult:
        """Execute one query (``Execute``).

        Args:
            query: The natural-language query (1-10,000 characters).
            execution_mode: ``"fast"``, ``"balanced"``, ``"comprehensive"``,
                an :data:`~tmws.pattern.client.ExecutionMode` value, or
                ``None`` (balanced).
            context: Execution context as a JSON-like mapping (``agent``,
                ``tags``, ``limit``, ...) or a ``Struct``.
            use_cache: Whether a cached result may be returned and a fresh one
                cached; ``None`` leaves it to the server (true).
            keyword_fallback: Allow the seed's keyword guess when no pattern
                matches; ``None`` leaves it to the server (off by default).
            timeout: Deadline in seconds; default: the client's default.
            metadata: Extra call metadata.

        Returns:
            The ``ExecutionResult`` (``ExecuteResponse.result``).

        Raises:
            InvalidArgument: If the query or context is invalid.
            NotFound: If no pattern matches the query (``ErrorInfo.reason``
                ``NO_PATTERN_MATCHED``; its metadata names the closest candidates).
            FailedPrecondition: If the mode cannot run the matched pattern.
            PatternServiceError: For any other error status.
            ValueError: If ``execution_mode`` is not an execution mode.
            TypeError: If ``context`` is not JSON-like.
        """
        request = ExecuteRequest(
            query=query,
            execution_mode=parse_execution_mode(execution_mode),
            context=to_struct(context),
            use_cache=use_cache,
            keyword_fallback=keyword_fallback,
        )
        response = await self._unary(self._execution.Execute, request, timeout, metadata)
        return response.result

    def execute_many(
        self,
        requests: Iterable[ExecuteManyItem] | AsyncIterable[ExecuteManyItem],
        *,
        execution_mode: ExecutionModeLike = None,
        use_cache: bool | None = None,
        max_in_flight: int | None = None,
        timeout: float | None = None,
        metadata: MetadataLike | None = None,
    ) -> ExecuteManyStream:
        """Execute a stream of queries (``ExecuteMany``).

        ``requests`` is consumed lazily, as the server accepts requests, so it
        may be a generator over a large file. Pass an async iterable when
        producing an item may block (e.g. reading a pipe). Iterate the returned
        stream to get one :class:`~tmws.pattern.client.ExecuteManyOutcome` per
        request, in completion order; an item's failure is its outcome's
        ``error`` and does not end the stream::

            async for outcome in client.execute_many([("1", "check health"), ("2", "recall notes", "balanced")]):
                print(outcome.request_id, outcome.result if outcome.ok else outcome.error)

        Args:
            requests: ``ExecuteManyRequest`` messages (sent as they are) or
                tuples ``(request_id, query[, mode[, context]])``; request ids
                must be unique among the requests in flight.
            execution_mode: Mode of tuples that give none.
            use_cache: ``use_cache`` of tuples; ``None`` leaves it unset.
            max_in_flight: At most this many requests sent and not yet
                answered; ``None`` leaves flow control to the server's window.
            timeout: Deadline in seconds of the whole stream; ``None`` (the
                default, which does not use ``default_timeout``) for none.
            metadata: Extra call metadata.

        Returns:
            The stream, an async iterator of outcomes (and an async context
            manager that cancels the call on exit). The call starts on the
            first iteration. Iterating raises
            :class:`~tmws.pattern.client.PatternServiceError` if the stream
            as a whole fails, and re-raises any error of ``requests`` or of
            converting an item (``TypeError``/``ValueError``).

        Raises:
            ValueError: If ``max_in_flight`` is less than 1.
        """
        return ExecuteManyStream(
            self._execution.ExecuteMany,
            requests,
            execution_mode=execution_mode,
            use_cache=use_cache,
            max_in_flight=max_in_flight,
            timeout=timeout,
            metadata=merge_metadata(self._metadata, metadata),
            wait_for_ready=self._wait_for_ready,
        )

    async def route(
        self,
        query: str,
        *,
        execution_mode: ExecutionModeLike = None,
        context: ContextLike = None,
        keyword_fallback: bool | None = None,
        timeout: TimeoutLike = DEFAULT,
        metadata: MetadataLike | None = None,
    ) -> RoutingDecision:
        """Return the routing decision for a query without executing it (``Route``).

        Args:
            query: The natural-language query.
            execution_mode: As in :meth:`execute`.
            context: As in :meth:`execute`.
            keyword_fallback: As in :meth:`execute`.
            timeout: Deadline in seconds; default: the client's default.
            metadata: Extra call metadata.

        Returns:
            The ``RoutingDecision`` (``RouteResponse.decision``).

        Raises:
            InvalidArgument: If the query or context is invalid.
            NotFound: If no pattern matches the query.
            PatternServiceError: For any other error status.
            ValueError: If ``execution_mode`` is not an execution mode.
            TypeError: If ``context`` is not JSON-like.
        """
        request = RouteRequest(
            query=query,
            execution_mode=parse_execution_mode(execution_mode),
            context=to_struct(context),
            keyword_fallback=keyword_fallback,
        )
        response = await self._unary(self._execution.Route, request, timeout, metadata)
        return response.decision

    async def evaluate_routing(
        self,
        utterances: Iterable[tuple[str, str | None]],
        *,
        execution_mode: ExecutionModeLike = None,
        timeout: TimeoutLike = DEFAULT,
        metadata: MetadataLike | None = None,
    ) -> RoutingEvaluation:
        """Route labelled utterances without executing them and report the quality (``EvaluateRouting``).

        Args:
            utterances: ``(query, expected pattern name)`` pairs; ``None`` (or
                ``""``) as the name marks an out-of-scope query that should match
                no pattern. 1-10,000 pairs.
            execution_mode: As in :meth:`execute`.
            timeout: Deadline in seconds; default: the client's default.
            metadata: Extra call metadata.

        Returns:
            The ``RoutingEvaluation``: accuracy, out-of-scope precision and
            recall, per-pattern precision / recall / F1, confusions and the
            expected calibration error.

        Raises:
            InvalidArgument: An utterance is invalid or names an unknown pattern.
            PatternServiceError: For any other error status.
        """
        request = EvaluateRoutingRequest(
            utterances=_utterances(utterances), execution_mode=parse_execution_mode(execution_mode)
        )
        response = await self._unary(self._execution.EvaluateRouting, request, timeout, metadata)
        return response.evaluation

    async def fit_routing(
        self,
        utterances: Iterable[tuple[str, str | None]],
        *,
        validate_only: bool = False,
        layer: PatternLayer.ValueType = PATTERN_LAYER_UNSPECIFIED,
        timeout: TimeoutLike = DEFAULT,
        metadata: MetadataLike | None = None,
    ) -> FitRoutingResponse:
        """Fit per-pattern thresholds and the confidence calibration of one layer and apply them (``FitRouting``).

        Args:
            utterances: As in :meth:`evaluate_routing`.
            validate_only: Report the fit without applying it.
            layer: The registry layer to change: ``PATTERN_LAYER_TENANT`` (the
                caller tenant's own), ``PATTERN_LAYER_GLOBAL`` (needs the
                ``patterns:admin:global`` scope) or unspecified (global with
                that scope, else the tenant's).
            timeout: Deadline in seconds; default: the client's default.
            metadata: Extra call metadata.

        Returns:
            The response: evaluations before and after, the thresholds set,
            the calibration and the registry version.

        Raises:
            InvalidArgument: An utterance is invalid or names an unknown pattern.
            PermissionDenied: The key lacks the ``admin`` scope (or
                ``patterns:admin:global`` for the global layer).
            PatternServiceError: For any other error status.
        """
        request = FitRoutingRequest(utterances=_utterances(utterances), validate_only=validate_only, layer=layer)
        return await self._unary(self._execution.FitRouting, request, timeout, metadata)

    async def register_batch(
        self,
        pattern_definitions: Iterable[PatternDefinition],
        *,
        validate_only: bool = False,
        layer: PatternLayer.ValueType = PATTERN_LAYER_UNSPECIFIED,
        timeout: TimeoutLike = DEFAULT,
        metadata: MetadataLike | None = None,
    ) -> RegisterBatchResponse:
        """Register or replace pattern definitions of one layer atomically (``RegisterBatch``).

        Args:
            pattern_definitions: The definitions (1-1,000, unique names).
            validate_only: Only validate; change nothing.
            layer: The registry layer to change: ``PATTERN_LAYER_TENANT`` (the
                caller tenant's own), ``PATTERN_LAYER_GLOBAL`` (needs the
                ``patterns:admin:global`` scope) or unspecified (global with
                that scope, else the tenant's).
            timeout: Deadline in seconds; default: the client's default.
            metadata: Extra call metadata.

        Returns:
            The response: the stored definitions, created and replaced counts
            and the registry version.

        Raises:
            InvalidArgument: With one field violation per problem; nothing
                was registered.
            PatternServiceError: For any other error status.
        """
        request = RegisterBatchRequest(
            pattern_definitions=list(pattern_definitions), validate_only=validate_only, layer=layer
        )
        return await self._unary(self._execution.RegisterBatch, request, timeout, metadata)

    async def list_pattern_definitions(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        pattern_type: PatternTypeLike = None,
        timeout: TimeoutLike = DEFAULT,
        metadata: MetadataLike | None = None,
    ) -> ListPatternDefinitionsResponse:
        """List one page of pattern definitions (``ListPatternDefinitions``).

        Args:
            page_size: Maximum definitions (0: the server default, 50).
            page_token: ``next_page_token`` of the previous page.
            pattern_type: Only this type (``"memory"``, ...); ``None``: all.
            timeout: Deadline in seconds; default: the client's default.
            metadata: Extra call metadata.

        Returns:
            The page: definitions, ``next_page_token`` and ``total_size``.

        Raises:
            InvalidArgument: If the page size or token is invalid.
            PatternServiceError: For any other error status.
            ValueError: If ``pattern_type`` is not a pattern type.
        """
        request = ListPatternDefinitionsRequest(
            page_size=page_size, page_token=page_token, pattern_type=parse_pattern_type(pattern_type)
        )
        return await self._unary(self._execution.ListPatternDefinitions, request, timeout, metadata)

    async def iter_all_pattern_definitions(
        self,
        *,
        page_size: int = 0,
        pattern_type: PatternTypeLike = None,
        timeout: TimeoutLike = DEFAULT,
        metadata: MetadataLike | None = None,
    ) -> AsyncIterator[PatternDefinition]:
        """Iterate over every pattern definition, fetching pages as needed.

        Args:
            page_size: Definitions per page (0: the server default).
            pattern_type: Only this type; ``None``: all.
            timeout: Deadline in seconds of each page request.
            metadata: Extra call metadata.

        Yields:
            Each definition, in priority order.

        Raises:
            PatternServiceError: If a page request fails.
        """
        pages = follow_pages(
            lambda token: self.list_pattern_definitions(
                page_size=page_size, page_token=token, pattern_type=pattern_type, timeout=timeout, metadata=metadata
            ),
            lambda page: page.pattern_definitions,
        )
        async for definition in pages:
            yield definition

    async def get_pattern_definition(
        self, name: str, *, timeout: TimeoutLike = DEFAULT, metadata: MetadataLike | None = None
    ) -> PatternDefinition:
        """Get one pattern definition by name (``GetPatternDefinition``).

        Args:
            name: Name of the definition.
            timeout: Deadline in seconds; default: the client's default.
            metadata: Extra call metadata.

        Returns:
            The definition.

        Raises:
            NotFound: If there is no definition of that name.
            PatternServiceError: For any other error status.
        """
        request = GetPatternDefinitionRequest(name=name)
        response = await self._unary(self._execution.GetPatternDefinition, request, timeout, metadata)
        return response.pattern_definition

    async def delete_pattern_definition(
        self,
        name: str,
        *,
        layer: PatternLayer.ValueType = PATTERN_LAYER_UNSPECIFIED,
        timeout: TimeoutLike = DEFAULT,
        metadata: MetadataLike | None = None,
    ) -> DeletePatternDefinitionResponse:
        """Delete one pattern definition of one layer by name (``DeletePatternDefinition``).

        Deleting a tenant's definition uncovers a global one of the same name.

        Args:
            name: Name of the definition.
            layer: The registry layer to change: ``PATTERN_LAYER_TENANT`` (the
                caller tenant's own), ``PATTERN_LAYER_GLOBAL`` (needs the
                ``patterns:admin:global`` scope) or unspecified (global with
                that scope, else the tenant's).
            timeout: Deadline in seconds; default: the client's default.
            metadata: Extra call metadata.

        Returns:
            The response, with the registry version after the deletion.

        Raises:
            NotFound: If there is no definition of that name.
            FailedPrecondition: ``GLOBAL_LAYER_PATTERN``: the tenant layer was
                targeted and only the global layer has the name.
            PatternServiceError: For any other error status.
        """
        request = DeletePatternDefinitionRequest(name=name, layer=layer)
        return await self._unary(self._execution.DeletePatternDefinition, request, timeout, metadata)

    async def get_stats(
        self,
        *,
        process_totals: bool = False,
        timeout: TimeoutLike = DEFAULT,
        metadata: MetadataLike | None = None,
    ) -> GetStatsResponse:
        """Return the caller tenant's statistics, or the server process's totals (``GetStats``).

        Args:
            process_totals: The totals of the server process over every tenant
                (``STATS_SCOPE_PROCESS``; needs the ``admin`` scope).
            timeout: Deadline in seconds; default: the client's default.
            metadata: Extra call metadata.

        Returns:
            Engine, registry, router and cache statistics, and component health.

        Raises:
            PermissionDenied: ``process_totals`` without the ``admin`` scope.
            PatternServiceError: For any other error status.
        """
        scope = STATS_SCOPE_PROCESS if process_totals else STATS_SCOPE_UNSPECIFIED
        request = GetStatsRequest(scope=scope)
        return await self._unary(self._execution.GetStats, request, timeout, metadata)

    # --- PatternLearningService --------------------------------------------------------------------------------

    async def match_patterns(
        self,
        intent: str,
        *,
        context: str = "",
        requirements: Iterable[str] = (),
        pattern_types: Iterable[str] = (),
        statuses: Iterable[SuccessPatternStatusLike] = (),
        tags: Iterable[str] = (),
        min_quality_score: float | None = None,
        min_success_rate: float | None = None,
        limit: int = 0,
        min_confidence: float | None = None,
        ranking: Literal["relevance", "learned"] | None = None,
        timeout: TimeoutLike = DEFAULT,
        metadata: MetadataLike | None = None,
    ) -> MatchPatternsResponse:
        """Find the success patterns closest in meaning to an intent (``MatchPatterns``).

        Args:
            intent: What the caller wants to do (1-1,000 characters).
            context: Free-text context embedded with the intent.
            requirements: Requirements embedded with the intent (at most 20).
            pattern_types: Only these ``pattern_type`` categories.
            statuses: Only these statuses (``"active"``, ...); empty: active.
            tags: Only patterns with at least one of these tags.
            min_quality_score: Only patterns with at least this quality score.
            min_success_rate: Only patterns with at least this success rate.
            limit: Maximum matches, 1-100 (0: the server default, 10).
            min_confidence: Minimum calibrated confidence (``None``: 0.3).
            ranking: ``"relevance"`` (calibrated relevance; the default) or
                ``"learned"`` (relevance blended with the patterns' recorded
                outcomes); ``None`` leaves it to the server (relevance).
            timeout: Deadline in seconds; default: the client's default.
            metadata: Extra call metadata.

        Returns:
            The matches, best first, with their total and query metadata.

        Raises:
            InvalidArgument: If an argument is out of range.
            PatternServiceError: For any other error status.
            ValueError: If a status is not a success pattern status.
        """
        filters = PatternMatchFilters(
            pattern_types=list(pattern_types),
            statuses=[parse_success_pattern_status(s) for s in statuses],
            tags=list(tags),
            min_quality_score=min_quality_score,
            min_success_rate=min_success_rate,
        )
        request = MatchPatternsRequest(
            intent=intent,
            context=context,
            requirements=list(requirements),
            filters=filters,
            limit=limit,
            min_confidence=min_confidence,
            ranking=_RANKINGS[ranking],
        )
        return await self._unary(self._learning.MatchPatterns, request, timeout, metadata)

    async def create_success_pattern(
        self,
        success_pattern: SuccessPattern,
        *,
        timeout: TimeoutLike = DEFAULT,
        metadata: MetadataLike | None = None,
    ) -> SuccessPattern:
        """Create a success pattern (``CreateSuccessPattern``).

        Args:
            success_pattern: The pattern; output-only fields are ignored.
            timeout: Deadline in seconds; default: the client's default.
            metadata: Extra call metadata.

        Returns:
            The pattern as stored (with ``pattern_id`` and timestamps).

        Raises:
            InvalidArgument: If a field is invalid.
            AlreadyExists: If the name is taken.
            PatternServiceError: For any other error status.
        """
        request = CreateSuccessPatternRequest(success_pattern=success_pattern)
        response = await self._unary(self._learning.CreateSuccessPattern, request, timeout, metadata)
        return response.success_pattern

    async def get_success_pattern(
        self, pattern_id: str, *, timeout: TimeoutLike = DEFAULT, metadata: MetadataLike | None = None
    ) -> SuccessPattern:
        """Return one success pattern (``GetSuccessPattern``).

        Args:
            pattern_id: UUID of the pattern.
            timeout: Deadline in seconds; default: the client's default.
            metadata: Extra call metadata.

        Returns:
            The pattern.

        Raises:
            InvalidArgument: If ``pattern_id`` is not a UUID.
            NotFound: If there is no such pattern.
            PatternServiceError: For any other error status.
        """
        request = GetSuccessPatternRequest(pattern_id=pattern_id)
        response = await self._unary(self._learning.GetSuccessPattern, request, timeout, metadata)
        return response.success_pattern

    async def list_success_patterns(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        pattern_type: str = "",
        statuses: Iterable[SuccessPatternStatusLike] = (),
        parent_pattern_id: str = "",
        tags: Iterable[str] = (),
        name_prefix: str = "",
        timeout: TimeoutLike = DEFAULT,
        metadata: MetadataLike | None = None,
    ) -> ListSuccessPatternsResponse:
        """List one page of success patterns, newest first (``ListSuccessPatterns``).

        Args:
            page_size: Maximum patterns (0: the server default, 50).
            page_token: ``next_page_token`` of the previous page.
            pattern_type: Only this category; empty: all.
            statuses: Only these statuses; empty: all.
            parent_pattern_id: Only the children of this pattern; empty: any.
            tags: Only patterns carrying at least one of these tags; empty: any.
            name_prefix: Only names starting with this (case-sensitive); empty: any.
            timeout: Deadline in seconds; default: the client's default.
            metadata: Extra call metadata.

        Returns:
            The page: patterns, ``next_page_token`` and ``total_size``.

        Raises:
            InvalidArgument: If the page size or token is invalid.
            PatternServiceError: For any other error status.
            ValueError: If a status is not a success pattern status.
        """
        request = ListSuccessPatternsRequest(
            page_size=page_size,
            page_token=page_token,
            pattern_type=pattern_type,
            statuses=[parse_success_pattern_status(s) for s in statuses],
            parent_pattern_id=parent_pattern_id,
            tags=list(tags),
            name_prefix=name_prefix,
        )
        return await self._unary(self._learning.ListSuccessPatterns, request, timeout, metadata)

    async def iter_all_success_patterns(
        self,
        *,
        page_size: int = 0,
        pattern_type: str = "",
        statuses: Iterable[SuccessPatternStatusLike] = (),
        parent_pattern_id: str = "",
        tags: Iterable[str] = (),
        name_prefix: str = "",
        timeout: TimeoutLike = DEFAULT,
        metadata: MetadataLike | None = None,
    ) -> AsyncIterator[SuccessPattern]:
        """Iterate over every success pattern, newest first, fetching pages as needed.

        Args:
            page_size: Patterns per page (0: the server default).
            pattern_type: Only this category; empty: all.
            statuses: Only these statuses; empty: all.
            parent_pattern_id: Only the children of this pattern; empty: any.
            tags: Only patterns carrying at least one of these tags; empty: any.
            name_prefix: Only names starting with this (case-sensitive); empty: any.
            timeout: Deadline in seconds of each page request.
            metadata: Extra call metadata.

        Yields:
            Each success pattern.

        Raises:
            PatternServiceError: If a page request fails.
        """
        status_list = list(statuses)
        tag_list = list(tags)
        pages = follow_pages(
            lambda token: self.list_success_patterns(
                page_size=page_size,
                page_token=token,
                pattern_type=pattern_type,
                statuses=status_list,
                parent_pattern_id=parent_pattern_id,
                tags=tag_list,
                name_prefix=name_prefix,
                timeout=timeout,
                metadata=metadata,
            ),
            lambda page: page.success_patterns,
        )
        async for pattern in pages:
            yield pattern

    async def update_success_pattern(
        self,
        success_pattern: SuccessPattern,
        update_mask: Iterable[str] | str | field_mask_pb2.FieldMask,
        *,
        timeout: TimeoutLike = DEFAULT,
        metadata: MetadataLike | None = None,
    ) -> SuccessPattern:
        """Update the named fields of a success pattern (``UpdateSuccessPattern``).

        Args:
            success_pattern: The pattern with ``pattern_id`` set and the new values.
            update_mask: The fields to update: paths (``["tags", "status"]``),
                a comma-separated string, or a ``FieldMask``.
            timeout: Deadline in seconds; default: the client's default.
            metadata: Extra call metadata.

        Returns:
            The pattern as stored after the update.

        Raises:
            InvalidArgument: If the mask or a value is invalid.
            NotFound: If there is no such pattern.
            AlreadyExists: If the new name is taken.
            PatternServiceError: For any other error status.
        """
        request = UpdateSuccessPatternRequest(success_pattern=success_pattern, update_mask=to_field_mask(update_mask))
        response = await self._unary(self._learning.UpdateSuccessPattern, request, timeout, metadata)
        return response.success_pattern

    async def delete_success_pattern(
        self,
        pattern_id: str,
        *,
        force: bool = False,
        timeout: TimeoutLike = DEFAULT,
        metadata: MetadataLike | None = None,
    ) -> list[str]:
        """Delete one success pattern (``DeleteSuccessPattern``).

        Args:
            pattern_id: UUID of the pattern.
            force: Delete it even if other patterns name it as their parent;
                they are detached (their ``parent_pattern_id`` becomes empty).
            timeout: Deadline in seconds; default: the client's default.
            metadata: Extra call metadata.

        Returns:
            The ids of the child patterns that were detached (empty without children).

        Raises:
            NotFound: If there is no such pattern.
            FailedPrecondition: If it has children and ``force`` is false
                (reason ``HAS_CHILD_PATTERNS``); nothing was deleted.
            PatternServiceError: For any other error status.
        """
        request = DeleteSuccessPatternRequest(pattern_id=pattern_id, force=force)
        response = await self._unary(self._learning.DeleteSuccessPattern, request, timeout, metadata)
        return list(response.detached_pattern_ids)

    async def record_pattern_outcome(
        self,
        pattern_id: str,
        success: bool,
        *,
        timeout: TimeoutLike = DEFAULT,
        metadata: MetadataLike | None = None,
    ) -> SuccessPattern:
        """Record one use of a pattern and its outcome (``RecordPatternOutcome``).

        Args:
            pattern_id: UUID of the pattern that was used.
            success: Whether using it succeeded.
            timeout: Deadline in seconds; default: the client's default.
            metadata: Extra call metadata.

        Returns:
            The pattern after the outcome was recorded (``match_count``,
            ``success_rate`` and ``last_matched_at`` updated).

        Raises:
            NotFound: If there is no such pattern.
            PatternServiceError: For any other error status.
        """
        request = RecordPatternOutcomeRequest(pattern_id=pattern_id, success=success)
        response = await self._unary(self._learning.RecordPatternOutcome, request, timeout, metadata)
        return response.success_pattern


def _utterances(pairs: Iterable[tuple[str, str | None]]) -> list[LabelledUtterance]:
    return [LabelledUtterance(query=q, expected_pattern_name=name or "") for q, name in pairs]


_RANKINGS: dict[str | None, MatchRanking.ValueType] = {
    None: MATCH_RANKING_UNSPECIFIED,
    "relevance": MATCH_RANKING_RELEVANCE,
    "learned": MATCH_RANKING_LEARNED,
}
