"""Smoke test of ``python -m bench soak`` (a few seconds instead of ten minutes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_soak_smoke(database_url: str, tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "soak", "--duration", "6", "--streams", "3",
         "--steps-per-s", "100", "--database-url", database_url, "--json", str(out),
         "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert data["points_logged"] > 0
    assert data["points_stored"] == data["points_logged"]
    assert (data["points_lost"], data["duplicates"], data["errors"]) == (0, 0, 0)
    assert data["queries"] > 0 and len(data["samples"]) >= 5
    assert Path(data["chart"]).stat().st_size > 10_000
