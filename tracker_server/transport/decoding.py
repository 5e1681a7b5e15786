"""Requests that do not decode: a sentinel instead of an exception inside gRPC.

gRPC calls a method's ``request_deserializer`` before any project code runs; an
exception there ends a unary call with UNKNOWN and a stream with whatever the reader
makes of it. The interceptor installs :func:`safe_deserializer` instead, which returns
an :class:`Undecodable` for bytes that are not a valid message, and turns that into
INVALID_ARGUMENT (``invalid_request``): bad bytes are the caller's fault and retrying
them cannot help.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from tracker_server.domain.errors import TrackerError, invalid

Deserializer = Callable[[bytes], Any]


@dataclass(frozen=True)
class Undecodable:
    """A request message that failed to decode."""

    size: int
    """Its length in bytes."""
    reason: str
    """What the decoder said (shortened)."""

    def ByteSize(self) -> int:  # the protobuf message API, so callers need not check
        """The request's size, like a decoded message's ``ByteSize()``."""
        return self.size


def safe_deserializer(inner: Deserializer | None) -> Deserializer | None:
    """``inner``, but an undecodable request becomes an :class:`Undecodable`."""
    if inner is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return inner(data)
        except Exception as exc:  # DecodeError, or anything a decoder raises on garbage
            return Undecodable(len(data), f"{type(exc).__name__}: {exc}"[:200])

    return deserialize


def invalid_request(request: Undecodable) -> TrackerError:
    """INVALID_ARGUMENT for a request that is not a valid message."""
    return invalid(
        f"request is not a valid message ({request.size} bytes): {request.reason}",
        [("request", "does not decode")],
    )


def check_decoded(request: Any) -> Any:
    """``request``, or INVALID_ARGUMENT when it did not decode."""
    if isinstance(request, Undecodable):
        raise invalid_request(request)
    return request


async def decoded_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The messages of a request stream; INVALID_ARGUMENT at the first that did not
    decode."""
    async for request in requests:
        yield check_decoded(request)
