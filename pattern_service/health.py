"""Per-component health, reflected into ``grpc.health.v1`` per service.

A background task probes the backends every few seconds (the seed's health
check: SQL, vector index, outbox sync, embedding; Redis when configured) and
sets each service's serving status from the components it needs:

- ``tmws.pattern.v1.PatternLearningService`` (and ``MemoryService``) needs ``sql``, ``vector_index``
  and ``embedding``: NOT_SERVING while any of them is down.
- ``tmws.pattern.v1.PatternExecutionService`` stays SERVING while the process
  runs: infrastructure paths need no backend, and memory paths fail per call
  with ``UNAVAILABLE``.
- The overall service (``""``) follows the execution service.

Redis and the outbox lag degrade nothing: the cache falls back to its local
layer and the outbox retries. Both are reported in the detail (``GetStats``).

The ``health_check`` tool reads the same probe through :class:`ProbeCache`: the
monitor refreshes it every :data:`PROBE_INTERVAL` seconds and the tool answers
with the last result (with its time and age) when it is at most
:data:`TOOL_MAX_AGE` seconds old, probing itself otherwise. Probing every
component on every call (SQL ping, index count, outbox queries, an embedding)
made the tool run at 0.06× a bare echo server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
COMPONENTS = ("sql", "vector_index", "sync", "embedding", "redis")
#: Seconds between background probes of :class:`HealthMonitor` (the server's).
PROBE_INTERVAL = 0.8
#: Oldest probe result (seconds) the ``health_check`` tool answers with before probing itself.
TOOL_MAX_AGE = 1.0


class ProbeCache:
    """The last result of an async component probe, shared by its readers.

    :meth:`get` answers with the last result when it is at most ``max_age``
    seconds old; otherwise it probes, and callers arriving while a probe runs
    wait for that one (never two probes at once). Every answer carries when
    the probe ran and how old it is.

    Args:
        probe: Async callable returning the component report
            (:meth:`~pattern_service.app.Application.health`).
    """

    def __init__(self, probe: Callable[[], Awaitable[Mapping[str, Any]]]):
        self._probe = probe
        self._report: Mapping[str, Any] | None = None
        self._at = 0.0  # time.monotonic() of the last probe's start
        self._wall: datetime | None = None
        self._running: asyncio.Task[None] | None = None

    async def get(self, max_age: float) -> dict[str, Any]:
        """The component report, probed at most ``max_age`` seconds ago.

        Returns:
            The probe's report plus ``probed_at`` (ISO 8601 UTC) and
            ``probe_age_seconds`` (how old the result is now).

        Raises:
            Exception: Whatever the probe raised (the next call probes again).
        """
        if self._report is None or time.monotonic() - self._at > max_age:
            if self._running is None:
                self._running = asyncio.ensure_future(self._refresh())
                # Retrieved here too, so a failure whose waiters all went away is not logged as unretrieved.
                self._running.add_done_callback(lambda t: t.cancelled() or t.exception())
            running = self._running
            await asyncio.shield(running)
        assert self._report is not None and self._wall is not None
        return {
            **self._report,
            "probed_at": self._wall.isoformat(),
            "probe_age_seconds": round(max(0.0, time.monotonic() - self._at), 3),
        }

    async def _refresh(self) -> None:
        try:
            at, wall = time.monotonic(), datetime.now(UTC)
            report = await self._probe()
            self._report, self._at, self._wall = report, at, wall
        finally:
            self._running = None


class DrainingHealthServicer(HealthServicer):
    """``grpc.health.v1.Health`` whose ``Watch`` streams end at shutdown.

    The reference servicer keeps every ``Watch`` stream open forever, so an
    open watch (a load balancer, ``grpcurl … Watch``) held a graceful stop for
    its whole grace period. Here :meth:`end_watches` (called by the server
    once health has been ``NOT_SERVING`` for the drain period) ends each watch
    with status ``OK`` right after it has sent ``NOT_SERVING``; a watch opened
    later gets ``NOT_SERVING`` and ends at once. A component outage that turns
    a service ``NOT_SERVING`` while the server runs ends nothing.
    """

    def __init__(self) -> None:
        super().__init__()
        self._ending = False

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        """Stream the service's status on every change; ends after ``NOT_SERVING`` once :meth:`end_watches` ran."""
        # The reference loop, plus the end condition (same bookkeeping, so its _set still notifies us).
        condition = self._server_watchers[request.service]
        self._watcher_count_by_service[request.service] += 1
        last_status = None
        try:
            async with condition:
                while True:
                    status = self._server_status.get(request.service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
                    if status != last_status:
                        await context.write(health_pb2.HealthCheckResponse(status=status))
                    last_status = status
                    if self._ending and status != SERVING:
                        return
                    await condition.wait()
        finally:
            self._watcher_count_by_service[request.service] -= 1
            if self._watcher_count_by_service[request.service] == 0:
                del self._server_watchers[request.service]
                del self._watcher_count_by_service[request.service]

    async def end_watches(self) -> None:
        """Enter graceful shutdown (every service ``NOT_SERVING``) if not yet, and end every ``Watch`` stream."""
        await self.enter_graceful_shutdown()
        self._ending = True
        for condition in list(self._server_watchers.values()):
            async with condition:
                condition.notify_all()


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    """One component's probe result.

    Attributes:
        name: ``sql``, ``vector_index``, ``sync``, ``embedding`` or ``redis``.
        healthy: Whether it answered.
        detail: Error text, or facts (sync: pending rows and lag).
        check_time: When the probe ran (UTC).
    """

    name: str
    healthy: bool
    detail: str
    check_time: datetime


def components_of(report: Mapping[str, Any], when: datetime) -> list[ComponentStatus]:
    """Turn :meth:`Application.health`'s report into component statuses."""
    out: list[ComponentStatus] = []
    for name in COMPONENTS:
        if name not in report:
            continue
        value = report[name]
        if isinstance(value, Mapping):
            error = value.get("error")
            healthy = error is None and bool(value.get("healthy", True))
            facts = ", ".join(f"{k}={v}" for k, v in value.items() if k not in ("error", "healthy"))
            detail = str(error) if error is not None else facts
        else:
            healthy = bool(value)
            detail = str(report.get(f"{name}_error", ""))
        out.append(ComponentStatus(name, healthy, detail, when))
    return out


class HealthMonitor:
    """Probes the components periodically and updates the health servicer.

    Args:
        probe: Async callable returning the component report.
        servicer: The ``grpc.health.v1`` servicer to update.
        requirements: Service name → components it needs to be SERVING.
        overall_follows: The service whose status the overall (``""``) status copies.
        interval: Seconds between probes.
    """

    def __init__(
        self,
        probe: Callable[[], Awaitable[Mapping[str, Any]]],
        servicer: HealthServicer,
        requirements: Mapping[str, frozenset[str]],
        overall_follows: str,
        interval: float = PROBE_INTERVAL,
    ):
        self._probe = probe
        self._servicer = servicer
        self._requirements = requirements
        self._overall = overall_follows
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._status: dict[str, int] = {}
        self.components: list[ComponentStatus] = []

    async def check_once(self) -> list[ComponentStatus]:
        """Probe now, update every service's status, and return the components."""
        now = datetime.now(UTC)
        try:
            components = components_of(await self._probe(), now)
        except Exception as exc:  # the probe itself failed: every backend is in doubt
            log.warning("health probe failed: %s", exc)
            components = [ComponentStatus(name, False, f"probe failed: {exc}", now) for name in COMPONENTS[:4]]
        self.components = components
        healthy = {c.name for c in components if c.healthy}
        for service, needs in self._requirements.items():
            await self._set(service, SERVING if needs <= healthy else NOT_SERVING)
        await self._set("", self._status.get(self._overall, SERVING))
        return components

    async def _set(self, service: str, status: int) -> None:
        if self._status.get(service) == status:
            return
        if service in self._status:
            log.warning(
                "health of %r is now %s",
                service or "<overall>",
                health_pb2.HealthCheckResponse.ServingStatus.Name(status),
            )
        self._status[service] = status
        await self._servicer.set(service, status)

    def start(self) -> None:
        """Start probing in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="health-monitor")

    async def stop(self) -> None:
        """Stop probing (before the servicer enters graceful shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.check_once()
