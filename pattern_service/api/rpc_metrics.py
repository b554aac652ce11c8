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
methods of the two ``tmws.pattern.v1`` services, into per-method tallies read
at scrape time: a call pays a few integer increments and one bisect.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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


class _Tally:
    """A counter the event loop increments without a lock (read by the scrape thread)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1


class RpcMetrics(Collector):
    """The ``grpc_server_*`` metric families on one registry.

    Calls are counted in plain per-method tallies (one event loop writes them,
    so no lock is taken per call: a labelled ``prometheus_client`` child costs
    a lock per update, 2 µs a call for the five of them) and exported as
    Prometheus families at scrape time.

    Args:
        registry: Where the families are registered.
    """

    def __init__(self, registry: CollectorRegistry):
        self._methods: list[MethodMetrics] = []
        registry.register(self)

    def method(self, full_method: str, kind: str) -> MethodMetrics:
        """The metrics of one method (``/package.Service/Method``) of ``kind`` (a ``grpc_type``)."""
        service, _, name = full_method.lstrip("/").rpartition("/")
        metrics = MethodMetrics((kind, service, name))
        self._methods.append(metrics)
        return metrics

    def describe(self) -> Iterator[Any]:
        """The families (without samples), for registration."""
        return iter(self._families())

    def collect(self) -> Iterator[Any]:
        """The families with every method's samples."""
        started, handled, handling, received, sent = self._families()
        for m in self._methods:
            labels = list(m.labels)
            started.add_metric(labels, m.started.value)
            received.add_metric(labels, m.received.value)
            sent.add_metric(labels, m.sent.value)
            for code, tally in list(m.codes.items()):
                handled.add_metric([*labels, code], tally.value)
            counts = list(m.buckets)
            cumulative, buckets = 0, []
            for bound, count in zip((*HANDLING_BUCKETS, math.inf), counts, strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))
            handling.add_metric(labels, buckets, m.seconds)
        yield from (started, handled, handling, received, sent)

    @staticmethod
    def _families() -> tuple[Any, Any, Any, Any, Any]:
        return (
            CounterMetricFamily("grpc_server_started", "RPCs started on the server.", labels=_LABELS),
            CounterMetricFamily(
                "grpc_server_handled",
                "RPCs completed on the server, regardless of success or failure.",
                labels=(*_LABELS, "grpc_code"),
            ),
            HistogramMetricFamily(
                "grpc_server_handling_seconds",
                "Response latency of RPCs handled by the server, until the last message is sent (seconds).",
                labels=_LABELS,
            ),
            CounterMetricFamily("grpc_server_msg_received", "RPC messages received on the server.", labels=_LABELS),
            CounterMetricFamily("grpc_server_msg_sent", "RPC messages sent by the server.", labels=_LABELS),
        )


class MethodMetrics:
    """The tallies of one method.

    Attributes:
        labels: ``(grpc_type, grpc_service, grpc_method)``.
        started: RPCs started.
        received: Messages received.
        sent: Messages sent.
        codes: RPCs handled, by status code name.
        buckets: Handling times per bucket of :data:`HANDLING_BUCKETS` (plus ``+Inf``), not cumulative.
        seconds: Sum of handling times.
    """

    __slots__ = ("buckets", "codes", "labels", "received", "seconds", "sent", "started")

    def __init__(self, labels: tuple[str, str, str]):
        self.labels = labels
        self.started = _Tally()
        self.received = _Tally()
        self.sent = _Tally()
        self.codes: dict[str, _Tally] = {}
        self.buckets = [0] * (len(HANDLING_BUCKETS) + 1)
        self.seconds = 0.0

    def handled(self, code: str, seconds: float) -> None:
        """Record one finished call: its status code name and its handling time in seconds."""
        tally = self.codes.get(code)
        if tally is None:
            tally = self.codes[code] = _Tally()
        tally.value += 1
        self.buckets[bisect_left(HANDLING_BUCKETS, seconds)] += 1
        self.seconds += seconds
