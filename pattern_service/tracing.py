"""OpenTelemetry tracing, opt-in: server spans per RPC and child spans for the work inside.

Off by default, and then free: :func:`span` returns one shared ``nullcontext``
and the call guard installs no tracing wrapper. It is on when
``TMWS_OTEL_ENABLED=true``, or when a standard OTLP endpoint variable is set
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), unless
``OTEL_SDK_DISABLED=true``. Spans then go to an OTLP/gRPC exporter
(``TMWS_OTEL_ENDPOINT``, else the standard variables, else ``localhost:4317``)
through a batch processor; the standard ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER(_ARG)`` and
``OTEL_EXPORTER_OTLP_*`` variables apply as the SDK defines them.

Span tree of one ``Execute`` (names are stable, attributes follow the OpenTelemetry
RPC and database conventions)::

    tmws.pattern.v1.PatternExecutionService/Execute   SERVER, parent from the caller's traceparent
    ├── route                                        matching and path choice
    │   └── embed                                    (semantic match only)
    ├── cache.lookup
    ├── tool.run                                     infrastructure part
    └── memory part: embed, vector.search, sql      (memory reads and writes)

The ``opentelemetry-sdk`` and OTLP exporter are installed with the ``otel`` extra
(``pip install tmws-pattern-service[otel]``; ``make install`` includes it); the
API alone (a dependency) costs nothing when tracing is off.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from pattern_service.config import Settings

log = logging.getLogger(__name__)

_NULL = contextlib.nullcontext()
_tracer: trace.Tracer | None = None
_provider: TracerProvider | None = None
INSTRUMENTATION_NAME = "pattern_service"


def enabled() -> bool:
    """Whether tracing is on (decided at start by :func:`configure` or :func:`enable`)."""
    return _tracer is not None


def span(name: str, **attributes: Any) -> contextlib.AbstractContextManager[Any]:
    """A child span of the current one named ``name`` (a shared no-op context when tracing is off).

    Args:
        name: Span name (``route``, ``cache.lookup``, ``embed``, ``vector.search``, ``sql``, ``tool.run``).
        **attributes: Span attributes (strings, numbers, booleans).
    """
    tracer = _tracer
    if tracer is None:
        return _NULL
    return tracer.start_as_current_span(name, attributes=attributes or None)


def _carrier(metadata: Any) -> dict[str, str]:
    return {key: value for key, value in (metadata or ()) if isinstance(value, str)}


@contextlib.contextmanager
def server_span(full_method: str, metadata: Any) -> Iterator[trace.Span]:
    """The SERVER span of one call, a child of the trace context in the caller's metadata (W3C ``traceparent``).

    Args:
        full_method: ``/package.Service/Method``.
        metadata: The call's invocation metadata (``(key, value)`` pairs).

    Yields:
        The span (the current span inside the block).
    """
    tracer = _tracer
    assert tracer is not None, "server_span needs tracing enabled"
    service, _, method = full_method.lstrip("/").rpartition("/")
    parent = propagate.extract(_carrier(metadata))
    token = otel_context.attach(parent)
    try:
        with tracer.start_as_current_span(
            f"{service}/{method}",
            kind=trace.SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
            record_exception=False,
            set_status_on_exception=False,
        ) as current:
            yield current
    finally:
        otel_context.detach(token)


def end_server_span(current: trace.Span, code: str) -> None:
    """Set the span's ``rpc.grpc.status_code`` and, for server-side failures, an error status.

    Args:
        current: The span of :func:`server_span`.
        code: The ``grpc.StatusCode`` name the call ended with.
    """
    import grpc

    status = grpc.StatusCode[code] if code in grpc.StatusCode.__members__ else grpc.StatusCode.UNKNOWN
    current.set_attribute("rpc.grpc.status_code", status.value[0])
    # OpenTelemetry's gRPC server convention: only these codes are server errors.
    if code in ("UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"):
        current.set_status(trace.Status(trace.StatusCode.ERROR, code))


def enable(provider: TracerProvider) -> None:
    """Trace into ``provider`` from now on (tests pass one with an in-memory exporter)."""
    global _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer(INSTRUMENTATION_NAME)


def disable() -> None:
    """Stop tracing; flushes and shuts down the provider :func:`enable` was given."""
    global _tracer, _provider
    provider, _tracer, _provider = _provider, None, None
    if provider is not None:
        provider.shutdown()


def wanted(settings: Settings, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``settings`` and the environment ask for tracing (see the module docstring)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if settings.otel_enabled or settings.otel_endpoint:
        return True
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def configure(settings: Settings) -> bool:
    """Turn tracing on with the OTLP exporter when :func:`wanted`; also installs the global provider.

    Returns:
        Whether tracing is on.

    Raises:
        RuntimeError: Tracing is asked for but the ``otel`` extra (SDK, exporter) is not installed.
    """
    if not wanted(settings):
        return False
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise RuntimeError(
            "tracing is enabled (TMWS_OTEL_ENABLED / OTEL_EXPORTER_OTLP_ENDPOINT) but the OpenTelemetry SDK "
            "is not installed: pip install 'tmws-pattern-service[otel]'"
        ) from exc
    attributes = {"service.name": settings.otel_service_name}
    if os.environ.get("OTEL_SERVICE_NAME"):
        attributes = {}  # Resource.create reads OTEL_SERVICE_NAME itself
    provider = TracerProvider(resource=Resource.create(attributes))
    exporter = OTLPSpanExporter(endpoint=settings.otel_endpoint) if settings.otel_endpoint else OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    enable(provider)
    log.info(
        "tracing on: OTLP to %s", settings.otel_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "default")
    )
    return True


def current_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of the current span as lowercase hex, or ``None`` outside a recorded span."""
    if _tracer is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
