"""Error statuses become typed exceptions with their google.rpc details unpacked."""

from __future__ import annotations

import pickle

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

import tmws.pattern.client as pc
from fake_pattern_server import DOMAIN, TestServer, pack, rich_status
from tmws.pattern.client import PatternClient

EXPECTED_CLASSES = {
    grpc.StatusCode.CANCELLED: pc.Cancelled,
    grpc.StatusCode.UNKNOWN: pc.Unknown,
    grpc.StatusCode.INVALID_ARGUMENT: pc.InvalidArgument,
    grpc.StatusCode.DEADLINE_EXCEEDED: pc.DeadlineExceeded,
    grpc.StatusCode.NOT_FOUND: pc.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: pc.AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: pc.PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: pc.ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: pc.FailedPrecondition,
    grpc.StatusCode.ABORTED: pc.Aborted,
    grpc.StatusCode.OUT_OF_RANGE: pc.OutOfRange,
    grpc.StatusCode.UNIMPLEMENTED: pc.Unimplemented,
    grpc.StatusCode.INTERNAL: pc.Internal,
    grpc.StatusCode.UNAVAILABLE: pc.Unavailable,
    grpc.StatusCode.DATA_LOSS: pc.DataLoss,
    grpc.StatusCode.UNAUTHENTICATED: pc.Unauthenticated,
}


def test_one_class_per_non_ok_code() -> None:
    assert set(EXPECTED_CLASSES) == set(grpc.StatusCode) - {grpc.StatusCode.OK}
    for code, cls in EXPECTED_CLASSES.items():
        assert pc.exception_class_for_code(code) is cls
        assert pc.exception_class_for_code(code.value[0]) is cls
        assert cls.grpc_status_code is code
        assert issubclass(cls, pc.PatternServiceError)
    assert pc.exception_class_for_code(99) is pc.Unknown


@pytest.mark.parametrize("code", list(EXPECTED_CLASSES), ids=lambda c: c.name)
async def test_status_code_maps_to_typed_exception(
    client: PatternClient, server: TestServer, code: grpc.StatusCode
) -> None:
    server.recorder.errors["GetStats"] = rich_status(code, f"failed with {code.name}", reason=f"R_{code.name}")
    with pytest.raises(EXPECTED_CLASSES[code]) as caught:
        await client.get_stats()
    err = caught.value
    assert err.code is code
    assert err.message == f"failed with {code.name}"
    assert err.error_info == pc.ErrorInfo(f"R_{code.name}", DOMAIN, {"k": "v"})
    assert err.reason == f"R_{code.name}"
    assert err.domain == DOMAIN
    assert isinstance(err.__cause__, grpc.aio.AioRpcError)
    assert str(err).startswith(f"{code.name}: failed with {code.name}")


async def test_invalid_argument_field_violations(client: PatternClient, server: TestServer) -> None:
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="query", description="must not be empty"),
            error_details_pb2.BadRequest.FieldViolation(field="context.limit", description="must be 1-100"),
        ]
    )
    server.recorder.errors["Execute"] = rich_status(
        grpc.StatusCode.INVALID_ARGUMENT, "2 invalid fields", bad_request, reason="INVALID_ARGUMENT"
    )
    with pytest.raises(pc.InvalidArgument) as caught:
        await client.execute(" ")
    err = caught.value
    assert err.field_violations == [
        pc.FieldViolation("query", "must not be empty"),
        pc.FieldViolation("context.limit", "must be 1-100"),
    ]
    assert [tuple(v) for v in err.field_violations] == [
        ("query", "must not be empty"),
        ("context.limit", "must be 1-100"),
    ]
    assert err.error_info is not None and err.error_info.reason == "INVALID_ARGUMENT"
    assert len(err.details) == 2
    assert err.details[1].Is(error_details_pb2.BadRequest.DESCRIPTOR)
    assert "query: must not be empty" in str(err)
    assert err.retry_info is None and err.retry_delay is None


async def test_retry_info_and_resource_info(client: PatternClient, server: TestServer) -> None:
    server.recorder.errors["Execute"] = rich_status(
        grpc.StatusCode.UNAVAILABLE,
        "store unavailable",
        error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1, nanos=500_000_000)),
    )
    with pytest.raises(pc.Unavailable) as caught:
        await client.execute("q")
    assert caught.value.retry_info == pc.RetryInfo(1.5)
    assert caught.value.retry_delay == 1.5

    server.recorder.errors["GetSuccessPattern"] = rich_status(
        grpc.StatusCode.NOT_FOUND,
        "no such pattern",
        error_details_pb2.ResourceInfo(resource_type="SuccessPattern", resource_name="id-9", description="gone"),
        reason="SUCCESS_PATTERN_NOT_FOUND",
    )
    with pytest.raises(pc.NotFound) as nf:
        await client.get_success_pattern("id-9")
    assert nf.value.resource_info == pc.ResourceInfo("SuccessPattern", "id-9", "gone")
    assert nf.value.reason == "SUCCESS_PATTERN_NOT_FOUND"
    assert [type(d).__name__ for d in nf.value.unpacked_details] == ["ErrorInfo", "ResourceInfo"]


async def test_error_without_rich_details(client: PatternClient, server: TestServer) -> None:
    server.recorder.plain_errors["Route"] = (grpc.StatusCode.PERMISSION_DENIED, "nope")
    with pytest.raises(pc.PermissionDenied) as caught:
        await client.route("q")
    assert caught.value.message == "nope"
    assert caught.value.details == ()
    assert caught.value.error_info is None
    assert caught.value.field_violations == []


async def test_client_side_deadline_exceeded(client: PatternClient, server: TestServer) -> None:
    server.recorder.delays["Execute"] = 2.0
    with pytest.raises(pc.DeadlineExceeded) as caught:
        await client.execute("slow", timeout=0.2)
    assert caught.value.code is grpc.StatusCode.DEADLINE_EXCEEDED


async def test_unreachable_server_is_unavailable() -> None:
    async with PatternClient.connect("127.0.0.1:1", default_timeout=2) as c:
        with pytest.raises(pc.Unavailable):
            await c.get_stats()
        with pytest.raises(pc.Unavailable, match="could not connect"):
            await c.wait_until_ready(timeout=0.2)


def test_from_status_and_pickle() -> None:
    status = status_pb2.Status(
        code=grpc.StatusCode.ALREADY_EXISTS.value[0],
        message="name taken",
        details=[pack(error_details_pb2.ErrorInfo(reason="ALREADY_EXISTS", domain=DOMAIN))],
    )
    err = pc.from_status(status)
    assert isinstance(err, pc.AlreadyExists)
    assert err.status == status
    copy = pickle.loads(pickle.dumps(err))
    assert isinstance(copy, pc.AlreadyExists)
    assert copy.status == status
    assert copy.reason == "ALREADY_EXISTS"


def test_constructors() -> None:
    err = pc.NotFound("missing")
    assert err.code is grpc.StatusCode.NOT_FOUND and err.message == "missing" and err.details == ()
    base = pc.PatternServiceError(grpc.StatusCode.INTERNAL, "boom")
    assert base.code is grpc.StatusCode.INTERNAL
    assert pc.from_status(status_pb2.Status(code=42, message="?")).code is grpc.StatusCode.UNKNOWN
