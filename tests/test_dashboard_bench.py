"""Smoke test of ``python -m bench dashboard`` on a small run, so the harness does not rot
(the figures are not checked; the bench is run alone, at full size, by hand)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.browser_support import ROOT, needs_chromium


@needs_chromium
def test_bench_dashboard_smoke(database_url: str, tmp_path: Path) -> None:
    out = tmp_path / "dashboard.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "dashboard", "--metrics", "2", "--points", "20000",
         "--loads", "2", "--zooms", "1", "--rest-writers", "2", "--rest-points", "40000",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
        env={**os.environ, "DATABASE_URL": database_url},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["benchmark"] == "dashboard" and data["seed"]["points_per_metric"] == 20000
    assert data["points_per_series_on_wire"] == 2000  # 20,000 points, downsampled
    assert data["all_charts_drawn_ms"]["cold"] > 0 and data["zoom"]["requery_p50_ms"] > 0
    assert data["zoom"]["range_requests"] >= 2  # both charts re-read the range
    assert data["rest_points"] == 40000 and data["rest_points_per_s"] > 0
