"""Signing in to the dashboard in a real browser against a server with ``auth=required``:
no key means the login page, the key becomes an HttpOnly SameSite=Strict cookie and never
appears in a URL, a viewer can neither create nor finish anything (not even by calling
the API from the page), an operator can, and logging out ends the session."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.browser_support import Watch, chromium, module_database, needs_chromium, screenshot
from tests.conftest import TEMPLATE
from tests.http_support import API, ok
from tests.support import ServerThread
from tests.test_auth import make_key
from tracker_server.config import Settings
from tracker_server.http.sessions import COOKIE_NAME

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = needs_chromium


@dataclass
class Secured:
    server: ServerThread
    keys: dict[str, str]
    experiment: str
    running: str


@pytest.fixture(scope="module")
def secured(pg_admin_url: str, template_url: str, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Secured]:
    tmp = tmp_path_factory.mktemp("browser-auth")
    with module_database(pg_admin_url, TEMPLATE) as url:
        keys = {role: make_key(url, role, name=f"{role}-key") for role in
                ("viewer", "operator")}
        server = ServerThread(Settings(listen="127.0.0.1:0", database_url=url,
                                       data_dir=tmp / "data", flush_interval_ms=20,
                                       db_pool_size=4, auth="required"))
        try:
            with httpx.Client(base_url=server.http_url, timeout=30,
                              headers={"X-API-Key": keys["operator"]}) as c:
                exp = ok(c.post(f"{API}/experiments", json={"name": "secured", "owner": "ops"}),
                         201)
                run = ok(c.post(f"{API}/runs", json={"experiment_id": exp["experiment_id"],
                                                     "name": "still-running"}), 201)
                ok(c.post(f"{API}/runs/{run['run_id']}/metrics",
                          json={"keys": ["loss"], "key_index": [0, 0, 0], "steps": [0, 1, 2],
                                "values": [3.0, 2.0, 1.5]}))
            yield Secured(server, keys, exp["experiment_id"], run["run_id"])
        finally:
            server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@dataclass
class Tab:
    ctx: BrowserContext
    page: Page
    watch: Watch
    urls: list[str]
    posted: list[str]


@pytest.fixture
def tab(browser: Browser, secured: Secured) -> Iterator[Tab]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 720},
                              base_url=secured.server.http_url)
    page = ctx.new_page()
    watch = Watch()
    watch.attach(page)
    urls: list[str] = []
    posted: list[str] = []

    def on_request(r: Any) -> None:
        urls.append(r.url)
        if r.post_data:
            posted.append(f"{r.method} {r.url}")

    page.on("request", on_request)
    try:
        yield Tab(ctx, page, watch, urls, posted)
    finally:
        ctx.close()


def _sign_in(page: Page, key: str) -> None:
    page.get_by_test_id("api-key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def _page_fetch(page: Page, method: str, path: str, body: Any, csrf: bool) -> int:
    """The status of a request the page itself sends with its cookie."""
    status: int = page.evaluate(
        """async ([method, path, body, csrf]) => {
            const headers = {'Content-Type': 'application/json'};
            if (csrf) {
                const s = await (await fetch('/api/v1/session')).json();
                headers['X-CSRF-Token'] = s.csrf_token;
            }
            const r = await fetch(path, {method, headers, body: JSON.stringify(body),
                                         credentials: 'same-origin'});
            return r.status;
        }""", [method, path, body, csrf])
    return status


def test_login_cookie_viewer_and_logout(tab: Tab, secured: Secured) -> None:
    page, key = tab.page, secured.keys["viewer"]
    page.goto(f"/experiments/{secured.experiment}")
    page.wait_for_url(re.compile(r"/login\?next=%2Fexperiments%2F"))
    page.get_by_test_id("api-key").wait_for()
    screenshot(page, "login", full_page=False)

    _sign_in(page, "trk_000000000000_" + "a" * 43)
    page.get_by_text("That API key is not valid").wait_for()
    _sign_in(page, key)
    page.wait_for_url(f"**/experiments/{secured.experiment}")
    page.get_by_test_id("session-role").get_by_text("viewer").wait_for()
    page.get_by_text("still-running").wait_for()

    [cookie] = [c for c in tab.ctx.cookies() if c["name"] == COOKIE_NAME]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
    assert cookie["path"] == "/api" and key not in cookie["value"]
    assert COOKIE_NAME not in page.evaluate("() => document.cookie")
    secret = key.split("_")[-1]
    assert not [u for u in [*tab.urls, page.url] if key in u or secret in u]
    assert any(p.endswith("/api/v1/session") and p.startswith("POST") for p in tab.posted)

    # A viewer is offered no write and cannot write through the API either.
    assert page.get_by_role("button", name="New experiment").count() == 0
    page.goto(f"/runs/{secured.running}")
    page.locator(".live-dot").first.wait_for()
    assert page.get_by_test_id("finish-finished").count() == 0
    for csrf in (True, False):
        assert _page_fetch(page, "POST", f"{API}/runs/{secured.running}/finish",
                           {"status": "finished"}, csrf) == 403
        assert _page_fetch(page, "POST", f"{API}/experiments", {"name": "nope"}, csrf) == 403
    with httpx.Client(base_url=secured.server.http_url,
                      headers={"X-API-Key": secured.keys["operator"]}) as c:
        assert ok(c.get(f"{API}/runs/{secured.running}"))["status"] == "running"
        names = [e["name"] for e in ok(c.get(f"{API}/experiments"))["experiments"]]
        assert "nope" not in names

    page.get_by_test_id("logout").click()
    page.wait_for_url(re.compile("/login"))
    page.get_by_text("Signed out.").wait_for()
    assert not [c for c in tab.ctx.cookies() if c["name"] == COOKIE_NAME]
    page.goto("/")
    page.wait_for_url(re.compile(r"/login$"))  # the start page needs no "next"
    assert page.evaluate("async () => (await fetch('/api/v1/experiments')).status") == 401
    tab.watch.assert_clean()


def test_operator_creates_and_finishes(tab: Tab, secured: Secured) -> None:
    page = tab.page
    page.goto("/login")
    _sign_in(page, secured.keys["operator"])
    page.wait_for_url(re.compile(r"/$"))
    page.get_by_role("button", name="New experiment").click()
    page.get_by_label("Name", exact=True).fill("made-in-the-browser")
    page.get_by_role("button", name="Create", exact=True).click()
    page.wait_for_url(re.compile(r"/experiments/[0-9a-f-]{36}$"))
    page.get_by_role("heading", name="made-in-the-browser").wait_for()

    page.goto(f"/runs/{secured.running}")
    page.get_by_test_id("finish-killed").click()
    page.locator("h1 .badge.status-killed").wait_for()
    assert page.get_by_test_id("finish-finished").count() == 0
    with httpx.Client(base_url=secured.server.http_url,
                      headers={"X-API-Key": secured.keys["viewer"]}) as c:
        assert ok(c.get(f"{API}/runs/{secured.running}"))["status"] == "killed"
    assert not [u for u in tab.urls if secured.keys["operator"].split("_")[-1] in u]
    tab.watch.assert_clean()
