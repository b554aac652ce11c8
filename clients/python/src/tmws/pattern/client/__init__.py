"""Typed asyncio client and command line of the TMWS Pattern Service.

Example::

    from tmws.pattern.client import NotFound, PatternClient

    async with PatternClient.connect("127.0.0.1:50051") as client:
        try:
            result = await client.execute("check system health", execution_mode="fast")
        except NotFound as err:
            print(err.reason, err.message)

The generated messages are in :mod:`tmws.pattern.v1` (``pattern_execution_service_pb2``,
``pattern_learning_service_pb2``, ``memory_service_pb2``).
"""

from tmws.pattern.client._client import DEFAULT_CHANNEL_OPTIONS, DEFAULT_TARGET, PatternClient
from tmws.pattern.client._convert import DEFAULT, ContextLike, MetadataLike, TimeoutLike, to_struct
from tmws.pattern.client._enums import (
    ExecutionMode,
    ExecutionModeLike,
    PatternType,
    PatternTypeLike,
    SuccessPatternStatus,
    SuccessPatternStatusLike,
    execution_mode_name,
    parse_execution_mode,
    parse_pattern_type,
    parse_success_pattern_status,
    pattern_type_name,
)
from tmws.pattern.client._errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    ErrorInfo,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PatternServiceError,
    PermissionDenied,
    ResourceExhausted,
    ResourceInfo,
    RetryInfo,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
    exception_class_for_code,
    from_grpc_error,
    from_status,
)
from tmws.pattern.client._memories import MAX_BATCH_CREATE, memory_filter, new_memory
from tmws.pattern.client._stream import ExecuteManyItem, ExecuteManyOutcome, ExecuteManyStream
from tmws.pattern.client._version import __version__

__all__ = [
    "DEFAULT",
    "DEFAULT_CHANNEL_OPTIONS",
    "DEFAULT_TARGET",
    "MAX_BATCH_CREATE",
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "ContextLike",
    "DataLoss",
    "DeadlineExceeded",
    "ErrorInfo",
    "ExecuteManyItem",
    "ExecuteManyOutcome",
    "ExecuteManyStream",
    "ExecutionMode",
    "ExecutionModeLike",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "MetadataLike",
    "NotFound",
    "OutOfRange",
    "PatternClient",
    "PatternServiceError",
    "PatternType",
    "PatternTypeLike",
    "PermissionDenied",
    "ResourceExhausted",
    "ResourceInfo",
    "RetryInfo",
    "SuccessPatternStatus",
    "SuccessPatternStatusLike",
    "TimeoutLike",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "__version__",
    "exception_class_for_code",
    "execution_mode_name",
    "from_grpc_error",
    "from_status",
    "memory_filter",
    "new_memory",
    "parse_execution_mode",
    "parse_pattern_type",
    "parse_success_pattern_status",
    "pattern_type_name",
    "to_struct",
]
