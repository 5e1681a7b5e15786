"""Smoke test of ``python -m bench export`` on a small run (figures are not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_export_smoke(database_url: str, tmp_path: Path) -> None:
    out = tmp_path / "export.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "export", "--points", "40000", "--keys", "2",
         "--repeats", "1", "--database-url", database_url, "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert data["points"] == 40000 and data["keys"] == 2
    for path in ("api_numpy", "api_pandas", "stream_only", "client_decode"):
        assert data[path]["best_points_per_s"] > 0, path
    assert data["target_points_per_s"] == 10_000_000
