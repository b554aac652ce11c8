"""Typed exceptions for Pattern Service errors, one class per gRPC status code.

Modelled on ``google.api_core.exceptions``: :class:`PatternServiceError` is the
base; every non-OK gRPC status code has a subclass (:class:`NotFound`,
:class:`InvalidArgument`, ...). :func:`from_grpc_error` and :func:`from_status`
build the right subclass and unpack the rich ``google.rpc`` error details the
server sends in the ``grpc-status-details-bin`` trailer (or, for
``ExecuteMany``, in-band as a ``google.rpc.Status``):

* ``google.rpc.ErrorInfo`` (on every server error; domain ``pattern.tmws.dev``)
  as :attr:`PatternServiceError.error_info`,
* ``google.rpc.BadRequest`` (on ``INVALID_ARGUMENT``) as
  :attr:`PatternServiceError.field_violations`,
* ``google.rpc.RetryInfo`` as :attr:`PatternServiceError.retry_info`,
* ``google.rpc.ResourceInfo`` as :attr:`PatternServiceError.resource_info`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, NamedTuple

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

__all__ = [
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "DataLoss",
    "DeadlineExceeded",
    "ErrorInfo",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PatternServiceError",
    "PermissionDenied",
    "ResourceExhausted",
    "ResourceInfo",
    "RetryInfo",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "exception_class_for_code",
    "from_grpc_error",
    "from_status",
]

_STATUS_DETAILS_KEY = "grpc-status-details-bin"

# Every google.rpc error detail type the client knows how to unpack, by full name.
_DETAIL_TYPES: dict[str, type[Message]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (
        error_details_pb2.ErrorInfo,
        error_details_pb2.BadRequest,
        error_details_pb2.RetryInfo,
        error_details_pb2.ResourceInfo,
        error_details_pb2.DebugInfo,
        error_details_pb2.QuotaFailure,
        error_details_pb2.PreconditionFailure,
        error_details_pb2.RequestInfo,
        error_details_pb2.Help,
        error_details_pb2.LocalizedMessage,
    )
}


class FieldViolation(NamedTuple):
    """One invalid request field, from ``google.rpc.BadRequest.FieldViolation``.

    Attributes:
        field: Path of the invalid field, e.g. ``pattern_definitions[3].trigger_pattern``.
        description: Why the value is invalid.
    """

    field: str
    description: str


class ErrorInfo(NamedTuple):
    """The machine-readable cause of an error, from ``google.rpc.ErrorInfo``.

    Attributes:
        reason: UPPER_SNAKE_CASE reason, e.g. ``PATTERN_NOT_FOUND``.
        domain: The domain of the reason; ``pattern.tmws.dev`` for this service.
        metadata: Additional structured facts about the error.
    """

    reason: str
    domain: str
    metadata: Mapping[str, str]


class RetryInfo(NamedTuple):
    """When a failed request may be retried, from ``google.rpc.RetryInfo``.

    Attributes:
        retry_delay: Seconds the client should wait before retrying.
    """

    retry_delay: float


class ResourceInfo(NamedTuple):
    """The resource an error is about, from ``google.rpc.ResourceInfo``.

    Attributes:
        resource_type: e.g. ``SuccessPattern`` or ``PatternDefinition``.
        resource_name: The id or name of the resource.
        description: What went wrong with the resource.
    """

    resource_type: str
    resource_name: str
    description: str


_CODE_TO_CLASS: dict[grpc.StatusCode, type[_CodedError]] = {}


class PatternServiceError(Exception):
    """Base class of every error a Pattern Service call raises.

    Instances are normally built by :func:`from_grpc_error` or
    :func:`from_status`, which pick the subclass for the status code; catch a
    subclass (e.g. :class:`NotFound`) to handle one code, or this class to
    handle all.

    Args:
        code: The gRPC status code.
        message: The developer-facing error message.
        details: The packed ``google.rpc`` error details of the status.

    Attributes:
        grpc_status_code: The status code a subclass stands for (``None`` on the base class).
    """

    grpc_status_code: ClassVar[grpc.StatusCode | None] = None

    def __init__(self, code: grpc.StatusCode, message: str, details: Iterable[any_pb2.Any] = ()) -> None:
        self._code = code
        self._message = message
        self._details: tuple[any_pb2.Any, ...] = tuple(details)
        super().__init__(message)

    def __str__(self) -> str:
        text = f"{self._code.name}: {self._message}"
        violations = self.field_violations
        if violations:
            text += " [" + "; ".join(f"{v.field}: {v.description}" for v in violations) + "]"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._code.name}, {self._message!r}, details={len(self._details)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self._code, self._message, [d.SerializeToString() for d in self._details]))

    @property
    def code(self) -> grpc.StatusCode:
        """The gRPC status code."""
        return self._code

    @property
    def message(self) -> str:
        """The developer-facing error message."""
        return self._message

    @property
    def details(self) -> tuple[any_pb2.Any, ...]:
        """The raw, packed ``google.rpc`` error details (``google.protobuf.Any``)."""
        return self._details

    @property
    def status(self) -> status_pb2.Status:
        """The error as a ``google.rpc.Status`` message."""
        return status_pb2.Status(code=self._code.value[0], message=self._message, details=self._details)

    @property
    def unpacked_details(self) -> list[Message]:
        """The error details of known ``google.rpc`` types, unpacked; unknown types are skipped."""
        unpacked: list[Message] = []
        for packed in self._details:
            detail_type = _DETAIL_TYPES.get(packed.TypeName())
            if detail_type is None:
                continue
            message = detail_type()
            try:
                packed.Unpack(message)
            except DecodeError:  # pragma: no cover - a corrupt detail is skipped
                continue
            unpacked.append(message)
        return unpacked

    @property
    def field_violations(self) -> list[FieldViolation]:
        """Every invalid field from ``google.rpc.BadRequest`` details (empty if none)."""
        return [
            FieldViolation(v.field, v.description)
            for detail in self.unpacked_details
            if isinstance(detail, error_details_pb2.BadRequest)
            for v in detail.field_violations
        ]

    @property
    def error_info(self) -> ErrorInfo | None:
        """The first ``google.rpc.ErrorInfo`` detail, or ``None`` if there is none."""
        for detail in self.unpacked_details:
            if isinstance(detail, error_details_pb2.ErrorInfo):
                return ErrorInfo(detail.reason, detail.domain, dict(detail.metadata))
        return None

    @property
    def reason(self) -> str | None:
        """``error_info.reason``, or ``None`` without ``ErrorInfo``."""
        info = self.error_info
        return info.reason if info is not None else None

    @property
    def domain(self) -> str | None:
        """``error_info.domain``, or ``None`` without ``ErrorInfo``."""
        info = self.error_info
        return info.domain if info is not None else None

    @property
    def retry_info(self) -> RetryInfo | None:
        """The first ``google.rpc.RetryInfo`` detail, or ``None`` if there is none."""
        for detail in self.unpacked_details:
            if isinstance(detail, error_details_pb2.RetryInfo):
                return RetryInfo(detail.retry_delay.ToTimedelta().total_seconds())
        return None

    @property
    def retry_delay(self) -> float | None:
        """``retry_info.retry_delay`` in seconds, or ``None`` without ``RetryInfo``."""
        info = self.retry_info
        return info.retry_delay if info is not None else None

    @property
    def resource_info(self) -> ResourceInfo | None:
        """The first ``google.rpc.ResourceInfo`` detail, or ``None`` if there is none."""
        for detail in self.unpacked_details:
            if isinstance(detail, error_details_pb2.ResourceInfo):
                return ResourceInfo(detail.resource_type, detail.resource_name, detail.description)
        return None


class _CodedError(PatternServiceError):
    """A :class:`PatternServiceError` subclass bound to one status code."""

    def __init__(self, message: str, details: Iterable[any_pb2.Any] = ()) -> None:
        """Create the error.

        Args:
            message: The developer-facing error message.
            details: The packed ``google.rpc`` error details.
        """
        assert self.grpc_status_code is not None
        super().__init__(self.grpc_status_code, message, details)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.grpc_status_code is not None:
            _CODE_TO_CLASS.setdefault(cls.grpc_status_code, cls)


class Cancelled(_CodedError):
    """The call was cancelled, typically by the caller (``CANCELLED``)."""

    grpc_status_code = grpc.StatusCode.CANCELLED


class Unknown(_CodedError):
    """An unknown error (``UNKNOWN``); also used for codes this client does not know."""

    grpc_status_code = grpc.StatusCode.UNKNOWN


class InvalidArgument(_CodedError):
    """The request is invalid and nothing was changed (``INVALID_ARGUMENT``).

    :attr:`~PatternServiceError.field_violations` lists every invalid field.
    """

    grpc_status_code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(_CodedError):
    """The deadline expired before the call completed (``DEADLINE_EXCEEDED``)."""

    grpc_status_code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(_CodedError):
    """The named resource does not exist (``NOT_FOUND``)."""

    grpc_status_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(_CodedError):
    """The resource to create already exists (``ALREADY_EXISTS``)."""

    grpc_status_code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(_CodedError):
    """The caller may not perform the operation (``PERMISSION_DENIED``)."""

    grpc_status_code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(_CodedError):
    """A quota or limit was exhausted (``RESOURCE_EXHAUSTED``); see :attr:`~PatternServiceError.retry_info`."""

    grpc_status_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(_CodedError):
    """The system is not in a state the operation requires (``FAILED_PRECONDITION``)."""

    grpc_status_code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(_CodedError):
    """The operation was aborted, typically by a concurrency conflict (``ABORTED``)."""

    grpc_status_code = grpc.StatusCode.ABORTED


class OutOfRange(_CodedError):
    """The operation went past the valid range (``OUT_OF_RANGE``)."""

    grpc_status_code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(_CodedError):
    """The server does not implement the operation (``UNIMPLEMENTED``)."""

    grpc_status_code = grpc.StatusCode.UNIMPLEMENTED


class Internal(_CodedError):
    """An internal server error (``INTERNAL``)."""

    grpc_status_code = grpc.StatusCode.INTERNAL


class Unavailable(_CodedError):
    """The service is unavailable; retry with backoff (``UNAVAILABLE``)."""

    grpc_status_code = grpc.StatusCode.UNAVAILABLE


class DataLoss(_CodedError):
    """Unrecoverable data loss or corruption (``DATA_LOSS``)."""

    grpc_status_code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(_CodedError):
    """The request lacks valid credentials (``UNAUTHENTICATED``)."""

    grpc_status_code = grpc.StatusCode.UNAUTHENTICATED


def exception_class_for_code(code: grpc.StatusCode | int) -> type[PatternServiceError]:
    """Return the exception class for a gRPC status code.

    Args:
        code: A :class:`grpc.StatusCode` or its integer value (``google.rpc.Code``).

    Returns:
        The :class:`PatternServiceError` subclass for the code; :class:`Unknown`
        for a code without one (including ``OK``).
    """
    status_code = _status_code(code) if isinstance(code, int) else code
    return _CODE_TO_CLASS.get(status_code, Unknown)


def _status_code(value: int) -> grpc.StatusCode:
    for status_code in grpc.StatusCode:
        if status_code.value[0] == value:
            return status_code
    return grpc.StatusCode.UNKNOWN


def _make(code: grpc.StatusCode, message: str, details: Iterable[any_pb2.Any]) -> PatternServiceError:
    cls = _CODE_TO_CLASS.get(code)
    if cls is None:
        return PatternServiceError(code, message, details)
    return cls(message, details)


def _rebuild(code: grpc.StatusCode, message: str, details: list[bytes]) -> PatternServiceError:
    return _make(code, message, [any_pb2.Any.FromString(raw) for raw in details])


def from_status(status: status_pb2.Status) -> PatternServiceError:
    """Build the typed exception for a ``google.rpc.Status``.

    Used for the in-band statuses of ``ExecuteMany`` responses.

    Args:
        status: A non-OK status with its packed details.

    Returns:
        An instance of the :class:`PatternServiceError` subclass for
        ``status.code`` carrying the message and details.
    """
    return _make(_status_code(status.code), status.message, status.details)


def from_grpc_error(exc: grpc.aio.AioRpcError | grpc.RpcError) -> PatternServiceError:
    """Build the typed exception for a failed gRPC call.

    The rich ``google.rpc.Status`` is read from the ``grpc-status-details-bin``
    trailer (with :func:`grpc_status.rpc_status.from_call`); without one, the
    call's code and message are used with no details.

    Args:
        exc: The error raised by a ``grpc.aio`` call (or a synchronous
            ``grpc.RpcError`` that is also a ``grpc.Call``).

    Returns:
        An instance of the :class:`PatternServiceError` subclass for the call's
        status code.
    """
    code: grpc.StatusCode = getattr(exc, "code", lambda: grpc.StatusCode.UNKNOWN)() or grpc.StatusCode.UNKNOWN
    message: str = getattr(exc, "details", lambda: "")() or ""
    status: status_pb2.Status | None
    try:
        status = rpc_status.from_call(exc)
    except ValueError:
        # The trailer disagrees with the call status (e.g. a proxy rewrote it):
        # the call status wins, the details are still worth having.
        status = _status_from_trailers(exc)
    except Exception:  # pragma: no cover - not a grpc.Call at all
        status = None
    details = status.details if status is not None else ()
    return _make(code, message, details)


def _status_from_trailers(exc: object) -> status_pb2.Status | None:
    trailers = getattr(exc, "trailing_metadata", lambda: None)()
    for key, value in trailers or ():
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except DecodeError:
                return None
    return None
