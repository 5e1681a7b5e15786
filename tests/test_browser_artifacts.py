"""The run page's artifact table in a real browser (headless Chromium) against a real
server: checkpoints logged through ``tracker_client``, one deleted and one truncated on
"shared storage", ``tracker artifacts verify`` run, and the page showing step, kind,
size, uri and the verified state of each. Writes docs/images/run-artifacts.png."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import tracker_client
from tests.browser_support import XSS, Watch, chromium, needs_chromium, screenshot
from tests.client_support import fast
from tests.support import ServerThread
from tracker_client.cli import main as cli_main

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [needs_chromium, pytest.mark.timeout(120)]


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def test_run_page_lists_artifacts_with_their_verified_state(
        server: ServerThread, browser: Browser, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    shared = tmp_path / "shared" / "ckpt"
    shared.mkdir(parents=True)
    run = tracker_client.init(experiment="browser-artifacts", name="ckpt-run",
                              server=server.address, options=fast(tmp_path / "spool"))
    paths = {}
    for step in (100, 200, 300):
        run.log({"loss": 1000 / step}, step=step)
        paths[step] = shared / f"epoch={step // 100}-step={step}.ckpt"
        paths[step].write_bytes(os.urandom(3 * 1024 * 1024 + step))
        run.log_artifact(paths[step], step=step, compute_hash=True)
    run.log_artifact(f"s3://models/{XSS[0]}", kind="model")
    assert run.finish(timeout=20).durable
    paths[100].unlink()
    os.truncate(paths[200], 1024)
    assert cli_main(["artifacts", "verify", str(run.run_id), "--server", server.address]) == 1
    capsys.readouterr()

    ctx = browser.new_context(viewport={"width": 1280, "height": 900},
                              base_url=server.http_url)
    page = ctx.new_page()
    watch = Watch()
    watch.attach(page)
    try:
        page.goto(f"/runs/{run.run_id}")
        page.wait_for_selector("[data-testid=artifacts-table] tbody tr")
        rows = page.locator("[data-testid=artifacts-table] tbody tr").evaluate_all(
            "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))")
        assert rows == [
            ["—", "model", "—", f"s3://models/{XSS[0]}", "not checkable"],
            ["100", "checkpoint", "3 MiB", str(paths[100]), "missing"],
            ["200", "checkpoint", "3 MiB", str(paths[200]), "size differs"],
            ["300", "checkpoint", "3 MiB", str(paths[300]), "ok"],
        ]
        assert page.get_by_role("heading", name="Artifacts (4)").is_visible()
        title = page.locator("[data-testid=verify-state]").nth(2).get_attribute("title")
        assert title is not None and "size is 1024 bytes" in title
        page.locator("[data-testid=artifacts]").scroll_into_view_if_needed()
        screenshot(page, "run-artifacts", full_page=True)
        watch.assert_clean()
    finally:
        ctx.close()
