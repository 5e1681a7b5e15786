"""OpenTelemetry traces and metrics of the server (``TRACKER_OTEL``).

One server span per RPC (continuing a W3C ``traceparent`` sent by the client) and one
span per ingest flush; metrics for points, batches and flushes are updated once per
flush, never per point or per batch, so the ingest hot path stays cheap. With
``TRACKER_OTEL=off`` (the default) every hook is a no-op attribute check.

Providers are owned by the server instead of being installed globally, so tests (and
several servers in one process) each get their own, e.g. with ``InMemorySpanExporter``
and ``InMemoryMetricReader``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tracker_server.domain.ingest import FlushReport

_SCOPE = "tracker_server"
_PROPAGATOR = TraceContextTextMapPropagator()


class Telemetry:
    """Tracer and instruments of one server; ``Telemetry()`` is the disabled no-op."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.tracing = tracer_provider is not None
        self.metrics = meter_provider is not None
        self._tracer = tracer_provider.get_tracer(_SCOPE) if tracer_provider else None
        self._buffered: Callable[[], int] | None = None
        if meter_provider is None:
            return
        meter = meter_provider.get_meter(_SCOPE)
        self._rpc_duration = meter.create_histogram(
            "tracker.rpc.duration", unit="ms", description="Server-side RPC duration")
        self._http_duration = meter.create_histogram(
            "tracker.http.duration", unit="ms", description="Server-side HTTP request duration")
        self._points = meter.create_counter(
            "tracker.ingest.points", unit="{point}", description="Points committed")
        self._batches = meter.create_counter(
            "tracker.ingest.batches", unit="{batch}", description="Batches flushed")
        self._flush_bytes = meter.create_counter(
            "tracker.ingest.flush.bytes", unit="By", description="Point bytes flushed")
        self._flush_duration = meter.create_histogram(
            "tracker.ingest.flush.duration", unit="ms",
            description="Flush transaction duration (COPY + summaries + offsets)")
        meter.create_observable_gauge(
            "tracker.ingest.buffered_bytes", callbacks=[self._observe_buffered], unit="By",
            description="Bytes accepted and not yet committed")

    def watch_buffered_bytes(self, read: Callable[[], int]) -> None:
        """Report ``read()`` (the engine's buffered bytes) as an observable gauge."""
        self._buffered = read

    def _observe_buffered(self, _: CallbackOptions) -> Iterable[Observation]:
        if self._buffered is not None:
            yield Observation(self._buffered())

    # RPCs ----------------------------------------------------------------------------
    def start_rpc_span(self, method: str, metadata: Mapping[str, str]) -> Any:
        """A SERVER span for ``method``, child of the caller's ``traceparent`` if sent."""
        if self._tracer is None:
            return None
        parent = _PROPAGATOR.extract(metadata) if "traceparent" in metadata else None
        service, _, name = method.lstrip("/").partition("/")
        return self._tracer.start_span(
            method.lstrip("/"), context=parent, kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        )

    def end_rpc(self, span: Any, method: str, code: str, duration_s: float,
                attributes: Mapping[str, Any]) -> None:
        """Close the RPC's span and record its duration by method and status code."""
        if span is not None:
            span.set_attribute("rpc.grpc.status_code", code)
            for key, value in attributes.items():
                if value is not None:
                    span.set_attribute(f"tracker.{key}", value)
            if code not in ("OK", "CANCELLED"):
                span.set_status(Status(StatusCode.ERROR, code))
            span.end()
        if self.metrics:
            self._rpc_duration.record(duration_s * 1000, {"rpc.method": method, "code": code})

    # HTTP requests -------------------------------------------------------------------
    def start_http_span(self, method: str, headers: Mapping[str, str]) -> Any:
        """A SERVER span for an HTTP request, child of the caller's ``traceparent``; named
        after the route once it is known (:meth:`end_http`)."""
        if self._tracer is None:
            return None
        parent = _PROPAGATOR.extract(headers) if "traceparent" in headers else None
        return self._tracer.start_span(method, context=parent, kind=SpanKind.SERVER,
                                       attributes={"http.request.method": method})

    def end_http(self, span: Any, method: str, route: str, status: int, duration_s: float,
                 attributes: Mapping[str, Any]) -> None:
        """Close the request's span and record its duration by route and status."""
        if span is not None:
            span.update_name(f"{method} {route}")
            span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
            for key, value in attributes.items():
                if value is not None:
                    span.set_attribute(f"tracker.{key}", value)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR, str(status)))
            span.end()
        if self.metrics:
            self._http_duration.record(duration_s * 1000, {
                "http.request.method": method, "http.route": route,
                "http.response.status_code": status})

    # Ingest --------------------------------------------------------------------------
    def on_flush(self, report: FlushReport) -> None:
        """The engine's flush observer: a span and counter updates per flush."""
        attrs = {"points": report.points, "rows": report.rows, "batches": report.batches,
                 "bytes": report.nbytes, "ok": report.ok}
        if self._tracer is not None:
            span = self._tracer.start_span(
                "ingest.flush", start_time=report.started_ns,
                attributes={f"tracker.flush.{k}": v for k, v in attrs.items()})
            if not report.ok:
                span.set_status(Status(StatusCode.ERROR, "flush failed"))
            span.end(end_time=report.started_ns + int(report.duration_s * 1e9))
        if self.metrics:
            outcome = {"ok": report.ok}
            self._flush_duration.record(report.duration_s * 1000, outcome)
            if report.ok:
                self._points.add(report.points)
                self._batches.add(report.batches)
                self._flush_bytes.add(report.nbytes)

    def shutdown(self) -> None:
        """Flush and stop exporters."""
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


def trace_id_of(span: Any) -> str | None:
    """Hex trace id of a span (for logs), None without one."""
    if span is None:
        return None
    ctx = span.get_span_context()
    return trace.format_trace_id(ctx.trace_id) if ctx.is_valid else None


def setup_telemetry(mode: str) -> Telemetry:
    """Providers for ``TRACKER_OTEL`` = ``off`` / ``console`` / ``otlp``."""
    if mode == "off":
        return Telemetry()
    span_exporter: SpanExporter
    reader: MetricReader
    if mode == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        span_exporter = ConsoleSpanExporter()
        reader = PeriodicExportingMetricReader(ConsoleMetricExporter(),
                                               export_interval_millis=60_000)
    elif mode == "otlp":
        try:  # optional extra: tracker[otel]
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter,
            )
        except ImportError as exc:
            raise RuntimeError(
                "TRACKER_OTEL=otlp needs the OTLP exporter: pip install 'tracker[otel]'"
            ) from exc
        span_exporter = OTLPSpanExporter()
        reader = PeriodicExportingMetricReader(OTLPMetricExporter())
    else:
        raise ValueError(f"TRACKER_OTEL must be off, console or otlp; got {mode!r}")
    resource = Resource.create(
        {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "tracker-server"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    return Telemetry(tracer_provider, MeterProvider(resource=resource, metric_readers=[reader]))
