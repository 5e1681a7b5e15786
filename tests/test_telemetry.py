"""OpenTelemetry: a server span per RPC (continuing traceparent), a span per flush,
ingest and RPC metrics, with the SDK's in-memory exporter and reader."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.support import Api, ServerThread, batch_req, columns, open_req
from tracker_proto.v1 import experiments_pb2
from tracker_server.config import Settings
from tracker_server.server import start_server
from tracker_server.telemetry import Telemetry, setup_telemetry


class OtelServer(ServerThread):
    """A ServerThread whose telemetry goes to in-memory exporters."""

    def __init__(self, settings: Settings, telemetry: Telemetry) -> None:
        self._telemetry = telemetry
        super().__init__(settings)

    def call(self, coro: Any, timeout: float = 60) -> Any:
        if getattr(coro, "__name__", "") == "start_server":
            coro.close()
            coro = start_server(self.settings, self._telemetry)
        return super().call(coro, timeout)


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


def _metrics(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    out: dict[str, list[Any]] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out.setdefault(m.name, []).extend(m.data.data_points)
    return out


def test_spans_and_metrics(otel: tuple[OtelServer, InMemorySpanExporter,
                                       InMemoryMetricReader]) -> None:
    srv, spans, reader = otel
    api = Api(srv.address)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    try:
        api.experiments.ListExperiments(
            experiments_pb2.ListExperimentsRequest(), timeout=5,
            metadata=(("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01"),))
        run_id = api.new_run("otel")
        cols = columns(["a"], [0] * 100, range(100), [0.5] * 100)
        list(api.ingest.Stream(iter([open_req(run_id, "w"), batch_req(1, cols)]), timeout=20))
    finally:
        api.close()
    # Server spans end just after the client has its answer: wait for them.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(
        s.name.endswith("IngestService/Stream") for s in spans.get_finished_spans()
    ):
        time.sleep(0.01)
    finished = spans.get_finished_spans()
    (listed,) = [s for s in finished if s.name.endswith("/ListExperiments")]
    assert listed.kind == SpanKind.SERVER
    assert format(listed.context.trace_id, "032x") == trace_id  # continued the caller's trace
    assert listed.parent is not None and listed.parent.span_id == 0x00F067AA0BA902B7
    assert listed.attributes is not None
    assert listed.attributes["rpc.grpc.status_code"] == "OK"
    (stream,) = [s for s in finished if s.name.endswith("IngestService/Stream")]
    assert stream.attributes is not None and stream.attributes["tracker.points"] == 100
    flushes = [s for s in finished if s.name == "ingest.flush"]
    assert sum(int(s.attributes["tracker.flush.points"]) for s in flushes  # type: ignore[index]
               if s.attributes) == 100

    metrics = _metrics(reader)
    assert sum(p.value for p in metrics["tracker.ingest.points"]) == 100
    assert sum(p.value for p in metrics["tracker.ingest.batches"]) == 1
    assert sum(p.count for p in metrics["tracker.ingest.flush.duration"]) >= 1
    assert [p.value for p in metrics["tracker.ingest.buffered_bytes"]] == [0]
    methods = {p.attributes["rpc.method"] for p in metrics["tracker.rpc.duration"]}
    assert "/tracker.v1.IngestService/Stream" in methods


def test_setup_modes() -> None:
    off = setup_telemetry("off")
    assert not off.tracing and not off.metrics
    console = setup_telemetry("console")
    assert console.tracing and console.metrics
    console.shutdown()
    with pytest.raises(ValueError):
        setup_telemetry("jaeger")
    try:
        import opentelemetry.exporter.otlp  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match=r"tracker\[otel\]"):
            setup_telemetry("otlp")
