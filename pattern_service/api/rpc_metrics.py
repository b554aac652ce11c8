"""Per-RPC Prometheus metrics in the conventions of go-grpc-prometheus / py-grpc-prometheus.

=================================  ======================================================================
metric                             labels
=================================  ======================================================================
``grpc_server_started_total``      ``grpc_type``, ``grpc_service``, ``grpc_method``
``grpc_server_handled_total``      the same plus ``grpc_code`` (``OK``, ``NOT_FOUND``, ``CANCELLED``,
                                   ``DEADLINE_EXCEEDED``, …)
``grpc_server_handling_seconds``   histogram, ``grpc_type``, ``grpc_service``, ``grpc_method``
``grpc_server_msg_received_total`` messages received (1 per unary request, each message of a stream)
``grpc_server_msg_sent_total``     messages sent
=================================  ======================================================================

``grpc_type`` is ``unary``, ``client_stream``, ``server_stream`` or ``bidi_stream``.
They are recorded by the call guard (:mod:`pattern_service.api.guard`) for the
methods of the two ``tmws.pattern.v1`` services; each method's labelled
children are resolved once at start (and once per status code), so a call pays
a few counter increments and one histogram observation.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

#: Handling-time buckets (seconds): a cache hit takes well under a millisecond.
HANDLING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LABELS = ("grpc_type", "grpc_service", "grpc_method")


def grpc_type(request_streaming: bool, response_streaming: bool) -> str:
    """The ``grpc_type`` label of a method kind."""
    if request_streaming and response_streaming:
        return "bidi_stream"
    if request_streaming:
        return "client_stream"
    if response_streaming:
        return "server_stream"
    return "unary"


class RpcMetrics:
    """The ``grpc_server_*`` metric families on one registry.

    Args:
        registry: Where the families are registered.
    """

    def __init__(self, registry: CollectorRegistry):
        self.started = Counter("grpc_server_started", "RPCs started on the server.", _LABELS, registry=registry)
        self.handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, regardless of success or failure.",
            (*_LABELS, "grpc_code"),
            registry=registry,
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Response latency of RPCs handled by the server, until the last message is sent (seconds).",
            _LABELS,
            buckets=HANDLING_BUCKETS,
            registry=registry,
        )
        self.msg_received = Counter(
            "grpc_server_msg_received", "RPC messages received on the server.", _LABELS, registry=registry
        )
        self.msg_sent = Counter("grpc_server_msg_sent", "RPC messages sent by the server.", _LABELS, registry=registry)

    def method(self, full_method: str, kind: str) -> MethodMetrics:
        """The pre-resolved metrics of one method (``/package.Service/Method``) of ``kind`` (a ``grpc_type``)."""
        service, _, name = full_method.lstrip("/").rpartition("/")
        return MethodMetrics(self, (kind, service, name))


class MethodMetrics:
    """The labelled children of one method, resolved once.

    Attributes:
        started: ``grpc_server_started_total`` of the method.
        received: ``grpc_server_msg_received_total`` of the method.
        sent: ``grpc_server_msg_sent_total`` of the method.
    """

    __slots__ = ("_handled", "_handled_family", "_handling", "_labels", "received", "sent", "started")

    def __init__(self, families: RpcMetrics, labels: tuple[str, str, str]):
        self._labels = labels
        self.started: Any = families.started.labels(*labels)
        self.received: Any = families.msg_received.labels(*labels)
        self.sent: Any = families.msg_sent.labels(*labels)
        self._handling: Any = families.handling.labels(*labels)
        self._handled_family = families.handled
        self._handled: dict[str, Any] = {}

    def handled(self, code: str, seconds: float) -> None:
        """Record one finished call: its status code name and its handling time in seconds."""
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = self._handled_family.labels(*self._labels, code)
        child.inc()
        self._handling.observe(seconds)
