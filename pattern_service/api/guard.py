"""Every per-call check in front of a servicer, applied by one wrapper per method.

For each method of the two ``tmws.pattern.v1`` services, :class:`CallGuard`
builds, once at start, a handler whose behaviour does in order:

0. **the shutdown cut-over** (:meth:`CallGuard.close`): once the server's
   drain is over, every new call aborts ``UNAVAILABLE`` ``SHUTTING_DOWN``;
1. **authentication and scope** (:mod:`pattern_service.api.auth`) when API
   keys are configured: the principal is bound for the call, a refused call
   aborts ``UNAUTHENTICATED``/``PERMISSION_DENIED`` before anything else;
2. **the concurrency limit** (:class:`ConcurrencyLimit`): past the limit the
   call aborts ``RESOURCE_EXHAUSTED`` with ``RetryInfo``; refused callers of
   step 1 never take a slot;
3. **undecodable requests** (:mod:`pattern_service.api.decoding`): a request
   that is not a valid message aborts ``INVALID_ARGUMENT``, one over the size
   limit ``RESOURCE_EXHAUSTED`` (for a request stream, when it is reached).

Around all of it the wrapper records the per-RPC metrics
(:mod:`pattern_service.api.rpc_metrics`: started, handled by status code
including ``DEADLINE_EXCEEDED``/``CANCELLED``, handling time, messages) and
keeps response compression (``TMWS_RESPONSE_COMPRESSION``, a server-wide
compression *level*, so grpc picks an algorithm the client's
``grpc-accept-encoding`` lists) only on the methods whose responses are large.

Health and reflection are registered without a guard: open and never limited.

Why not ``grpc.aio.ServerInterceptor``: grpc runs each interceptor's
coroutine on every call, and each had to rebuild the method handler per call
to act around it; with three of them that was a large share of a cache hit's
CPU (``bench/profile.py``). Here the handler is built once per method and a
call pays one wrapper, whose checks are plain attribute tests when no keys are
configured.

(Over 400 lines: the four handler kinds of :meth:`CallGuard.wrap` repeat one
wrapper shape each, and are kept side by side so that they stay alike.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from time import perf_counter
from typing import Any, TypeAlias

import grpc
from prometheus_client import CollectorRegistry

from pattern_service.api.auth import authenticate, required_scope
from pattern_service.api.decoding import Undecodable, checked_requests, malformed, safe_deserializer
from pattern_service.api.identity import Scope, reset_principal, set_principal
from pattern_service.api.keys import KeyRing
from pattern_service.api.rpc_metrics import RpcMetrics, grpc_type
from pattern_service.api.status import abort, status_code_of
from pattern_service.api.traced import traced
from pattern_service.errors import PatternServiceError, ResourceExhaustedError, UnavailableError

ServicerContext = grpc.aio.ServicerContext[Any, Any]
#: Seconds before its deadline within which a cancelled call counts as ``DEADLINE_EXCEEDED``.
DEADLINE_SLACK = 0.05
#: Seconds without a new call the shutdown cut-over waits for before grpc stops (see :meth:`CallGuard.close`).
CUTOVER_QUIET_SECONDS = 0.25
#: A method handler of any request and response types.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def behavior_of(handler: Handler) -> Callable[..., Any]:
    """The behaviour of ``handler`` for its kind (unary-unary, unary-stream, …).

    Raises:
        ValueError: ``handler`` lacks the behaviour its kind names.
    """
    if handler.request_streaming and handler.response_streaming:
        behavior = handler.stream_stream
    elif handler.request_streaming:
        behavior = handler.stream_unary
    elif handler.response_streaming:
        behavior = handler.unary_stream
    else:
        behavior = handler.unary_unary
    if behavior is None:
        raise ValueError("the method handler has no behaviour of its kind")
    return behavior


class ConcurrencyLimit:
    """Counts the calls running at once and refuses those past ``limit``.

    A call counts from the moment its behaviour starts until it ends (a
    streaming call until its stream ends or is cancelled). The check and the
    count happen with no ``await`` between them, so the limit is exact on the
    event loop.

    Args:
        limit: Maximum calls running at once (>= 1).
        on_reject: Called with the method name for each refused call (metrics).

    Raises:
        ValueError: ``limit`` < 1.
    """

    def __init__(self, limit: int, on_reject: Callable[[str], None] | None = None):
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self.active = 0
        self._on_reject = on_reject
        self._idle: asyncio.Event | None = None

    async def wait_idle(self) -> None:
        """Wait until no admitted call is running (the shutdown cut-over waits here, bounded by the grace)."""
        if self.active == 0:
            return
        self._idle = asyncio.Event()
        await self._idle.wait()

    def refusal(self, method: str) -> ResourceExhaustedError | None:
        """Take a slot for ``method`` (``None``), or the error to refuse it with (no slot taken)."""
        if self.active >= self.limit:
            if self._on_reject is not None:
                self._on_reject(method)
            return ResourceExhaustedError(
                f"the server is running {self.limit} calls, its limit; retry shortly",
                reason="TOO_MANY_CONCURRENT_RPCS",
                metadata={"limit": str(self.limit)},
            )
        self.active += 1
        return None

    def release(self) -> None:
        """Give back the slot of a call that ended."""
        self.active -= 1
        if self.active == 0 and self._idle is not None:
            self._idle.set()


class CallGuard:
    """Wraps method handlers with authentication, the concurrency limit and decode checks.

    Args:
        ring: The configured API keys; an empty ring lets every call through (open server).
        limit: The concurrency limit shared by every guarded method.
        on_auth_reject: Called with ``(method name, status code name)`` for each call
            refused by authentication (metrics).
        rpc_metrics: Where the per-RPC metrics go (a private registry when ``None``).
        max_message_bytes: Largest request message accepted (``None`` = no limit here).
        compress_responses: The server compresses responses by default (``TMWS_RESPONSE_COMPRESSION``);
            the guard then turns compression off for every method but ``compressed_methods``.
        compressed_methods: Method names (``ListPatternDefinitions``, …) whose responses stay compressed.
    """

    def __init__(
        self,
        ring: KeyRing,
        limit: ConcurrencyLimit,
        on_auth_reject: Callable[[str, str], None] | None = None,
        *,
        rpc_metrics: RpcMetrics | None = None,
        max_message_bytes: int | None = None,
        compress_responses: bool = False,
        compressed_methods: Collection[str] = (),
    ):
        self._ring = ring
        self.limit = limit
        self._on_auth_reject = on_auth_reject
        self.rpc_metrics = rpc_metrics if rpc_metrics is not None else RpcMetrics(CollectorRegistry())
        self.max_message_bytes = max_message_bytes
        self.compress_responses = compress_responses
        self.compressed_methods = frozenset(compressed_methods)
        #: Set by the server's shutdown once the drain is over: new calls get ``UNAVAILABLE`` (see :meth:`close`).
        self.closing = False
        self.last_refusal = 0.0

    async def close(self, within: float) -> bool:
        """The shutdown cut-over: refuse new calls, let the admitted ones finish.

        From now on every new call of a guarded method ends ``UNAVAILABLE`` with
        reason ``SHUTTING_DOWN`` (and ``RetryInfo``): clients retry it, unlike the
        ``CANCELLED`` that grpc gives calls arriving once its own ``stop()`` has
        begun (grpc/grpc#41785). Calls already admitted run on. Once they have
        ended, it waits for :data:`CUTOVER_QUIET_SECONDS` without a new call (the
        refused callers back off as ``RetryInfo`` asks), so that nothing is queued
        when grpc stops; a caller retrying without any backoff at that instant can
        still be cancelled by grpc.

        Args:
            within: Seconds to wait for the admitted calls (the grace period).

        Returns:
            Whether every admitted call ended within ``within`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        self.closing = True
        self.last_refusal = loop.time()
        if self.limit.active:
            try:
                await asyncio.wait_for(self.limit.wait_idle(), within)
            except TimeoutError:
                return False
        # grpc ends every call still queued in its core when its stop() begins with CANCELLED, so wait
        # for a quiet moment: callers refused here back off (RetryInfo), and then nothing is queued.
        while (quiet := loop.time() - self.last_refusal) < CUTOVER_QUIET_SECONDS:
            if loop.time() + CUTOVER_QUIET_SECONDS - quiet > deadline:
                break
            await asyncio.sleep(CUTOVER_QUIET_SECONDS - quiet)
        return True

    def _admit(self, name: str, scope: Scope | None, context: ServicerContext) -> Any:
        """Authenticate and admit one call; returns the principal token (or ``None``).

        Plain (not a coroutine): every call pays it, and nothing in it waits.

        Raises:
            PatternServiceError: The call is refused (no slot is held and no principal bound).
        """
        token = None
        if self.closing:
            self.last_refusal = asyncio.get_running_loop().time()
            raise UnavailableError(
                "the server is shutting down; retry (another replica will answer)", reason="SHUTTING_DOWN"
            )
        try:
            if scope is not None and self._ring.enabled:
                try:
                    principal = authenticate(self._ring, context.invocation_metadata(), scope)
                except PatternServiceError as exc:
                    if self._on_auth_reject is not None:
                        self._on_auth_reject(name, status_code_of(exc).name)
                    raise
                token = set_principal(principal)
            refused = self.limit.refusal(name)
            if refused is not None:
                raise refused
        except PatternServiceError:
            if token is not None:
                reset_principal(token)
            raise
        return token

    async def _admitted(self, name: str, scope: Scope | None, context: ServicerContext) -> Any:
        """:meth:`_admit`, aborting the call with the refusal's status."""
        try:
            return self._admit(name, scope, context)
        except PatternServiceError as exc:
            await abort(context, exc)

    def _release(self, token: Any) -> None:
        self.limit.release()
        if token is not None:
            reset_principal(token)

    def wrap(self, method: str, handler: Handler) -> Handler:
        """The guarded handler of ``method`` (a full path such as ``/tmws.pattern.v1.X/Y``).

        Raises:
            ValueError: ``handler`` lacks the behaviour its kind names.
        """
        behavior = behavior_of(handler)
        scope = required_scope(method)
        name = method.rpartition("/")[2]
        deserializer = safe_deserializer(handler.request_deserializer, self.max_message_bytes)
        serializer = handler.response_serializer
        admit, admitted, release = self._admit, self._admitted, self._release
        stats = self.rpc_metrics.method(method, grpc_type(handler.request_streaming, handler.response_streaming))
        started, received, sent, handled = stats.started, stats.received, stats.sent, stats.handled
        # The server compresses responses (grpc picks an algorithm the client accepts); small ones opt out.
        plain = self.compress_responses and name not in self.compressed_methods

        if handler.request_streaming and handler.response_streaming:

            async def stream_stream(requests: AsyncIterator[Any], context: ServicerContext) -> AsyncIterator[Any]:
                t0 = perf_counter()
                started.inc()
                ended: BaseException | None = None
                try:
                    token = await admitted(name, scope, context)
                    try:
                        async for item in behavior(checked_requests(requests, received), context):
                            sent.inc()
                            if plain:
                                context.disable_next_message_compression()
                            yield item
                    finally:
                        release(token)
                except BaseException as exc:
                    ended = exc
                    raise
                finally:
                    handled(final_code(context, ended, True), perf_counter() - t0)

            return grpc.stream_stream_rpc_method_handler(
                traced(method, stream_stream, response_streaming=True, final_code=lambda c, e: final_code(c, e, True)),
                deserializer,
                serializer,
            )

        if handler.request_streaming:

            async def stream_unary(requests: AsyncIterator[Any], context: ServicerContext) -> Any:
                t0 = perf_counter()
                started.inc()
                ended: BaseException | None = None
                try:
                    token = await admitted(name, scope, context)
                    if plain:
                        context.disable_next_message_compression()
                    try:
                        response = await behavior(checked_requests(requests, received), context)
                        sent.inc()
                        return response
                    finally:
                        release(token)
                except BaseException as exc:
                    ended = exc
                    raise
                finally:
                    handled(final_code(context, ended, True), perf_counter() - t0)

            return grpc.stream_unary_rpc_method_handler(
                traced(method, stream_unary, response_streaming=False, final_code=lambda c, e: final_code(c, e, True)),
                deserializer,
                serializer,
            )

        if handler.response_streaming:

            async def unary_stream(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
                t0 = perf_counter()
                started.inc()
                received.inc()
                ended: BaseException | None = None
                try:
                    token = await admitted(name, scope, context)
                    try:
                        if isinstance(request, Undecodable):
                            await abort(context, malformed(request))
                        async for item in behavior(request, context):
                            sent.inc()
                            if plain:
                                context.disable_next_message_compression()
                            yield item
                    finally:
                        release(token)
                except BaseException as exc:
                    ended = exc
                    raise
                finally:
                    handled(final_code(context, ended), perf_counter() - t0)

            return grpc.unary_stream_rpc_method_handler(
                traced(method, unary_stream, response_streaming=True, final_code=lambda c, e: final_code(c, e, False)),
                deserializer,
                serializer,
            )

        async def unary_unary(request: Any, context: ServicerContext) -> Any:
            t0 = perf_counter()
            started.inc()
            received.inc()
            ended: BaseException | None = None
            try:
                try:
                    token = admit(name, scope, context)
                except PatternServiceError as exc:
                    await abort(context, exc)
                if plain:
                    context.disable_next_message_compression()
                try:
                    if request.__class__ is Undecodable:
                        await abort(context, malformed(request))
                    response = await behavior(request, context)
                    sent.inc()
                    return response
                finally:
                    release(token)
            except BaseException as exc:
                ended = exc
                raise
            finally:
                handled(final_code(context, ended), perf_counter() - t0)

        return grpc.unary_unary_rpc_method_handler(
            traced(method, unary_unary, response_streaming=False, final_code=final_code), deserializer, serializer
        )


def final_code(context: ServicerContext, exc: BaseException | None, streamed: bool = False) -> str:
    """The status code name a call ended with.

    Args:
        context: The call's context (holds the code of an abort).
        exc: What ended the call's behaviour, or ``None`` when it returned.
        streamed: The call has a request stream.

    Returns:
        The ``grpc.StatusCode`` name: the aborted code; ``DEADLINE_EXCEEDED`` or
        ``CANCELLED`` for a call cancelled by its deadline or by the client (or a
        request stream ended by its deadline);
        ``UNKNOWN`` for any other exception (grpc reports it so); else ``OK``.
    """
    code = context.code()
    if code is not None:
        return code.name if isinstance(code, grpc.StatusCode) else str(code)
    if exc is None:
        if not streamed:
            return "OK"
        # grpc ends a request stream quietly when the deadline expires, and the handler returns.
        remaining = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= DEADLINE_SLACK else "OK"
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        remaining = context.time_remaining()
        # At expiry the client cancels too, so the server may see the cancellation a moment before its
        # own deadline: within DEADLINE_SLACK of it the deadline is taken as the cause.
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= DEADLINE_SLACK else "CANCELLED"
    return "UNKNOWN"


class _Collector:
    """Stands in for a server in the generated ``add_*Servicer_to_server`` functions, keeping the handlers."""

    def __init__(self) -> None:
        self.services: dict[str, Mapping[str, Handler]] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        """Ignored: the same handlers also arrive through :meth:`add_registered_method_handlers`."""

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Handler]) -> None:
        self.services[service] = handlers


def add_guarded(server: grpc.aio.Server, guard: CallGuard, add: Callable[[Any, Any], None], servicer: Any) -> None:
    """Register ``servicer`` on ``server`` through its generated ``add`` function, every method guarded.

    Args:
        server: The server.
        guard: The checks to apply.
        add: The generated ``add_<Service>Servicer_to_server``.
        servicer: The servicer instance.
    """
    collector = _Collector()
    add(servicer, collector)
    for service, handlers in collector.services.items():
        guarded = {name: guard.wrap(f"/{service}/{name}", h) for name, h in handlers.items()}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, guarded),))
        server.add_registered_method_handlers(service, guarded)
