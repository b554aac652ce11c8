"""NaN and ±Infinity inside any google.protobuf.Struct of a request: INVALID_ARGUMENT, nothing stored.

JSON has no NaN or Infinity: PostgreSQL's JSONB refuses them (the call used to end
``INTERNAL``) and SQLite's JSON stored them as ``null`` (the value silently changed).
Every RPC whose request holds a Struct refuses them alike, on every backend, with a
``BadRequest`` field violation naming the path of the number inside the Struct.
:func:`test_every_struct_of_every_request_is_covered` keeps this list complete.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor, field_mask_pb2, struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from pattern_service.server import PatternServer
from tmws.pattern.v1 import memory_service_pb2 as pm
from tmws.pattern.v1 import memory_service_pb2_grpc as pm_grpc
from tmws.pattern.v1 import pattern_execution_service_pb2 as pe
from tmws.pattern.v1 import pattern_execution_service_pb2_grpc as pe_grpc
from tmws.pattern.v1 import pattern_learning_service_pb2 as pl
from tmws.pattern.v1 import pattern_learning_service_pb2_grpc as pl_grpc

NON_FINITE = [math.nan, math.inf, -math.inf]
SUCCESS_STRUCTS = ("execution_trace", "success_criteria", "quality_metrics", "performance_data", "context")

#: (RPC, request path of every Struct its request holds) — what the tests below cover.
COVERED = {
    "Execute": {"context"},
    "ExecuteMany": {"context"},
    "Route": {"context"},
    "RegisterBatch": {"pattern_definitions[].metadata"},
    "CreateSuccessPattern": {f"success_pattern.{name}" for name in SUCCESS_STRUCTS},
    "UpdateSuccessPattern": {f"success_pattern.{name}" for name in SUCCESS_STRUCTS},
    "CreateMemory": {"memory.metadata"},
    "BatchCreateMemories": {"requests[].memory.metadata"},
    "UpdateMemory": {"memory.metadata"},
}


def struct(data: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(data)
    return s


def violations(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    return [v.field for v in _bad_requests(status.details)]


def _bad_requests(details: Any) -> list[Any]:
    found = []
    for detail in details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.extend(bad.field_violations)
    return found


async def refused(call: Any, request: Any) -> list[str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    return violations(info.value)


@pytest.fixture
async def channel(server: PatternServer) -> Any:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


def _pattern(**structs: dict[str, Any]) -> pl.SuccessPattern:
    msg = pl.SuccessPattern(pattern_type="api_optimization", name="Connection pooling", description="pool it")
    for name, data in structs.items():
        getattr(msg, name).CopyFrom(struct(data))
    return msg


@pytest.mark.parametrize("bad", NON_FINITE, ids=str)
async def test_execution_requests_refuse_non_finite_numbers(
    server: PatternServer, channel: grpc.aio.Channel, bad: float
) -> None:
    stub = pe_grpc.PatternExecutionServiceStub(channel)
    execute = pe.ExecuteRequest(query="store note about pools", context=struct({"weights": [1, bad]}))
    assert await refused(stub.Execute, execute) == ["context.weights[1]"]
    route = pe.RouteRequest(query="calculate 1 + 1", context=struct({"a": {"b c": bad}}))
    assert await refused(stub.Route, route) == ['context.a["b c"]']

    stream = stub.ExecuteMany(
        iter([pe.ExecuteManyRequest(request_id="1", query="calculate 1 + 1", context=struct({"x": bad}))])
    )
    items = [item async for item in stream]
    assert len(items) == 1 and items[0].status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert [v.field for v in _bad_requests(items[0].status.details)] == ["context.x"]

    definition = pe.PatternDefinition(
        name="nan_probe", pattern_type=pe.PATTERN_TYPE_INFRASTRUCTURE, trigger_pattern=r"\bnan probe\b"
    )
    definition.metadata.CopyFrom(struct({"tool": "echo", "score": bad}))
    register = pe.RegisterBatchRequest(pattern_definitions=[definition])
    # (the engine's own definition check also calls the metadata no JSON object)
    assert "pattern_definitions[0].metadata.score" in await refused(stub.RegisterBatch, register)
    names = {d.name for d in server.app.engine.registry.definitions()}
    assert "nan_probe" not in names
    assert await server.app.memory_store.count("default") == 0  # the refused "store" wrote nothing


@pytest.mark.parametrize("bad", NON_FINITE, ids=str)
async def test_success_pattern_requests_refuse_non_finite_numbers(
    server: PatternServer, channel: grpc.aio.Channel, bad: float
) -> None:
    stub = pl_grpc.PatternLearningServiceStub(channel)
    for name in SUCCESS_STRUCTS:
        create = pl.CreateSuccessPatternRequest(success_pattern=_pattern(**{name: {"m": {"v": [bad]}}}))
        assert await refused(stub.CreateSuccessPattern, create) == [f"success_pattern.{name}.m.v[0]"]
    listed = await stub.ListSuccessPatterns(pl.ListSuccessPatternsRequest(), timeout=30)
    assert list(listed.success_patterns) == []  # nothing was stored

    created = await stub.CreateSuccessPattern(
        pl.CreateSuccessPatternRequest(success_pattern=_pattern(quality_metrics={"accuracy": 0.9})), timeout=30
    )
    pattern_id = created.success_pattern.pattern_id
    for name in SUCCESS_STRUCTS:
        change = _pattern(**{name: {"accuracy": bad}})
        change.pattern_id = pattern_id
        update = pl.UpdateSuccessPatternRequest(
            success_pattern=change, update_mask=field_mask_pb2.FieldMask(paths=[name])
        )
        assert await refused(stub.UpdateSuccessPattern, update) == [f"success_pattern.{name}.accuracy"]
    got = await stub.GetSuccessPattern(pl.GetSuccessPatternRequest(pattern_id=pattern_id), timeout=30)
    assert dict(got.success_pattern.quality_metrics) == {"accuracy": 0.9}  # unchanged


def _struct_paths(message: descriptor.Descriptor, prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for field in message.fields:
        kind = field.message_type
        if kind is None:
            continue
        path = prefix + field.name + ("[]" if field.is_repeated else "")
        if kind.full_name in ("google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"):
            paths.add(path)
        elif kind.file.package == "tmws.pattern.v1" and kind is not message:
            paths |= _struct_paths(kind, path + ".")
    return paths


def test_every_struct_of_every_request_is_covered() -> None:
    """A new RPC (or field) taking a Struct, in any service of the package, must be added above."""
    import tmws.pattern.v1 as package

    found = {}
    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.endswith("_pb2"):
            continue
        file = importlib.import_module(f"{package.__name__}.{module.name}").DESCRIPTOR
        for service in file.services_by_name.values():
            for method in service.methods:
                paths = _struct_paths(method.input_type)
                if paths:
                    found[method.name] = paths
    assert found == COVERED


@pytest.mark.parametrize("bad", NON_FINITE, ids=str)
async def test_memory_requests_refuse_non_finite_numbers(
    server: PatternServer, channel: grpc.aio.Channel, bad: float
) -> None:
    stub = pm_grpc.MemoryServiceStub(channel)
    memory = pm.Memory(content="the ledger closes nightly", metadata=struct({"w": [1, bad]}))
    assert await refused(stub.CreateMemory, pm.CreateMemoryRequest(memory=memory)) == ["memory.metadata.w[1]"]
    good = pm.CreateMemoryRequest(memory=pm.Memory(content="the ledger closes at midnight"))
    batch = pm.BatchCreateMemoriesRequest(requests=[good, pm.CreateMemoryRequest(memory=memory)])
    assert await refused(stub.BatchCreateMemories, batch) == ["requests[1].memory.metadata.w[1]"]
    assert await server.app.memory_store.count("default") == 0  # the batch is atomic: nothing stored

    created = await stub.CreateMemory(
        pm.CreateMemoryRequest(memory=pm.Memory(content="kept", metadata=struct({"k": 1}))), timeout=30
    )
    change = pm.Memory(memory_id=created.memory.memory_id, metadata=struct({"k": bad}))
    update = pm.UpdateMemoryRequest(memory=change, update_mask=field_mask_pb2.FieldMask(paths=["metadata"]))
    assert await refused(stub.UpdateMemory, update) == ["memory.metadata.k"]
    got = await stub.GetMemory(pm.GetMemoryRequest(memory_id=created.memory.memory_id), timeout=30)
    assert dict(got.memory.metadata) == {"k": 1}  # unchanged
