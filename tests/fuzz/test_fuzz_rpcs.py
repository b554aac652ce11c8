"""Fuzz every RPC with random and malformed requests (hypothesis).

Each RPC gets structured messages with hostile field values (huge and empty
strings, random enum numbers, out-of-range numbers, hostile regexes, deeply
nested and huge context structs) and raw request bytes that may not parse
(random bytes, corrupted messages, string fields with invalid UTF-8), sent
through a generic channel with identity serializers. For every call:

- the status is never ``INTERNAL``/``UNKNOWN`` (nor a hang or a crash:
  ``DEADLINE_EXCEEDED``/``UNAVAILABLE``), in-band ``ExecuteMany`` statuses included;
- a rejected call leaves the store as it was (definitions, success
  patterns, memories and the caller's statistics compared before and after);
- the server's event loop never stalls: the largest CPU-time gap between
  wake-ups of a monitor task in the server's loop stays under 100 ms while
  a request is handled; a request over the bound is sent again, and the test
  fails when every one of :data:`STALL_ATTEMPTS` sends stalls the loop (see
  :mod:`fuzz_helpers` for why CPU time is asserted and why a stall must repeat).

``TMWS_FUZZ_EXAMPLES`` sets the examples per RPC (default 100). The examples
are derandomized (the same on every run, so CI is reproducible); set
``TMWS_FUZZ_RANDOM=1`` to explore new ones.
"""

from __future__ import annotations

import os
import pathlib
import warnings
from collections.abc import Iterator

import grpc
import pytest
from fuzz_helpers import ThreadedServer, messages, raw_requests
from google.protobuf import descriptor as pb_descriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tmws.pattern.v1 import memory_service_pb2 as pm
from tmws.pattern.v1 import pattern_execution_service_pb2 as pe
from tmws.pattern.v1 import pattern_execution_service_pb2_grpc as pe_grpc
from tmws.pattern.v1 import pattern_learning_service_pb2 as pl
from tmws.pattern.v1 import pattern_learning_service_pb2_grpc as pl_grpc

EXAMPLES = int(os.environ.get("TMWS_FUZZ_EXAMPLES", "100"))
RANDOM = os.environ.get("TMWS_FUZZ_RANDOM", "") not in ("", "0")
MAX_LOOP_STALL_S = 0.100
STALL_ATTEMPTS = 3  # sends of a request that stalled the loop; all must stall to fail the test
CALL_TIMEOUT_S = 120.0  # a hang guard: a call that needs it fails the test as DEADLINE_EXCEEDED
MESSAGE_LIMIT = 64 * 1024 * 1024

FORBIDDEN = {
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNIMPLEMENTED,
}
FORBIDDEN_NUMBERS = {code.value[0] for code in FORBIDDEN}

SERVICES = (
    pe.DESCRIPTOR.services_by_name["PatternExecutionService"],
    pl.DESCRIPTOR.services_by_name["PatternLearningService"],
    pm.DESCRIPTOR.services_by_name["MemoryService"],
)
METHODS = {f"/{s.full_name}/{m.name}": m for s in SERVICES for m in s.methods}


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    """One server for the module (hashing embedder), on its own loop thread."""
    srv = ThreadedServer(pathlib.Path(tmp_path_factory.mktemp("fuzz")) / "data", embedder="hashing")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def channel(fuzz_server: ThreadedServer) -> Iterator[grpc.Channel]:
    assert fuzz_server.server is not None
    options = [("grpc.max_send_message_length", MESSAGE_LIMIT), ("grpc.max_receive_message_length", MESSAGE_LIMIT)]
    with grpc.insecure_channel(f"127.0.0.1:{fuzz_server.server.port}", options=options) as ch:
        yield ch


def snapshot(channel: grpc.Channel, fuzz_server: ThreadedServer) -> tuple[bytes, ...]:
    """What a rejected call must not change: definitions, success patterns, memories, statistics."""
    assert fuzz_server.server is not None
    execution, learning = pe_grpc.PatternExecutionServiceStub(channel), pl_grpc.PatternLearningServiceStub(channel)
    definitions = execution.ListPatternDefinitions(pe.ListPatternDefinitionsRequest(page_size=1000), timeout=60)
    patterns = learning.ListSuccessPatterns(pl.ListSuccessPatternsRequest(page_size=1000), timeout=60)
    stats = execution.GetStats(pe.GetStatsRequest(), timeout=60)
    memories = fuzz_server.call(fuzz_server.server.app.memory_store.count("default"))
    return (
        definitions.SerializeToString(deterministic=True),
        patterns.SerializeToString(deterministic=True),
        stats.engine.SerializeToString(deterministic=True),
        stats.router.SerializeToString(deterministic=True),
        f"{stats.registry.registry_version}/{stats.registry.total_patterns}/{memories}".encode(),
    )


def _call(channel: grpc.Channel, path: str, method: pb_descriptor.MethodDescriptor, payloads: list[bytes]) -> bool:
    """Send ``payloads``; returns whether anything was accepted (so the store may have changed).

    A stream counts as accepted when any item got a result, even if a later
    (e.g. undecodable) message ended the stream: the items answered before it
    ran for real. Asserts no forbidden status, in-band ones included.
    """
    answered = False
    try:
        if method.client_streaming:
            call = channel.stream_stream(path)(iter(payloads), timeout=CALL_TIMEOUT_S)
            for raw in call:
                item = pe.ExecuteManyResponse.FromString(raw)
                answered = answered or item.HasField("result")
                if item.HasField("status"):
                    assert item.status.code not in FORBIDDEN_NUMBERS, item.status
        else:
            channel.unary_unary(path)(payloads[0], timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as exc:
        assert exc.code() not in FORBIDDEN, f"{path}: {exc.code()} {exc.details()}"
        return answered
    return True


def _payload(data: st.DataObject, method: pb_descriptor.MethodDescriptor) -> bytes:
    if data.draw(st.integers(0, 3), label="raw?") == 0:
        return data.draw(raw_requests(method.input_type), label="raw request")
    return data.draw(messages(method.input_type), label="request").SerializeToString()


@pytest.mark.parametrize("path", sorted(METHODS))
def test_fuzz_rpc(path: str, channel: grpc.Channel, fuzz_server: ThreadedServer) -> None:
    method = METHODS[path]
    fuzz_server.monitor.reset()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not RANDOM,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        count = data.draw(st.integers(1, 6), label="stream length") if method.client_streaming else 1
        payloads = [_payload(data, method) for _ in range(count)]
        before = snapshot(channel, fuzz_server)
        accepted, cpu, wall = fuzz_server.measure(lambda: _call(channel, path, method, payloads))
        if not accepted:
            assert snapshot(channel, fuzz_server) == before, f"a rejected {path} call changed the store"
        stalls = [(cpu, wall)]
        while cpu >= MAX_LOOP_STALL_S and len(stalls) < STALL_ATTEMPTS:
            _, cpu, wall = fuzz_server.measure(lambda: _call(channel, path, method, payloads))
            stalls.append((cpu, wall))
        assert min(c for c, _ in stalls) < MAX_LOOP_STALL_S, (
            f"{path}: every send of this request blocked the loop over {MAX_LOOP_STALL_S * 1000:.0f} ms: "
            + ", ".join(f"{c * 1000:.0f} ms (wall {w * 1000:.0f} ms)" for c, w in stalls)
            + f"; longest GC pause {fuzz_server.monitor.max_gc_pause * 1000:.0f} ms"
        )
        if len(stalls) > 1:
            unconfirmed.append(stalls[0][0])

    unconfirmed: list[float] = []
    one()

    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=60)
    assert health.status == health_pb2.HealthCheckResponse.SERVING  # no crash
    monitor = fuzz_server.monitor
    if unconfirmed:
        warnings.warn(
            f"{path}: {len(unconfirmed)} loop gap(s) over the bound did not repeat when the request was sent "
            f"again (largest {max(unconfirmed) * 1000:.0f} ms): the machine, not the request",
            stacklevel=1,
        )
    print(
        f"{path}: largest loop gap {monitor.max_cpu_gap * 1000:.0f} ms CPU, {monitor.max_wall_gap * 1000:.0f} ms wall"
    )
