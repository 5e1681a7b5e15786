"""Smoke test of the benchmark harness, so it does not rot (figures are not checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REQUIRED = (
    "e2e_points_per_s", "ceiling_points_per_s", "ratio_to_ceiling", "points_sent",
    "points_committed", "ack_p50_ms", "ack_p99_ms", "server_cpu_s", "server_peak_rss_mb",
    "disk_bytes_per_point", "params",
)
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("transport", ["raw", "client"])
def test_bench_ingest_smoke(database_url: str, tmp_path: Path, transport: str) -> None:
    out = tmp_path / "ingest.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "ingest", "--transport", transport, "--streams", "2",
         "--keys", "5", "--batch-points", "500", "--points", "20000",
         "--database-url", database_url, "--json", str(out), "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    for field in REQUIRED:
        assert field in data, field
    assert data["points_sent"] == 20000
    assert data["points_committed"] == data["points_sent"]
    assert data["exactly_once"] is True
    assert data["e2e_points_per_s"] > 0 and data["ceiling_points_per_s"] > 0
    # The ceiling is the fastest of three passes over the same points.
    passes = data["ceiling_passes_points_per_s"]
    assert len(passes) == 3 and data["ceiling_points_per_s"] == max(passes)
    # Client CPU is what the client processes report, plus their sender processes.
    assert len(data["client_processes_cpu_s"]) == 2
    assert all(c > 0 for c in data["client_processes_cpu_s"])
    if transport == "raw":
        assert data["client_sender_processes_cpu_s"] == 0  # no client library, no children
    else:
        assert data["client_sender_processes_cpu_s"] >= 0
    if transport == "raw":
        assert data["ack_p99_ms"] >= data["ack_p50_ms"] > 0


def test_every_command_writes_json_with_the_same_flag() -> None:
    from bench.__main__ import COMMANDS

    for command in COMMANDS:
        proc = subprocess.run([sys.executable, "-m", "bench", command, "--help"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "--json PATH" in proc.stdout, command
        assert "--out " not in proc.stdout and "--output" not in proc.stdout, command


def test_bench_query_smoke(database_url: str, tmp_path: Path) -> None:
    out = tmp_path / "query.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "query", "--series-points", "20000", "--runs", "10",
         "--search-runs", "60", "--experiments", "60", "--iterations", "2",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DATABASE_URL": database_url},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert data["benchmark"] == "query" and data["seed"]["series_points"] == 20000
    assert data["series_1m_to_1k_p50_ms"] > 0 and data["best_runs_p50_ms"] > 0


def test_bench_client_smoke(database_url: str, tmp_path: Path) -> None:
    out = tmp_path / "client.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "client", "--calls", "4000", "--series-points",
         "1000000", "--sender", "auto,process", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "DATABASE_URL": database_url},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert data["sender"] == "auto" and set(data["by_sender"]) == {"auto", "process"}
    for figures in data["by_sender"].values():
        assert figures["log_durable"] and figures["log_series_durable"]
        assert figures["log_us"]["max"] >= figures["log_us"]["p999"] > 0
        assert figures["log_us_server_down"]["p50"] > 0
    assert data["by_sender"]["process"]["log_points_dropped"] == 0
    assert data["floor"]["loaded_us"]["p50"] > 0 and data["floor"]["quiet_us"]["p50"] > 0
