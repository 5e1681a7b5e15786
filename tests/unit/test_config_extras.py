"""The optional extras that error messages and docs tell users to install exist in
pyproject.toml and bring the package the code imports."""

from __future__ import annotations

import inspect
import tomllib
from pathlib import Path

from tracker_client.cli import plot
from tracker_server import telemetry

ROOT = Path(__file__).resolve().parents[2]
EXTRAS: dict[str, list[str]] = tomllib.loads(
    (ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _names(extra: str) -> set[str]:
    return {req.split(">")[0].split("=")[0].split("[")[0].strip() for req in EXTRAS[extra]}


def test_otel_extra_brings_the_otlp_exporter() -> None:
    source = inspect.getsource(telemetry)
    assert "opentelemetry.exporter.otlp.proto.grpc" in source
    assert "pip install 'tracker[otel]'" in source
    assert "opentelemetry-exporter-otlp-proto-grpc" in _names("otel")
    assert "pip install 'tracker[otel]'" in (ROOT / "docs" / "operations.md").read_text()


def test_plot_extra_brings_matplotlib_and_bench_includes_it() -> None:
    assert "tracker[plot]" in plot.PLOT_EXTRA_MESSAGE
    assert "matplotlib" in _names("plot")
    assert "tracker[plot]" in EXTRAS["bench"]
