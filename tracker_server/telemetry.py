"""OpenTelemetry traces and metrics of the server (``TRACKER_OTEL``).

One server span per RPC (continuing a W3C ``traceparent`` sent by the client) and one
span per ingest flush; metrics for points, batches and flushes are updated once per
flush, never per point or per batch, so the ingest hot path stays cheap. With
``TRACKER_OTEL=off`` (the default) every hook is a no-op attribute check.

Providers are owned by the server instead of being installed globally, so tests (and
several servers in one process) each get their own, e.g. with ``InMemorySpanExporter``
and ``InMemoryMetricReader``.

Metrics are also read by Prometheus (``TRACKER_METRICS=prometheus``, the default, even
with ``TRACKER_OTEL=off``): a ``PrometheusMetricReader`` of the
``opentelemetry-exporter-prometheus`` package turns them into a ``prometheus_client``
collector in a registry of this server's own (never the process-global one), which
``GET /metrics`` renders (``tracker_server/http/prometheus.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

_SCOPE = "tracker_server"
_PROPAGATOR = TraceContextTextMapPropagator()


class Telemetry:
    """Tracer and instruments of one server; ``Telemetry()`` is the disabled no-op."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        prometheus: CollectorRegistry | None = None,
    ) -> None:
        """``prometheus``: the registry a ``PrometheusMetricReader`` of
        ``meter_provider`` is registered in (None: no ``/metrics``)."""
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.prometheus = prometheus
        self.tracing = tracer_provider is not None
        self.metrics = meter_provider is not None
        self._tracer = tracer_provider.get_tracer(_SCOPE) if tracer_provider else None
        self._buffered: Callable[[], int] | None = None
        self._budget: Callable[[], int] | None = None
        self._streams: Callable[[], int] | None = None
        self._slow_downs: Callable[[], int] | None = None
        self.database_up: bool | None = None
        """The last database probe (``GET /metrics`` runs one per scrape); None: never
        probed, so ``tracker.database.up`` reports nothing rather than a guess."""
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
        self._flush_failures = meter.create_counter(
            "tracker.ingest.flush.failures", unit="{flush}",
            description="Flush transactions that failed (rolled back; retried with back-off)")
        # Every counter exists from the start at 0: rate() and the alerts see a series
        # before the first flush (or the first failure).
        for counter in (self._points, self._batches, self._flush_bytes, self._flush_failures):
            counter.add(0)
        meter.create_observable_gauge(
            "tracker.ingest.buffered_bytes", callbacks=[self._observe_buffered], unit="By",
            description="Bytes accepted and not yet committed")
        meter.create_observable_gauge(
            "tracker.ingest.budget_bytes", callbacks=[self._observe_budget], unit="By",
            description="Memory budget of buffered points (over it: back-pressure, SlowDown)")
        meter.create_observable_gauge(
            "tracker.ingest.streams", callbacks=[self._observe_streams], unit="{stream}",
            description="Ingest streams open")
        # Read from a plain int the servicer increments: the stream's hot path does no
        # OpenTelemetry call of its own.
        meter.create_observable_counter(
            "tracker.ingest.slow_downs", callbacks=[self._observe_slow_downs],
            unit="{message}", description="SlowDown messages sent to streams")
        meter.create_observable_gauge(
            "tracker.database.up", callbacks=[self._observe_database], unit="1",
            description="1 when the database answered the last probe with every migration")

    def watch_buffered_bytes(self, read: Callable[[], int]) -> None:
        """Report ``read()`` (the engine's buffered bytes) as an observable gauge."""
        self._buffered = read

    def watch_ingest(self, *, budget_bytes: Callable[[], int], streams: Callable[[], int],
                     slow_downs: Callable[[], int]) -> None:
        """Report the memory budget, the open streams and the SlowDowns sent so far
        (a cumulative count) as observable instruments."""
        self._budget, self._streams, self._slow_downs = budget_bytes, streams, slow_downs

    def _observe_buffered(self, _: CallbackOptions) -> Iterable[Observation]:
        if self._buffered is not None:
            yield Observation(self._buffered())

    def _observe_budget(self, _: CallbackOptions) -> Iterable[Observation]:
        if self._budget is not None:
            yield Observation(self._budget())

    def _observe_streams(self, _: CallbackOptions) -> Iterable[Observation]:
        if self._streams is not None:
            yield Observation(self._streams())

    def _observe_slow_downs(self, _: CallbackOptions) -> Iterable[Observation]:
        if self._slow_downs is not None:
            yield Observation(self._slow_downs())

    def _observe_database(self, _: CallbackOptions) -> Iterable[Observation]:
        if self.database_up is not None:
            yield Observation(1 if self.database_up else 0)

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
            else:
                self._flush_failures.add(1)

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


def prometheus_reader() -> tuple[MetricReader, CollectorRegistry]:
    """A ``PrometheusMetricReader`` and the registry of this server it renders into.

    A registry of its own, not ``prometheus_client``'s process-global ``REGISTRY``: several
    servers in one process (tests) never render each other's metrics, and nothing else
    that uses the global registry shows up on ``/metrics``. The instrumentation-scope
    labels (``otel_scope_*``) are left out: every instrument here has the same scope.
    """
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    return PrometheusMetricReader(scope_info_enabled=False, registry=registry), registry


def setup_telemetry(mode: str, prometheus: bool = False) -> Telemetry:
    """Providers for ``TRACKER_OTEL`` = ``off`` / ``console`` / ``otlp``; with
    ``prometheus`` (``TRACKER_METRICS=prometheus``) metrics are also kept for
    ``GET /metrics``, whatever ``mode`` is."""
    readers: list[MetricReader] = []
    registry = None
    if prometheus:
        reader, registry = prometheus_reader()
        readers.append(reader)
    resource = Resource.create(
        {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "tracker-server"})
    if mode == "off":
        if not readers:
            return Telemetry()
        return Telemetry(None, MeterProvider(resource=resource, metric_readers=readers),
                         registry)
    span_exporter: SpanExporter
    if mode == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        span_exporter = ConsoleSpanExporter()
        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter(),
                                                     export_interval_millis=60_000))
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
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    else:
        raise ValueError(f"TRACKER_OTEL must be off, console or otlp; got {mode!r}")
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    return Telemetry(tracer_provider, MeterProvider(resource=resource, metric_readers=readers),
                     registry)
