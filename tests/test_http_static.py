"""The dashboard bundle: index.html for / and client-side routes, assets with long
cache headers, nothing outside the bundle, a clear page when it is not built."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.http_support import API, client, ok, problem
from tests.support import ServerThread
from tracker_server.config import Settings
from tracker_server.http import app as http_app
from tracker_server.http.security import CSP
from tracker_server.http.static import LONG_CACHE, NO_CACHE

INDEX = b'<!doctype html><html><head><script type="module" src="/assets/app-1a2b.js">' \
        b"</script></head><body><div id=app></div></body></html>"


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_bytes(INDEX)
    (root / "assets" / "app-1a2b.js").write_text("console.log('tracker')")
    (root / "assets" / "app-1a2b.css").write_text("body{margin:0}")
    (root / "favicon.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (tmp_path / "secret.txt").write_text("not part of the bundle")
    return root


@pytest.fixture
def dashboard(settings: Settings, dist: Path, monkeypatch: pytest.MonkeyPatch
              ) -> Iterator[httpx.Client]:
    monkeypatch.setattr(http_app, "DEFAULT_DIST", dist)
    srv = ServerThread(settings)
    try:
        with client(srv) as c:
            yield c
    finally:
        srv.stop()


def test_index_assets_and_client_routes(dashboard: httpx.Client) -> None:
    for path in ("/", "/experiments/abc", "/runs/1234/metrics/train/loss"):
        page = dashboard.get(path)
        assert page.status_code == 200 and page.content == INDEX, path
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == NO_CACHE
        assert page.headers["content-security-policy"] == CSP
    script = dashboard.get("/assets/app-1a2b.js")
    assert script.status_code == 200 and script.text == "console.log('tracker')"
    assert "javascript" in script.headers["content-type"]
    assert script.headers["cache-control"] == LONG_CACHE
    assert dashboard.get("/assets/app-1a2b.css").headers["content-type"].startswith("text/css")
    icon = dashboard.get("/favicon.svg")
    assert icon.status_code == 200 and icon.headers["cache-control"] == NO_CACHE
    head = dashboard.head("/")
    assert head.status_code == 200 and head.content == b""


def test_missing_files_and_escapes_are_404(dashboard: httpx.Client) -> None:
    problem(dashboard.get("/assets/gone-9999.js"), 404)
    for path in ("/%2e%2e/secret.txt", "/assets/%2e%2e/%2e%2e/secret.txt", "/..%2fsecret.txt",
                 "/%00"):
        response = dashboard.get(path)
        assert b"not part of the bundle" not in response.content, path
        assert response.status_code in (200, 404), path
    # API paths never fall back to the page.
    problem(dashboard.get(f"{API}/nope"), 404)
    problem(dashboard.get("/api"), 404)
    problem(dashboard.post("/somewhere", json={}), 404)
    ok(dashboard.get(f"{API}/experiments"))


def test_not_built_bundle(settings: Settings, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_app, "DEFAULT_DIST", tmp_path / "no-such-dist")
    srv = ServerThread(settings)
    try:
        with client(srv) as c:
            for path in ("/", "/runs/x"):
                page = c.get(path)
                assert page.status_code == 404 and "not built" in page.text
                assert page.headers["content-type"].startswith("text/html")
            ok(c.get(f"{API}/experiments"))
            ok(c.get("/health"))
    finally:
        srv.stop()


def test_the_committed_bundle_is_served(hc: httpx.Client) -> None:
    """The real dashboard (tracker_server/dashboard/dist) from the default server."""
    page = hc.get("/experiments/some-id")
    assert page.status_code == 200 and '<div id="root">' in page.text
    assert "<script>" not in page.text  # nothing inline: the CSP allows none
    for ref in re.findall(r'(?:src|href)="(/[^"]+)"', page.text):
        asset = hc.get(ref)
        assert asset.status_code == 200, ref
        expected = LONG_CACHE if ref.startswith("/assets/") else NO_CACHE
        assert asset.headers["cache-control"] == expected, ref
    script = hc.get(re.findall(r'src="(/assets/[^"]+\.js)"', page.text)[0])
    assert script.headers.get("content-encoding") == "gzip"  # big text is compressed
