"""The record of one RPC, shared by the interceptor's steps and the servicers.

The interceptor makes one :class:`Call` per RPC and binds it in a contextvar while the
call runs. Its steps fill it in (request id, span, caller, limits) and read it back for
the span and the log line; servicers report what only they can see, the batches and
points they ingest, through :func:`current_call`, so the interceptor never parses a
request.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

Throttle = Callable[[int], float]
"""Given the points of one batch: seconds the caller must pause before sending more
(0.0 to go on); may raise a TrackerError to refuse the batch instead."""


class CallKind(enum.Enum):
    """The shapes of tracker RPCs (no tracker RPC streams only its requests)."""

    UNARY = "unary_unary"
    SERVER_STREAM = "unary_stream"
    BIDI_STREAM = "stream_stream"


def unlimited(points: int) -> float:
    """The throttle of a call no points limit applies to."""
    return 0.0


@dataclass(eq=False)
class Call:
    """One RPC: what it is, who called, what it carried, how it ended."""

    method: str
    """Full method name, ``/pkg.Service/Method``."""
    kind: CallKind
    metadata: Mapping[str, str] = field(default_factory=dict)
    """The caller's text metadata (binary ``-bin`` entries left out)."""
    peer: str = ""
    started: float = field(default_factory=time.perf_counter)
    """``time.perf_counter()`` when the call began."""
    request_id: str = ""
    span: Any = None
    """The OpenTelemetry server span, None with tracing off."""
    key_id: str | None = None
    role: str | None = None
    request_bytes: int | None = None
    """Serialized size of the request of a unary-request call."""
    batches: int | None = None
    """Ingested batches; None for calls that ingest nothing."""
    points: int | None = None
    throttled_s: float = 0.0
    """Seconds the throttle asked the caller to pause, in all."""
    throttle: Throttle = unlimited
    """Set by the rate-limit step; consulted by :meth:`add_batch`."""
    code: str = "OK"
    """Status code name, set when the call ends."""
    duration_s: float = 0.0
    """Set when the call ends."""

    def track_ingest(self) -> None:
        """Mark an ingest call: its log line carries batches and points, zeros included."""
        if self.batches is None:
            self.batches = 0
        if self.points is None:
            self.points = 0

    def add_batch(self, points: int) -> float:
        """Count one ingested batch of ``points``; the seconds to pause before reading on.

        The pause comes from the call's throttle (the points/s limit of its caller); a
        throttle that refuses rather than paces (unary calls) raises RESOURCE_EXHAUSTED.
        """
        self.track_ingest()
        self.batches = (self.batches or 0) + 1
        self.points = (self.points or 0) + points
        wait = self.throttle(points)
        self.throttled_s += wait
        return wait

    def finish(self, code: str) -> None:
        """Record how and when the call ended."""
        self.code = code
        self.duration_s = time.perf_counter() - self.started

    def fields(self) -> dict[str, Any]:
        """What the span and the log line record besides method, code and duration
        (unset ones left out)."""
        values = {"key_id": self.key_id, "role": self.role,
                  "request_bytes": self.request_bytes, "batches": self.batches,
                  "points": self.points,
                  "throttled_ms": round(self.throttled_s * 1000, 1) if self.throttled_s
                  else None}
        return {k: v for k, v in values.items() if v is not None}


_CURRENT: ContextVar[Call | None] = ContextVar("tracker_current_call", default=None)


def current_call() -> Call:
    """The call being served; outside the interceptor a fresh, unlimited record (so a
    servicer driven directly, e.g. in a test, can report to it all the same)."""
    call = _CURRENT.get()
    return call if call is not None else Call("", CallKind.UNARY)


def bind_call(call: Call | None) -> None:
    """Make ``call`` the current call of this context (None: no call).

    gRPC serves every RPC in its own task, hence its own copy of the context: setting
    and clearing, rather than resetting a token, is enough, and stays safe when a
    response generator is closed from another task.
    """
    _CURRENT.set(call)
