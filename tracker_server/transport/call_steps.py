"""The steps of the call interceptor's pipeline, each small enough to test alone.

Like structlog's processors, a step sees one shared record (here the :class:`Call`)
and either fills it in or refuses the call by raising a TrackerError. ``begin`` runs
before the handler, in pipeline order, and stops at the first refusal; ``end`` runs
once the call has ended (code and duration set), for every step, in reverse order, so
a refused call is still traced and logged.
"""

from __future__ import annotations

import re
import uuid

import structlog

from tracker_server.domain.errors import Code, TrackerError
from tracker_server.telemetry import Telemetry, trace_id_of
from tracker_server.transport.auth import Authenticator
from tracker_server.transport.call import Call, CallKind, Throttle
from tracker_server.transport.ratelimit import RateLimiter, TokenBucket, peer_host

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class CallStep:
    """One stage of the pipeline; both hooks do nothing unless overridden."""

    async def begin(self, call: Call) -> None:
        """Before the handler; raise a TrackerError to refuse the call."""

    def end(self, call: Call) -> None:
        """After the call, whether it was served, refused or failed."""


class RequestScope(CallStep):
    """A request id (the caller's ``x-request-id`` if well-formed, else a fresh one) and,
    with tracing on, a server span continuing the caller's ``traceparent``; both bound
    into structlog's contextvars so every log line of the call carries them."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry

    async def begin(self, call: Call) -> None:
        """Name the call and open its span."""
        request_id = call.metadata.get("x-request-id", "")
        call.request_id = (request_id if _REQUEST_ID_RE.match(request_id)
                           else uuid.uuid4().hex[:16])
        call.span = self._telemetry.start_rpc_span(call.method, call.metadata)
        structlog.contextvars.bind_contextvars(
            request_id=call.request_id, trace_id=trace_id_of(call.span))

    def end(self, call: Call) -> None:
        """Close the span, record the duration metric, unbind the ids."""
        self._telemetry.end_rpc(call.span, call.method, call.code, call.duration_s,
                                call.fields())
        structlog.contextvars.unbind_contextvars("request_id", "trace_id")


class Authenticate(CallStep):
    """The caller's API key and the role check (``transport/auth.py``)."""

    def __init__(self, auth: Authenticator) -> None:
        self._auth = auth

    async def begin(self, call: Call) -> None:
        """Raise UNAUTHENTICATED / PERMISSION_DENIED, or record who is calling."""
        principal = await self._auth.authenticate(call.method,
                                                  call.metadata.get("authorization"))
        if principal.key_id is not None:
            call.key_id = principal.key_id
            call.role = principal.role.label if principal.role else None
            structlog.contextvars.bind_contextvars(key_id=principal.key_id)

    def end(self, call: Call) -> None:
        """Unbind the key id."""
        structlog.contextvars.unbind_contextvars("key_id")


class RateLimit(CallStep):
    """Limits per caller (API key, else peer host; ``transport/ratelimit.py``).

    A call that is not a bidirectional stream costs one request token: over the limit it
    ends with RESOURCE_EXHAUSTED and a retry delay. Points are limited as the servicer
    reports them (:meth:`Call.add_batch`): a unary call over its points is refused the
    same way; a stream is paced instead, never refused, so it loses nothing.
    """

    def __init__(self, unary_limit: RateLimiter, points_limit: RateLimiter) -> None:
        self._unary_limit = unary_limit
        self._points_limit = points_limit

    async def begin(self, call: Call) -> None:
        """Take the request token; give the call its points throttle."""
        caller = call.key_id or peer_host(call.peer)
        if call.kind is not CallKind.BIDI_STREAM and self._unary_limit.enabled:
            wait = self._unary_limit.bucket(caller).try_take(1)
            if wait > 0:
                raise TrackerError(Code.RESOURCE_EXHAUSTED,
                                   "request rate limit exceeded for this API key or peer",
                                   retry_after_s=wait)
        if self._points_limit.enabled:
            bucket = self._points_limit.bucket(caller)
            call.throttle = (pacing(bucket) if call.kind is CallKind.BIDI_STREAM
                             else refusing(bucket))


def pacing(bucket: TokenBucket) -> Throttle:
    """Streams: every batch is taken, into debt if need be; the answer is how long the
    stream must not be read so that the debt is paid (HTTP/2 flow control does the rest)."""
    return bucket.take


def refusing(bucket: TokenBucket) -> Throttle:
    """Unary calls: a batch over the caller's points/s is refused with a retry delay."""

    def throttle(points: int) -> float:
        if points:
            wait = bucket.try_take(points)
            if wait > 0:
                raise TrackerError(Code.RESOURCE_EXHAUSTED,
                                   "ingest rate limit (points/s) exceeded",
                                   retry_after_s=wait)
        return 0.0

    return throttle


class CanonicalLogLine(CallStep):
    """One ``rpc`` line per call: method, code, duration, peer, request id, key, sizes;
    for ingest calls batches, points and time throttled."""

    def __init__(self) -> None:
        self._log = structlog.get_logger("tracker_server.rpc")

    def end(self, call: Call) -> None:
        """Write the line."""
        trace_id = trace_id_of(call.span)
        # Ids are passed explicitly too: processors without merge_contextvars still see them.
        self._log.info("rpc", method=call.method, code=call.code,
                       duration_ms=round(call.duration_s * 1000, 2), peer=call.peer,
                       request_id=call.request_id, **call.fields(),
                       **({"trace_id": trace_id} if trace_id is not None else {}))


def standard_steps(auth: Authenticator, unary_limit: RateLimiter, points_limit: RateLimiter,
                   telemetry: Telemetry) -> tuple[CallStep, ...]:
    """The server's pipeline, in order."""
    return (RequestScope(telemetry), Authenticate(auth), RateLimit(unary_limit, points_limit),
            CanonicalLogLine())
