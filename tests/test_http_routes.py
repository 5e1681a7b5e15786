"""One role table: every HTTP route maps to the gRPC method it stands for; one canonical
log line and one span per HTTP request."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from structlog.testing import capture_logs

from tests.http_support import API, client, new_run, ok
from tests.support import ServerThread
from tests.test_auth import make_key
from tests.test_telemetry import OtelServer
from tracker_server.config import Settings
from tracker_server.domain.access import METHOD_ROLES
from tracker_server.http.app import create_app, routes_of
from tracker_server.http.context import RateLimits
from tracker_server.http.rpc_map import ROUTE_RPCS, rest_field, rpc_of
from tracker_server.telemetry import Telemetry
from tracker_server.transport.auth import Authenticator
from tracker_server.transport.ratelimit import RateLimiter


def _app_routes() -> list[tuple[str, str]]:
    limits = RateLimits(RateLimiter(0), RateLimiter(0))

    async def ready() -> None:
        raise AssertionError("not called")

    app = create_app(None, Authenticator(None), limits, Settings(),  # type: ignore[arg-type]
                     session_secret=b"s" * 32, ready=ready)  # type: ignore[arg-type]
    return routes_of(app)


def test_every_route_has_a_role_table_entry() -> None:
    routes = _app_routes()
    assert len(routes) >= 20
    missing = [r for r in routes if r not in ROUTE_RPCS]
    assert not missing, f"routes without an entry in http/rpc_map.py: {missing}"
    stale = [r for r in ROUTE_RPCS if r not in routes]
    assert not stale, f"entries for routes that do not exist: {stale}"
    for route, rpc in ROUTE_RPCS.items():
        if rpc.method is not None:
            assert rpc.method in METHOD_ROLES, (route, rpc.method)  # a real, listed RPC
    writes = {r for r, rpc in ROUTE_RPCS.items() if rpc.method and r[0] != "GET"}
    assert all(METHOD_ROLES[ROUTE_RPCS[r].method or ""] is not None for r in writes)


def test_unlisted_routes_need_admin_and_fields_are_renamed() -> None:
    assert rpc_of("GET", "/api/v1/secret").method == ""  # required_role("") is ADMIN
    assert rest_field({"downsampling": "method"}, "downsampling") == "method"
    assert rest_field({"tags": "set"}, "tags[a.b]") == "set[a.b]"
    assert rest_field({}, "key_index[3]") == "key_index[3]"


def test_canonical_log_line(settings: Settings) -> None:
    assert settings.database_url
    srv = ServerThread(replace(settings, auth="required"))
    key = make_key(settings.database_url, "operator")
    try:
        with client(srv, **{"X-API-Key": key}) as c, capture_logs() as logs:
            rid = new_run(c)["run_id"]
            c.post(f"{API}/runs/{rid}/metrics", headers={"X-Request-ID": "req-7"}, json={
                "keys": ["a"], "key_index": [0, 0], "steps": [1, 2], "values": [1, 2]})
            c.get(f"{API}/runs/{rid}/metrics/a")
            c.get("/health")
            deadline = time.monotonic() + 5
            while sum(e.get("event") == "http" for e in logs) < 4 and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        srv.stop()
    lines = [e for e in logs if e.get("event") == "http"]
    (write,) = [e for e in lines if e["path"] == "/api/v1/runs/{run_id}/metrics"]
    assert write["method"] == "POST" and write["status"] == 200
    assert write["rpc"] == "/tracker.v1.IngestService/LogMetrics"
    assert write["request_id"] == "req-7" and write["key_id"] == key.split("_")[1]
    assert write["batches"] == 1 and write["points"] == 2
    assert isinstance(write["duration_ms"], float) and "127.0.0.1" in str(write["peer"])
    (read,) = [e for e in lines if e["path"] == "/api/v1/runs/{run_id}/metrics/{key:path}"]
    assert read["rpc"] == "/tracker.v1.MetricsQueryService/GetMetricSeries"
    assert len(str(read["request_id"])) == 16
    assert not [e for e in lines if e["path"] == "/health"]  # probes are not logged
    assert all(key not in str(e) for e in logs)  # the key itself never


@pytest.fixture
def otel(settings: Settings) -> Iterator[tuple[OtelServer, InMemorySpanExporter,
                                               InMemoryMetricReader]]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    srv = OtelServer(settings, Telemetry(tracer_provider, MeterProvider(metric_readers=[reader])))
    try:
        yield srv, spans, reader
    finally:
        srv.stop()


def test_span_per_request(otel: tuple[OtelServer, InMemorySpanExporter, InMemoryMetricReader]
                          ) -> None:
    srv, spans, reader = otel
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    with httpx.Client(base_url=srv.http_url) as c:
        ok(c.get(f"{API}/experiments",
                 headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}))
        c.get(f"{API}/runs/nope")
    deadline = time.monotonic() + 5
    while len([s for s in spans.get_finished_spans() if s.name.startswith("GET")]) < 2 \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    finished = {s.name: s for s in spans.get_finished_spans()}
    listed = finished["GET /api/v1/experiments"]
    assert listed.kind == SpanKind.SERVER
    assert format(listed.context.trace_id, "032x") == trace_id
    assert listed.attributes is not None
    assert listed.attributes["http.response.status_code"] == 200
    assert listed.attributes["http.route"] == "/api/v1/experiments"
    failed = finished["GET /api/v1/runs/{run_id}"]
    assert failed.attributes is not None and failed.attributes["http.response.status_code"] == 400
    data = reader.get_metrics_data()
    names = {m.name for rm in (data.resource_metrics if data else [])
             for sm in rm.scope_metrics for m in sm.metrics}
    assert "tracker.http.duration" in names
