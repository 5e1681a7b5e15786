"""The browser dashboard: a prebuilt single-page app served as static files.

The sources (React + TypeScript, built by Vite) live beside this file; ``npm ci && npm run
build`` writes the bundle to ``dist/``, which is committed so that an installed server
needs no Node. ``tests/test_dashboard_bundle.py`` checks that the committed bundle is what
the sources build to.
"""

from __future__ import annotations

from pathlib import Path

#: Directory holding ``index.html`` and ``assets/`` of the built dashboard.
DIST_DIR = Path(__file__).resolve().parent / "dist"

#: Files under ``assets/`` have content-hashed names and never change once built.
IMMUTABLE_PREFIX = "assets/"


def index_html() -> Path:
    """Path of the page served for every dashboard route (the app routes in the browser)."""
    return DIST_DIR / "index.html"
