"""The error mapping (one place) and page tokens."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from pattern_service import errors
from pattern_service.api import paging
from pattern_service.api.status import ERROR_DOMAIN, to_rpc_status


def _detail(status, cls):  # type: ignore[no-untyped-def]
    for any_msg in status.details:
        msg = cls()
        if any_msg.Unpack(msg):
            return msg
    return None


def test_invalid_argument_carries_every_field_violation_and_error_info() -> None:
    exc = errors.InvalidArgumentError(
        [errors.FieldViolation("query", "must not be empty"), errors.FieldViolation("limit", "too big")]
    )
    st = to_rpc_status(exc)
    assert st.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    bad = _detail(st, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("query", "must not be empty"),
        ("limit", "too big"),
    ]
    info = _detail(st, error_details_pb2.ErrorInfo)
    assert info.domain == ERROR_DOMAIN and info.reason == "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    ("exc", "code", "detail"),
    [
        (errors.NotFoundError("SuccessPattern", "x"), grpc.StatusCode.NOT_FOUND, error_details_pb2.ResourceInfo),
        (
            errors.AlreadyExistsError("SuccessPattern", "x"),
            grpc.StatusCode.ALREADY_EXISTS,
            error_details_pb2.ResourceInfo,
        ),
        (errors.UnavailableError("db down"), grpc.StatusCode.UNAVAILABLE, error_details_pb2.RetryInfo),
        (errors.FailedPreconditionError("mode"), grpc.StatusCode.FAILED_PRECONDITION, error_details_pb2.ErrorInfo),
    ],
)
def test_codes_and_details(exc: Exception, code: grpc.StatusCode, detail: type) -> None:
    st = to_rpc_status(exc)
    assert st.code == code.value[0]
    assert _detail(st, detail) is not None


def test_unexpected_errors_are_internal_without_leaking_the_message() -> None:
    st = to_rpc_status(RuntimeError("secret path /etc/x"))
    assert st.code == grpc.StatusCode.INTERNAL.value[0]
    assert "secret" not in st.message


def test_page_tokens_round_trip_and_are_bound_to_their_query() -> None:
    token = paging.encode_token(50, "definitions:None")
    assert paging.decode_token(token, "definitions:None") == 50
    assert paging.decode_token("", "anything") == 0
    with pytest.raises(errors.InvalidArgumentError) as info:
        paging.decode_token(token, "definitions:memory")
    assert info.value.violations[0].field == "page_token"
    with pytest.raises(errors.InvalidArgumentError):
        paging.decode_token("!!not-base64!!", "definitions:None")
