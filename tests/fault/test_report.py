"""docs/reliability.md shows what the committed fault results say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_reliability_tables_match_the_committed_results() -> None:
    proc = subprocess.run([sys.executable, "scripts/fault_table.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, "run `python scripts/fault_table.py` " + proc.stderr
    results = sorted(p.name for p in (ROOT / "bench" / "results" / "faults").glob("*.json"))
    assert len(results) >= 10, results  # every fault of tests/fault, plus the fuzzing tally
