"""The committed dashboard bundle is exactly what its sources build to, its generated API
types are what the committed OpenAPI snapshot generates, and the dashboard's own unit
tests (Vitest) pass.

Both run in a copy of ``tracker_server/dashboard`` installed with ``npm ci`` from the
committed lockfile, so the working tree's ``node_modules`` and ``dist`` are never touched.
"""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tracker_server.dashboard import DIST_DIR, index_html

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "tracker_server" / "dashboard"
NPM = shutil.which("npm")

needs_npm = pytest.mark.skipif(
    NPM is None,
    reason="npm is not installed: the dashboard cannot be rebuilt to check the committed "
    "bundle (needs Node >= 20.19 and npm)",
)

GENERATED = DASHBOARD / "src" / "api" / "generated"
GEN_FIX = "run `python -m tracker_server.http.openapi_export` and commit the result"

# Built or installed here, never sources.
_NOT_SOURCES = shutil.ignore_patterns("node_modules", "dist", "__pycache__", "*.pyc")


def _npm(args: list[str], cwd: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    assert NPM is not None
    env = {**os.environ, "CI": "true", "NO_COLOR": "1", "npm_config_update_notifier": "false"}
    return subprocess.run([NPM, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout_s, check=False)


@pytest.fixture(scope="module")
def dashboard_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dashboard sources in a fresh directory with their locked dependencies."""
    work = tmp_path_factory.mktemp("dashboard") / "dashboard"
    shutil.copytree(DASHBOARD, work, ignore=_NOT_SOURCES)
    proc = _npm(["ci", "--no-audit", "--no-fund", "--prefer-offline"], work, 240)
    assert proc.returncode == 0, f"npm ci failed:\n{proc.stdout}\n{proc.stderr}"
    return work


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@needs_npm
def test_committed_bundle_matches_sources(dashboard_copy: Path) -> None:
    proc = _npm(["run", "build"], dashboard_copy, 240)
    assert proc.returncode == 0, f"npm run build failed:\n{proc.stdout}\n{proc.stderr}"
    built = dashboard_copy / "dist"
    committed = DASHBOARD / "dist"
    assert _files(built) == _files(committed), (
        "tracker_server/dashboard/dist is stale: run `npm ci && npm run build` there and "
        "commit dist/"
    )
    differ = [name for name in _files(built)
              if not filecmp.cmp(built / name, committed / name, shallow=False)]
    assert not differ, f"rebuilt files differ from the committed ones: {differ}"
    assert (committed / "index.html").read_text().count('type="module"') == 1


@needs_npm
def test_generated_types_are_what_the_schema_generates(dashboard_copy: Path,
                                                       tmp_path: Path) -> None:
    work = tmp_path / "dashboard"
    shutil.copytree(dashboard_copy, work, ignore=_NOT_SOURCES)
    (work / "node_modules").symlink_to(dashboard_copy / "node_modules")
    shutil.rmtree(work / "src" / "api" / "generated")
    proc = _npm(["run", "gen:api"], work, 120)
    assert proc.returncode == 0, f"npm run gen:api failed:\n{proc.stdout}\n{proc.stderr}"
    fresh = work / "src" / "api" / "generated"
    assert _files(fresh) == _files(GENERATED), f"generated files differ: {GEN_FIX}"
    differ = [n for n in _files(fresh)
              if not filecmp.cmp(fresh / n, GENERATED / n, shallow=False)]
    assert not differ, f"{differ} differ from what the committed schema generates: {GEN_FIX}"


@needs_npm
def test_dashboard_unit_tests_pass(dashboard_copy: Path) -> None:
    proc = _npm(["test"], dashboard_copy, 240)
    assert proc.returncode == 0, f"npm test failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    assert " passed" in proc.stdout, proc.stdout[-2000:]


def test_index_loads_only_committed_assets_without_inline_code() -> None:
    html = index_html().read_text()
    refs = re.findall(r'(?:src|href)="(/[^"]*)"', html)
    assert refs, html
    for ref in refs:
        assert (DIST_DIR / ref.lstrip("/")).is_file(), f"{ref} is not in the bundle"
    # The page is served with a CSP that forbids inline scripts and handlers.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), html
    assert not re.search(r"\son[a-z]+=", html), html
    assert "<style" not in html and "style=" not in html, html
