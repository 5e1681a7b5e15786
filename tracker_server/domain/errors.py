"""Domain errors: one exception type carrying a status code.

Domain and storage code raise these; the transport layer maps them to gRPC status
codes in one place (``transport/errors.py``). Clients never see INTERNAL for bad input.
"""

from __future__ import annotations

import enum
from collections.abc import Container, Iterable
from typing import TypeVar

T = TypeVar("T")


class Code(enum.Enum):
    """Error kinds, named after the google.rpc codes they map to."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNAVAILABLE = "UNAVAILABLE"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"


class TrackerError(Exception):
    """An error with a status code, a message for the caller and optional details."""

    def __init__(
        self,
        code: Code,
        message: str,
        *,
        field_violations: list[tuple[str, str]] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field_violations = field_violations or []
        self.retry_after_s = retry_after_s

    def __repr__(self) -> str:
        return f"TrackerError({self.code.value}, {self.message!r})"


def invalid(message: str, field_violations: list[tuple[str, str]] | None = None) -> TrackerError:
    """INVALID_ARGUMENT."""
    return TrackerError(Code.INVALID_ARGUMENT, message, field_violations=field_violations)


def not_found(message: str) -> TrackerError:
    """NOT_FOUND."""
    return TrackerError(Code.NOT_FOUND, message)


def already_exists(message: str) -> TrackerError:
    """ALREADY_EXISTS."""
    return TrackerError(Code.ALREADY_EXISTS, message)


def failed_precondition(message: str) -> TrackerError:
    """FAILED_PRECONDITION."""
    return TrackerError(Code.FAILED_PRECONDITION, message)


def unavailable(message: str, retry_after_s: float | None = None) -> TrackerError:
    """UNAVAILABLE (retryable)."""
    return TrackerError(Code.UNAVAILABLE, message, retry_after_s=retry_after_s)


def check_all_found(wanted: Iterable[T], found: Container[T], what: str) -> None:
    """NOT_FOUND naming the first of ``wanted`` (e.g. run ids) that is not in ``found``."""
    for item in wanted:
        if item not in found:
            raise not_found(f"{what} {item} not found")
