"""Domain errors of the engine and the stores.

Every error the service reports to a caller is one of these; the API layer
(:mod:`pattern_service.api.status`) is the one place that maps them to gRPC
status codes and ``google.rpc`` details. Each error carries a machine-readable
``reason`` (``google.rpc.ErrorInfo.reason``, UPPER_SNAKE_CASE per AIP-193).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid field of a request.

    Attributes:
        field: Path of the field in the request, dotted and indexed as in
            ``google.rpc.BadRequest.FieldViolation.field`` (e.g.
            ``pattern_definitions[3].trigger_pattern``).
        description: Why the value is invalid.
    """

    field: str
    description: str


class PatternServiceError(Exception):
    """Base of all domain errors.

    Attributes:
        message: Developer-facing message.
        reason: ``ErrorInfo.reason`` (UPPER_SNAKE_CASE).
        metadata: ``ErrorInfo.metadata`` (string to string).
    """

    default_reason = "ERROR"

    def __init__(self, message: str, *, reason: str | None = None, metadata: Mapping[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgumentError(PatternServiceError):
    """The request is invalid; nothing was changed (gRPC ``INVALID_ARGUMENT``).

    Attributes:
        violations: Every invalid field found, not only the first.
    """

    default_reason = "INVALID_ARGUMENT"

    def __init__(self, violations: Iterable[FieldViolation], message: str | None = None, *, reason: str | None = None):
        self.violations = list(violations)
        text = message or "; ".join(f"{v.field}: {v.description}" for v in self.violations) or "invalid argument"
        super().__init__(text, reason=reason)

    @classmethod
    def single(cls, field: str, description: str, *, reason: str | None = None) -> InvalidArgumentError:
        """An error with one field violation."""
        return cls([FieldViolation(field, description)], reason=reason)


class NotFoundError(PatternServiceError):
    """A named resource does not exist (gRPC ``NOT_FOUND``).

    Attributes:
        resource_type: e.g. ``SuccessPattern`` or ``PatternDefinition``.
        resource_name: The id or name that was asked for.
    """

    default_reason = "NOT_FOUND"

    def __init__(
        self,
        resource_type: str,
        resource_name: str,
        message: str | None = None,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ):
        self.resource_type = resource_type
        self.resource_name = resource_name
        super().__init__(message or f"{resource_type} {resource_name!r} not found", reason=reason, metadata=metadata)


class AlreadyExistsError(PatternServiceError):
    """A resource with the same unique key exists (gRPC ``ALREADY_EXISTS``)."""

    default_reason = "ALREADY_EXISTS"

    def __init__(
        self, resource_type: str, resource_name: str, message: str | None = None, *, reason: str | None = None
    ):
        self.resource_type = resource_type
        self.resource_name = resource_name
        super().__init__(message or f"{resource_type} {resource_name!r} already exists", reason=reason)


class FailedPreconditionError(PatternServiceError):
    """The system is not in a state that allows the operation (gRPC ``FAILED_PRECONDITION``)."""

    default_reason = "FAILED_PRECONDITION"


class UnavailableError(PatternServiceError):
    """A backend the operation needs is unreachable; retrying may succeed (gRPC ``UNAVAILABLE``)."""

    default_reason = "BACKEND_UNAVAILABLE"


class ResourceExhaustedError(PatternServiceError):
    """A limit was reached (gRPC ``RESOURCE_EXHAUSTED``)."""

    default_reason = "RESOURCE_EXHAUSTED"


class DiskFullError(ResourceExhaustedError):
    """A local store's filesystem has less free space than ``TMWS_MIN_FREE_DISK_MB``; nothing was written."""

    default_reason = "INSUFFICIENT_DISK_SPACE"


class UnauthenticatedError(PatternServiceError):
    """The call carries no valid credentials (gRPC ``UNAUTHENTICATED``)."""

    default_reason = "UNAUTHENTICATED"


class PermissionDeniedError(PatternServiceError):
    """The caller is authenticated but lacks what the call needs (gRPC ``PERMISSION_DENIED``)."""

    default_reason = "PERMISSION_DENIED"
