"""Each step of the interceptor's pipeline alone, on a bare Call (no server)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.testing import capture_logs

from tracker_server.domain.access import Role, generate_key
from tracker_server.domain.errors import Code, TrackerError
from tracker_server.telemetry import Telemetry
from tracker_server.transport.auth import Authenticator, KeyCache
from tracker_server.transport.call import Call, CallKind
from tracker_server.transport.call_steps import (
    Authenticate,
    CallStep,
    CanonicalLogLine,
    RateLimit,
    RequestScope,
    standard_steps,
)
from tracker_server.transport.ratelimit import RateLimiter

GET_RUN = "/tracker.v1.ExperimentService/GetRun"
CREATE_RUN = "/tracker.v1.ExperimentService/CreateRun"
STREAM = "/tracker.v1.IngestService/Stream"
LOG_METRICS = "/tracker.v1.IngestService/LogMetrics"


def _begin(step: CallStep, call: Call) -> dict[str, object]:
    """Run ``step.begin``; the structlog contextvars it left bound."""
    async def scenario() -> dict[str, object]:
        await step.begin(call)
        return structlog.contextvars.get_contextvars()

    return asyncio.run(scenario())  # its own context: nothing leaks between tests


def _begin_end(step: CallStep, call: Call, code: str = "OK") -> tuple[dict[str, object],
                                                                        dict[str, object]]:
    """Run ``step.begin`` and ``step.end``; the contextvars bound after each."""
    async def scenario() -> tuple[dict[str, object], dict[str, object]]:
        await step.begin(call)
        bound = structlog.contextvars.get_contextvars()
        call.finish(code)
        step.end(call)
        return bound, structlog.contextvars.get_contextvars()

    return asyncio.run(scenario())


def _refusal(step: CallStep, call: Call) -> TrackerError:
    with pytest.raises(TrackerError) as info:
        _begin(step, call)
    return info.value


# -- request id and span ---------------------------------------------------------------
def test_request_scope_keeps_a_well_formed_request_id_and_binds_it() -> None:
    call = Call(GET_RUN, CallKind.UNARY, {"x-request-id": "req-42"})
    bound, after = _begin_end(RequestScope(Telemetry()), call)
    assert call.request_id == "req-42" and call.span is None
    assert bound["request_id"] == "req-42" and "request_id" not in after


@pytest.mark.parametrize("sent", ["", "has space", "x" * 65, "semi;colon"])
def test_request_scope_replaces_a_missing_or_odd_request_id(sent: str) -> None:
    call = Call(GET_RUN, CallKind.UNARY, {"x-request-id": sent} if sent else {})
    bound = _begin(RequestScope(Telemetry()), call)
    assert len(call.request_id) == 16 and int(call.request_id, 16) >= 0
    assert bound["request_id"] == call.request_id


def test_request_scope_continues_the_callers_trace_and_ends_the_span() -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    step = RequestScope(Telemetry(provider))
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    call = Call(STREAM, CallKind.BIDI_STREAM,
                {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    call.add_batch(100)
    bound, after = _begin_end(step, call)
    assert bound["trace_id"] == trace_id and "trace_id" not in after
    (span,) = spans.get_finished_spans()
    assert span.name == "tracker.v1.IngestService/Stream"
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == "OK"
    assert span.attributes["tracker.points"] == 100


# -- authentication --------------------------------------------------------------------
@dataclass(frozen=True)
class _Record:
    role: Role
    secret_hash: bytes
    revoked: bool = False


class _Keys:
    """An in-memory key store (the KeyLookup port)."""

    def __init__(self) -> None:
        self.records: dict[str, _Record] = {}

    def add(self, role: Role) -> str:
        key = generate_key()
        self.records[key.key_id] = _Record(role, key.secret_hash)
        return key.token

    async def lookup(self, key_id: str) -> _Record | None:
        return self.records.get(key_id)


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_authenticate_with_auth_off_lets_everyone_in_anonymously() -> None:
    call = Call(CREATE_RUN, CallKind.UNARY)
    _begin(Authenticate(Authenticator(None)), call)
    assert call.key_id is None and call.role is None


def test_authenticate_refuses_a_missing_or_unknown_key() -> None:
    keys = _Keys()
    step = Authenticate(Authenticator(KeyCache(keys, ttl_s=10)))
    assert _refusal(step, Call(GET_RUN, CallKind.UNARY)).code is Code.UNAUTHENTICATED
    stranger = generate_key().token
    err = _refusal(step, Call(GET_RUN, CallKind.UNARY, _bearer(stranger)))
    assert err.code is Code.UNAUTHENTICATED and "unknown" in err.message


def test_authenticate_refuses_a_role_below_the_methods_and_names_both() -> None:
    keys = _Keys()
    viewer = keys.add(Role.VIEWER)
    step = Authenticate(Authenticator(KeyCache(keys, ttl_s=10)))
    err = _refusal(step, Call(CREATE_RUN, CallKind.UNARY, _bearer(viewer)))
    assert err.code is Code.PERMISSION_DENIED
    assert "viewer" in err.message and "operator" in err.message


def test_authenticate_records_and_binds_the_key() -> None:
    keys = _Keys()
    operator = keys.add(Role.OPERATOR)
    step = Authenticate(Authenticator(KeyCache(keys, ttl_s=10)))
    call = Call(CREATE_RUN, CallKind.UNARY, _bearer(operator))
    bound, after = _begin_end(step, call)
    key_id = operator.split("_")[1]
    assert (call.key_id, call.role) == (key_id, "operator")
    assert bound["key_id"] == key_id and "key_id" not in after


# -- rate limits -----------------------------------------------------------------------
def test_unary_calls_over_the_request_rate_are_refused_with_a_retry_delay() -> None:
    step = RateLimit(RateLimiter(2), RateLimiter(0))
    for _ in range(2):
        _begin(step, Call(GET_RUN, CallKind.UNARY, peer="ipv4:10.0.0.1:1000"))
    err = _refusal(step, Call(GET_RUN, CallKind.SERVER_STREAM, peer="ipv4:10.0.0.1:2000"))
    assert err.code is Code.RESOURCE_EXHAUSTED
    assert err.retry_after_s is not None and 0 < err.retry_after_s <= 0.5
    # another host, and a key on the same host, have buckets of their own
    _begin(step, Call(GET_RUN, CallKind.UNARY, peer="ipv4:10.0.0.2:1000"))
    _begin(step, Call(GET_RUN, CallKind.UNARY, peer="ipv4:10.0.0.1:1000", key_id="abc"))


def test_streams_cost_no_request_tokens() -> None:
    step = RateLimit(RateLimiter(1), RateLimiter(0))
    for _ in range(5):
        _begin(step, Call(STREAM, CallKind.BIDI_STREAM, peer="ipv4:10.0.0.1:1"))


def test_a_stream_over_its_points_is_paced_never_refused() -> None:
    step = RateLimit(RateLimiter(0), RateLimiter(1000))
    call = Call(STREAM, CallKind.BIDI_STREAM, peer="ipv4:10.0.0.1:1")
    _begin(step, call)
    assert call.add_batch(1000) == 0.0  # the burst
    assert call.add_batch(500) == pytest.approx(0.5, abs=0.02)  # into debt: pause
    assert call.throttled_s == pytest.approx(0.5, abs=0.02)


def test_a_unary_call_over_its_points_is_refused() -> None:
    step = RateLimit(RateLimiter(0), RateLimiter(1000))
    first = Call(LOG_METRICS, CallKind.UNARY, peer="ipv4:10.0.0.1:1")
    _begin(step, first)
    assert first.add_batch(1000) == 0.0
    second = Call(LOG_METRICS, CallKind.UNARY, peer="ipv4:10.0.0.1:2")
    _begin(step, second)
    assert second.add_batch(0) == 0.0  # nothing to limit
    with pytest.raises(TrackerError) as info:
        second.add_batch(10)
    assert info.value.code is Code.RESOURCE_EXHAUSTED and "points" in info.value.message
    assert info.value.retry_after_s is not None and info.value.retry_after_s > 0


def test_without_a_points_limit_batches_pass_freely() -> None:
    call = Call(STREAM, CallKind.BIDI_STREAM)
    _begin(RateLimit(RateLimiter(0), RateLimiter(0)), call)
    assert call.add_batch(10**9) == 0.0


# -- the log line ----------------------------------------------------------------------
def test_canonical_log_line_is_written_at_the_end_only() -> None:
    step = CanonicalLogLine()
    call = Call(STREAM, CallKind.BIDI_STREAM, peer="ipv4:127.0.0.1:5", request_id="r1",
                key_id="0123456789ab", role="operator")
    with capture_logs() as logs:
        _begin(step, call)
        assert logs == []
        call.add_batch(8)
        call.finish("RESOURCE_EXHAUSTED")
        step.end(call)
    (line,) = logs
    assert line["event"] == "rpc" and line["log_level"] == "info"
    assert {k: line[k] for k in ("method", "code", "peer", "request_id", "key_id", "role",
                                 "batches", "points")} == {
        "method": STREAM, "code": "RESOURCE_EXHAUSTED", "peer": "ipv4:127.0.0.1:5",
        "request_id": "r1", "key_id": "0123456789ab", "role": "operator",
        "batches": 1, "points": 8}
    assert isinstance(line["duration_ms"], float)
    assert "trace_id" not in line and "request_bytes" not in line


def test_standard_pipeline_order() -> None:
    steps = standard_steps(Authenticator(None), RateLimiter(0), RateLimiter(0), Telemetry())
    assert [type(s) for s in steps] == [RequestScope, Authenticate, RateLimit, CanonicalLogLine]
