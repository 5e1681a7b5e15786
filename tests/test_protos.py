"""Generated code matches protos/, and buf lint is clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_does_not_drift() -> None:
    proc = subprocess.run([sys.executable, "scripts/gen_protos.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_buf_lint_is_clean() -> None:
    # buf-bin installs the CLI next to the interpreter (a venv may not be on PATH).
    local = Path(sys.executable).parent / "buf"
    buf = str(local) if local.exists() else shutil.which("buf")
    if buf is None:
        pytest.skip("buf not installed (pip install buf-bin)")
    proc = subprocess.run([buf, "lint"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
