"""The one place where domain errors become gRPC statuses.

The call interceptor (``transport/interceptors.py``) catches every TrackerError that
one of its steps or a servicer raises, for every call kind, and ends the call with
:func:`abort`; servicers just raise. Status details follow google.rpc conventions
(grpcio-status): BadRequest field violations for INVALID_ARGUMENT, RetryInfo for
retryable errors, so any gRPC client can read them from the ``grpc-status-details-bin``
trailer.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from tracker_server.domain.errors import Code, TrackerError

GRPC_CODES: dict[Code, grpc.StatusCode] = {
    Code.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Code.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Code.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Code.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Code.ABORTED: grpc.StatusCode.ABORTED,
    Code.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Code.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    Code.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Code.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Code.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
}


def rpc_code(code: Code) -> int:
    """google.rpc.Code number of a domain code (for BatchRejected.code)."""
    return int(GRPC_CODES[code].value[0])


def to_status(error: TrackerError) -> Any:
    """A grpc.Status (code, details, trailing metadata with rich details)."""
    details: list[any_pb2.Any] = []
    if error.field_violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                for f, d in error.field_violations[:100]
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad)
        details.append(packed)
    if error.retry_after_s is not None:
        retry = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(
                seconds=int(error.retry_after_s),
                nanos=int((error.retry_after_s % 1) * 1e9),
            )
        )
        packed = any_pb2.Any()
        packed.Pack(retry)
        details.append(packed)
    status = status_pb2.Status(
        code=rpc_code(error.code), message=error.message, details=details
    )
    return rpc_status.to_status(status)


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: TrackerError) -> None:
    """End the call with ``error`` (raises, as grpc's abort does)."""
    status = to_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)


__all__ = ["GRPC_CODES", "abort", "rpc_code", "to_status"]
