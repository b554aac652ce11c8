"""The error mapping (one place) and page tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2

from pattern_service import errors
from pattern_service.api import paging, success_patterns
from pattern_service.api.status import ERROR_DOMAIN, to_rpc_status
from pattern_service.domain import KeysetCursor, Page
from tmws.pattern.v1 import ListSuccessPatternsRequest


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


def _list_query(tenant: str = "tenant-a", token: str = "", **fields: Any) -> success_patterns.ListQuery:
    return success_patterns.list_query(ListSuccessPatternsRequest(page_token=token, **fields), tenant)


@pytest.mark.parametrize("bad", ["garbage!!", "e30", "eyJjIjoxfQ", "%%%", paging.encode_token(3, "x")])
def test_a_malformed_list_token_is_refused_before_the_store(bad: str) -> None:
    with pytest.raises(errors.InvalidArgumentError) as info:
        _list_query(token=bad)
    assert [v.field for v in info.value.violations] == ["page_token"]
    assert info.value.reason == paging.INVALID_PAGE_TOKEN


def test_a_list_token_continues_only_its_own_query_and_tenant() -> None:
    cursor = KeysetCursor(created_at=datetime(2026, 1, 2, 3, 4, 5, 678901), id="8c0f6a1e-0000-4000-8000-000000000001")
    first = _list_query(tags=["redis"], parent_pattern_id="8c0f6a1e-0000-4000-8000-000000000002")
    assert first.after is None
    token = first.next_page_token(Page(items=[], next_cursor=cursor, total_size=3))
    same = _list_query(token=token, tags=["redis"], parent_pattern_id="8c0f6a1e-0000-4000-8000-000000000002")
    assert same.after == cursor
    assert first.next_page_token(Page(items=[], next_cursor=None, total_size=3)) == ""  # the last page
    for other in (
        {"tags": ["redis", "cache"]},  # another filter
        {"tags": ["redis"]},  # a filter dropped
        {"tags": ["redis"], "parent_pattern_id": "8c0f6a1e-0000-4000-8000-000000000002", "statuses": [1]},
        {"tags": ["redis"], "parent_pattern_id": "8c0f6a1e-0000-4000-8000-000000000002", "pattern_type": "x"},
        {"tenant": "tenant-b", "tags": ["redis"], "parent_pattern_id": "8c0f6a1e-0000-4000-8000-000000000002"},
    ):
        with pytest.raises(errors.InvalidArgumentError) as info:
            _list_query(token=token, **other)
        assert info.value.violations[0].field == "page_token"


def test_field_violations_come_before_the_token_check() -> None:
    with pytest.raises(errors.InvalidArgumentError) as info:
        _list_query(token="garbage!!", page_size=-1)
    assert [v.field for v in info.value.violations] == ["page_size"]
