"""The dashboard in a real browser (headless Chromium) against a real server with data
logged through ``tracker_client``: every page, the filter box, columns, sorting, paging,
best runs, compare, zoom, live updates, hostile names. Each test also writes the
screenshot of its page to docs/images/."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import httpx
import pytest

from tests.browser_support import (
    KEYS,
    LONG_POINTS,
    STEPS,
    SWEEP_RUNS,
    XSS,
    Seeded,
    Watch,
    charts,
    chromium,
    module_database,
    needs_chromium,
    screenshot,
    seed,
    wait_charts_drawn,
)
from tests.client_support import fast
from tests.conftest import TEMPLATE
from tests.http_support import API, ok
from tests.support import ServerThread
from tracker_server.config import Settings
from tracker_server.http.security import CSP

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

pytestmark = needs_chromium

VIEWPORT = {"width": 1280, "height": 860}


@dataclass
class Site:
    server: ServerThread
    data: Seeded
    spool: Path

    @property
    def url(self) -> str:
        return self.server.http_url


@pytest.fixture(scope="module")
def site(pg_admin_url: str, template_url: str, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("browser")
    with module_database(pg_admin_url, TEMPLATE) as url:
        settings = Settings(listen="127.0.0.1:0", database_url=url, data_dir=tmp / "data",
                            flush_interval_ms=20, db_pool_size=4, auth="off")
        server = ServerThread(settings)
        try:
            yield Site(server, seed(server, tmp / "spool"), tmp / "spool")
        finally:
            server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Page]:
    ctx = browser.new_context(viewport=VIEWPORT, base_url=site.url)
    p = ctx.new_page()
    try:
        yield p
    finally:
        ctx.close()


@pytest.fixture
def watch(page: Page) -> Watch:
    w = Watch()
    w.attach(page)
    return w


def _rows(page: Page, table: str) -> list[str]:
    """The name cell of each body row of a table (data-testid): the first cell, or the
    second where the first is a selection checkbox."""
    cells: list[str] = page.locator(f"[data-testid={table}] tbody tr").evaluate_all(
        "rows => rows.map(r => (r.cells[0].querySelector('input[type=checkbox]')"
        " ? r.cells[1] : r.cells[0]).innerText.trim())")
    return cells


def _wait_rows(page: Page, table: str, n: int) -> list[str]:
    page.wait_for_function(
        "([t, n]) => document.querySelectorAll(`[data-testid=${t}] tbody tr`).length === n"
        " && !document.querySelector('.stale')", arg=[table, n])
    return _rows(page, table)


def test_experiments_list_filters_sorts_and_pages(page: Page, watch: Watch, site: Site) -> None:
    response = page.goto("/")
    assert response is not None and response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in CSP and "'unsafe-inline'" not in CSP
    first = _wait_rows(page, "experiments-table", 50)
    screenshot(page, "experiments", full_page=False)
    # Newest first; 52 ablations and 4 others, one of them archived (hidden by default).
    assert first[:3] == ["lr-sweep", "resnet-cifar", "ablation-51"]
    assert "pretrain-long" not in first
    page.get_by_role("button", name="Next →").click()
    second = _wait_rows(page, "experiments-table", 5)
    assert "tok=" in page.url and set(first).isdisjoint(second)
    assert second == ["ablation-03", "ablation-02", "ablation-01", "ablation-00", XSS[0]]
    page.get_by_role("button", name="← Prev").click()
    assert _wait_rows(page, "experiments-table", 50) == first

    page.get_by_role("button", name="Name", exact=True).click()
    page.wait_for_url(re.compile(r"sort=name"))
    names = _rows(page, "experiments-table")
    assert names == sorted(names)
    page.get_by_role("button", name="Name ▲").click()
    page.wait_for_url(re.compile(r"sort=-name"))
    assert _rows(page, "experiments-table") == sorted(names, reverse=True)

    page.goto("/")
    page.get_by_label("Owner").fill("carol")
    page.get_by_role("button", name="Apply").click()
    assert _wait_rows(page, "experiments-table", 1) == ["lr-sweep"]
    assert "owner=carol" in page.url
    page.goto("/?prefix=ablation-0")  # a shared link gives the same view
    assert _wait_rows(page, "experiments-table", 10) == [f"ablation-{i:02d}" for i in
                                                          range(9, -1, -1)]
    page.goto("/")
    page.get_by_label("Status").select_option("archived")
    assert _wait_rows(page, "experiments-table", 1) == ["pretrain-long"]
    page.get_by_label("Status").select_option("all")
    every = _wait_rows(page, "experiments-table", 50)
    assert every[:3] == ["lr-sweep", "pretrain-long", "resnet-cifar"]
    page.get_by_role("button", name="Next →").click()
    assert _wait_rows(page, "experiments-table", 6)[-1] == XSS[0]
    page.get_by_role("button", name="← Prev").click()
    _wait_rows(page, "experiments-table", 50)
    page.get_by_role("link", name="resnet-cifar").click()
    page.wait_for_url(f"**/experiments/{site.data.vision}")
    watch.assert_clean()


def test_experiment_page_filter_columns_sort_best_and_compare(page: Page, watch: Watch,
                                                              site: Site) -> None:
    page.goto(f"/experiments/{site.data.vision}")
    assert sorted(_wait_rows(page, "runs-table", 3)) == ["lr-0.01", "lr-0.03", "lr-0.1"]
    box = page.get_by_test_id("filter-input")

    box.fill('params.optimizer = "adam"')
    box.press("Enter")
    assert _wait_rows(page, "runs-table", 1) == ["lr-0.01"]
    box.fill('params.optimizer = "rmsprop" and status = "finished"')
    box.press("Enter")
    page.get_by_text("No run matches this filter.").wait_for()
    bad = "metrics.`train/loss`.min <"
    box.fill(bad)
    box.press("Enter")
    error = page.get_by_test_id("filter-error")
    error.wait_for()
    assert error.get_attribute("data-position") == str(len(bad))
    assert f"position {len(bad)}" in error.inner_text()
    assert page.get_by_test_id("filter-error-mark").is_visible()
    bad2 = 'params.lr = "0.1" and and'
    box.fill(bad2)
    box.press("Enter")
    page.wait_for_function("p => document.querySelector('[data-testid=filter-error]')"
                           "?.dataset.position === p", arg=str(bad2.index("and and") + 4))
    page.get_by_role("button", name="Clear").click()
    _wait_rows(page, "runs-table", 3)

    # Columns chosen in the picker: two params and a metric summary.
    picker = page.get_by_test_id("column-picker")
    picker.locator("summary").click()
    params = picker.locator("fieldset", has=page.locator("legend", has_text="Params"))
    params.get_by_label("lr", exact=True).check()
    params.get_by_label("optimizer", exact=True).check()
    metric = picker.locator(".metric-choice", has=page.locator(".metric-choice-key",
                                                                has_text=re.compile("^train/loss$")))
    metric.get_by_label("min", exact=True).check()
    acc = picker.locator(".metric-choice", has=page.locator(".metric-choice-key",
                                                             has_text=re.compile("^val.acc$")))
    acc.get_by_label("max", exact=True).check()
    picker.locator("summary").click()
    header = page.get_by_test_id("runs-table").locator("thead")
    header.get_by_role("button", name="train/loss.min").wait_for()
    assert "p=lr" in page.url and "m=min%3Atrain%2Floss" in page.url

    # Sorting is the server's (order_by); a second click flips it.
    header.get_by_role("button", name="train/loss.min").click()
    page.wait_for_url(re.compile("order="))
    assert _wait_rows(page, "runs-table", 3) == ["lr-0.01", "lr-0.03", "lr-0.1"]
    header.get_by_role("button", name="train/loss.min ▲").click()
    page.wait_for_url(re.compile("desc"))
    assert _wait_rows(page, "runs-table", 3) == ["lr-0.1", "lr-0.03", "lr-0.01"]

    # The best run by that column, found by the server's ranking: the runs define no goal
    # for train/loss, so (asked without a mode first) the column's direction, lowest min.
    with page.expect_request(lambda r: "/best?" in r.url and "mode=min" in r.url) as best_req:
        header.get_by_title("Mark the experiment's best run").first.click()
    assert "on=min" in best_req.value.url
    best_row = page.locator("[data-testid=runs-table] tbody tr.best-row")
    best_row.wait_for()
    assert "lr-0.01" in best_row.inner_text()
    assert "lr-0.01" in page.get_by_test_id("best-list").inner_text()
    goal = page.get_by_test_id("best-goal")
    assert goal.inner_text() == "min (no goal defined by the runs)"
    assert not page.locator(".error-box, .best-list .error-text").count()
    page.get_by_label("Select run lr-0.1").check()
    page.get_by_label("Select run lr-0.01").check()
    page.get_by_test_id("compare-button").get_by_text("Compare (2)").wait_for()
    screenshot(page, "experiment")
    page.get_by_role("button", name="Clear", exact=True).click()

    # A shared link shows the same view.
    shared = page.url
    page.goto("about:blank")
    page.goto(shared)
    assert _wait_rows(page, "runs-table", 3) == ["lr-0.1", "lr-0.03", "lr-0.01"]
    page.locator("[data-testid=runs-table] tbody tr.best-row").wait_for()

    # Select the three runs -> compare.
    page.get_by_label("Select all runs on this page").check()
    page.get_by_test_id("compare-button").click()
    page.wait_for_url(re.compile(r"/compare\?run="))
    assert page.url.count("run=") == 3
    watch.assert_clean()


def test_experiment_page_best_run_by_the_goal_the_runs_defined(page: Page, watch: Watch,
                                                                site: Site) -> None:
    """val.acc has the goal max (run.define_metric): the star ranks by it, not by the .last
    column's default (lowest first), and says so; min chosen in the list overrides it."""
    with httpx.Client(base_url=site.url, timeout=30) as c:
        def best(mode: str) -> str:
            ranked = ok(c.get(f"{API}/experiments/{site.data.vision}/best",
                              params={"metric": "val.acc", "mode": mode, "limit": 1}))
            name: str = ranked["runs"][0]["run_name"]
            return name

        highest, lowest = best("max"), best("min")
    assert highest != lowest  # otherwise this test could not tell the goals apart
    page.goto(f"/experiments/{site.data.vision}?m=last:val.acc")
    _wait_rows(page, "runs-table", 3)
    header = page.get_by_test_id("runs-table").locator("thead")
    with page.expect_request(lambda r: "/best?" in r.url) as best_req:
        header.get_by_title("Mark the experiment's best run").click()
    assert "mode=" not in best_req.value.url and "metric=val.acc" in best_req.value.url
    goal = page.get_by_test_id("best-goal")
    goal.wait_for()
    assert goal.inner_text() == "max (defined by the runs)"
    assert goal.get_attribute("data-source") == "runs"
    best_row = page.locator("[data-testid=runs-table] tbody tr.best-row")
    assert highest in best_row.inner_text()
    assert highest in page.get_by_test_id("best-val.acc.last").inner_text()
    assert "best=goal%3Alast%3Aval.acc" in page.url
    screenshot(page, "experiment-goal", full_page=False)

    # Chosen explicitly, min overrides the runs' goal; back to the runs' goal after.
    page.get_by_label("Goal of val.acc.last").select_option("min")
    page.wait_for_function("() => document.querySelector('[data-testid=best-goal]')"
                           "?.textContent === 'min (chosen here)'")
    page.wait_for_function("n => document.querySelector('tr.best-row')?.innerText.includes(n)",
                           arg=lowest)
    assert "best=min%3Alast%3Aval.acc" in page.url
    page.get_by_label("Goal of val.acc.last").select_option("goal")
    page.wait_for_function("() => document.querySelector('[data-testid=best-goal]')"
                           "?.textContent === 'max (defined by the runs)'")
    assert highest in page.locator("[data-testid=runs-table] tbody tr.best-row").inner_text()
    watch.assert_clean()


def test_experiment_pages_of_runs(page: Page, watch: Watch, site: Site) -> None:
    page.goto(f"/experiments/{site.data.sweep}?m=last:score&order=metrics.score.last+desc")
    first = _wait_rows(page, "runs-table", 50)
    page.get_by_role("button", name="Next →").click()
    second = _wait_rows(page, "runs-table", SWEEP_RUNS - 50)
    assert len(set(first) | set(second)) == SWEEP_RUNS
    scores = page.locator("[data-testid=runs-table] tbody td.num").all_inner_texts()
    assert [float(s) for s in scores] == sorted((float(s) for s in scores), reverse=True)
    page.get_by_role("button", name="← Prev").click()
    assert _wait_rows(page, "runs-table", 50) == first
    watch.assert_clean()


def test_run_page_draws_every_chart(page: Page, watch: Watch, site: Site) -> None:
    run_id = site.data.vision_runs["lr-0.1"]
    page.goto(f"/runs/{run_id}")
    ids = [f"chart-{k}" for k in KEYS]
    state = wait_charts_drawn(page, ids)
    for key in KEYS:
        c = state[f"chart-{key}"]
        every = STEPS if not key.startswith("val") else STEPS // 10
        last = STEPS - 1 if not key.startswith("val") else STEPS - 10
        assert c["series"] == ["rank 0", "rank 1"], key
        assert c["points"] == [every, every] and c["range"] == [0, last], (key, c)
        assert c["totalPoints"] == 2 * every and not c["downsampled"] and c["error"] is None
        el = page.get_by_test_id(f"chart-{key}")
        assert el.get_attribute("data-points") == f"{every},{every}"
        assert el.get_attribute("data-range") == f"0-{last}"
        assert el.locator("canvas").count() == 1
    facts = page.locator(".run-info").inner_text()
    for text in ("finished", "81230", "resnet-cifar-lr-0.1", "optimizer", "sgd", "cifar10",
                 "resnet18", "git", "python"):
        assert text in facts, text
    # The user summary values the run set (run.summary[...]), special values spelled out.
    summary_rows = page.get_by_test_id("user-summary").locator("tr")
    assert [summary_rows.nth(i).inner_text().split("\t") for i in range(2)] == [
        ["test/acc", "0.5"], ["test/perplexity", "Inf"]]
    screenshot(page, "run")

    # Mean across ranks with its min/max band.
    with page.expect_request(lambda r: "aggregate=mean" in r.url):
        page.get_by_test_id("rank-view").select_option("mean")
    page.wait_for_function("() => window.__trackerCharts['chart-train/loss']?.series[0] === "
                           "'mean' && !window.__trackerCharts['chart-train/loss'].loading")
    mean = wait_charts_drawn(page, ids)["chart-train/loss"]
    assert mean["points"] == [STEPS] and mean["series"] == ["mean"]
    bands = page.evaluate("""async id => {
        const r = await fetch(`/api/v1/runs/${id}/metrics/train%2Floss?aggregate=mean`);
        const s = (await r.json()).series[0];
        return [s.min_values.length, s.max_values.length, s.values.length];
    }""", run_id)
    assert bands == [STEPS, STEPS, STEPS]

    # Log scale, smoothing and wall time change the drawing, not what was read.
    page.get_by_test_id("log-scale").check()
    page.wait_for_url(re.compile("log=1"))
    page.get_by_test_id("smoothing").fill("0.6")
    page.wait_for_url(re.compile("smooth=0.6"))
    page.get_by_role("button", name="wall time").click()
    page.wait_for_url(re.compile("x=wall"))
    smoothed = wait_charts_drawn(page, ids)["chart-train/loss"]
    assert smoothed["points"] == [STEPS] and smoothed["range"] == [0, STEPS - 1]
    page.get_by_placeholder("filter metrics").fill("val")
    page.wait_for_function("() => document.querySelectorAll('.chart[data-testid^=chart-]')"
                           ".length === 2")  # val/loss and val.acc
    assert page.get_by_test_id("chart-val/loss").is_visible()
    watch.assert_clean()


def _drag(page: Page, chart_id: str, x0: float, x1: float) -> None:
    over = page.get_by_test_id(chart_id).locator(".u-over")
    box = over.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * x0, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * x1, y, steps=4)
    page.mouse.up()


def test_zoom_rereads_the_range_at_full_resolution(page: Page, watch: Watch, site: Site) -> None:
    page.goto(f"/runs/{site.data.long_run}")
    ids = ["chart-loss", "chart-tokens_per_s"]
    before = wait_charts_drawn(page, ids)["chart-loss"]
    assert before["downsampled"] and before["totalPoints"] == LONG_POINTS
    assert before["points"][0] <= 2000 and before["range"] == [0, LONG_POINTS - 1]
    loss = page.get_by_test_id("chart-loss")
    assert loss.get_attribute("data-downsampled") == "true"

    zoomed: list[str] = []
    page.on("request", lambda r: zoomed.append(r.url) if "start=" in r.url else None)
    _drag(page, "chart-loss", 0.50, 0.52)
    page.wait_for_url(re.compile(r"from=\d+&to=\d+"))
    page.wait_for_function("() => { const c = window.__trackerCharts['chart-loss'];"
                           " return c && c.requested[0] !== null && !c.loading && c.drawnAt; }")
    after = wait_charts_drawn(page, ids)
    c = after["chart-loss"]
    lo, hi = (int(v) for v in c["requested"])
    assert 0 < lo < hi < LONG_POINTS and hi - lo + 1 <= 2000
    assert not c["downsampled"] and c["points"] == [hi - lo + 1] and c["range"] == [lo, hi]
    assert c["totalPoints"] == hi - lo + 1
    assert loss.get_attribute("data-requested-range") == f"{lo}-{hi}"
    assert loss.get_attribute("data-downsampled") == "false"
    # Every chart of the page re-read that range.
    assert after["chart-tokens_per_s"]["range"] == [lo, hi]
    assert any(f"start={lo}" in u and f"end={hi}" in u and "/metrics/loss" in u
               for u in zoomed), zoomed
    assert any("/metrics/tokens_per_s" in u for u in zoomed)

    page.get_by_test_id("reset-zoom").click()
    page.wait_for_function("() => { const c = window.__trackerCharts['chart-loss'];"
                           " return c && c.requested[0] === null && !c.loading && c.drawnAt; }")
    assert charts(page)["chart-loss"]["downsampled"]
    watch.assert_clean()


def test_compare_three_runs(page: Page, watch: Watch, site: Site) -> None:
    runs = site.data.vision_runs
    query = "&".join(f"run={runs[n]}" for n in ("lr-0.1", "lr-0.03", "lr-0.01"))
    page.goto(f"/compare?{query}&key=train/loss")
    state = wait_charts_drawn(page, ["chart-train/loss"])["chart-train/loss"]
    assert state["series"] == ["lr-0.1", "lr-0.03", "lr-0.01"]
    assert state["points"] == [STEPS] * 3 and state["range"] == [0, STEPS - 1]
    diff = page.get_by_test_id("params-diff")
    rows = diff.locator("tbody tr")
    differs = {r.locator("th, td").first.inner_text().strip(): r.get_attribute("data-differs")
               for r in rows.all()}
    assert differs == {"batch": "true", "epochs": "false", "lr": "true", "optimizer": "true"}
    assert "0.17287" in page.get_by_test_id("compare-metrics").inner_text()
    screenshot(page, "compare")
    page.get_by_test_id("compare-metric").select_option("val.acc")
    page.wait_for_function("() => window.__trackerCharts['chart-val.acc']?.drawnAt")
    assert charts(page)["chart-val.acc"]["points"] == [STEPS // 10] * 3
    watch.assert_clean()


def test_compare_marks_the_best_run_by_the_goal(page: Page, watch: Watch, site: Site) -> None:
    """val.acc has the goal max (define_metric): its row says so and marks the cell of the
    run with the highest last val.acc; train/loss defines no goal and marks nothing."""
    names = ["lr-0.1", "lr-0.03", "lr-0.01"]
    ids = [site.data.vision_runs[n] for n in names]
    with httpx.Client(base_url=site.url, timeout=30) as c:
        answer = ok(c.get(f"{API}/compare", params=[("run_id", r) for r in ids]))
    rows = {m["key"]: m for m in answer["metrics"]}
    last = [s["last_value"] for s in rows["val.acc"]["summaries"]]
    assert len(set(last)) == len(last)  # one best, or this test could not tell
    highest = names[last.index(max(last))]
    # The server's choice agrees with the data (the page shows the server's choice).
    assert rows["val.acc"]["goal"] == "max" and names[rows["val.acc"]["best_cell"]] == highest
    assert rows["train/loss"]["goal"] is None and rows["train/loss"]["best_cell"] is None

    page.goto("/compare?" + urlencode([("run", r) for r in ids] + [("key", "val.acc")]))
    table = page.get_by_test_id("compare-metrics")
    table.locator("td[data-best]").first.wait_for()
    header = [t.strip() for t in table.locator("thead th").all_inner_texts()][1:]
    assert header == names

    def row(key: str) -> Locator:
        return table.locator("tbody tr").filter(
            has=page.get_by_role("button", name=key, exact=True))

    acc = row("val.acc")
    assert acc.locator("th").inner_text().strip() == "val.acc ↑ max"
    marked = acc.locator("td").evaluate_all("tds => tds.map(td => td.dataset.best === 'true')")
    assert marked == [n == highest for n in names]
    best = acc.locator("td[data-best]")
    assert best.get_by_role("img", name="best (max)").count() == 1
    assert best.evaluate("td => getComputedStyle(td).fontWeight") == "700"
    assert table.get_by_role("img", name=re.compile(r"^best")).count() == 1

    loss = row("train/loss")
    assert loss.locator("th").inner_text().strip() == "train/loss"
    assert loss.locator("td[data-best], .best-star, .metric-goal").count() == 0
    watch.assert_clean()


def test_live_run_streams_into_the_open_page(page: Page, watch: Watch, site: Site) -> None:
    import tracker_client

    run = tracker_client.init(experiment="live-demo", name="live", server=site.server.address,
                              options=replace(fast(site.spool / "live"), flush_interval_s=0.05))
    logged: dict[int, float] = {}
    stop = threading.Event()

    def train() -> None:
        step = 20
        while not stop.is_set():
            run.log({"loss": 1.0 / (step + 1), "acc": step / 1000}, step=step)
            logged[step] = time.monotonic()
            step += 1
            time.sleep(0.05)

    for step in range(20):
        run.log({"loss": 1.0 / (step + 1), "acc": step / 1000}, step=step)
    assert run.flush(timeout=10).durable
    page.goto(f"/runs/{run.run_id}")
    page.locator(".live-dot").first.wait_for()
    wait_charts_drawn(page, ["chart-loss", "chart-acc"])
    worker = threading.Thread(target=train, daemon=True)
    worker.start()
    try:
        lags = []
        for target in (30, 50, 70):
            while target not in logged:
                time.sleep(0.01)
            page.wait_for_function(
                "t => (window.__trackerCharts['chart-loss']?.range?.[1] ?? -1) >= t",
                arg=target, timeout=5000)
            lags.append(time.monotonic() - logged[target])
        assert max(lags) <= 2.0, f"new points took {lags} s to appear"
        assert page.get_by_test_id("chart-loss").get_attribute("data-downsampled") == "false"
    finally:
        stop.set()
        worker.join(5)
    last = max(logged)
    assert run.finish(timeout=10).durable
    # The page notices the end (run re-read every 2 s), draws the last points, stops.
    page.locator("h1 .badge.status-finished").wait_for(timeout=6000)
    page.wait_for_function("t => window.__trackerCharts['chart-loss']?.range?.[1] === t",
                           arg=last, timeout=5000)
    assert page.locator(".live-dot").count() == 0
    points = charts(page)["chart-loss"]["points"]
    assert points == [last + 1]
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "/metrics/" in r.url else None)
    page.wait_for_timeout(2500)
    assert polls == [], f"still polling after the run ended: {polls}"
    watch.assert_clean()


def test_hostile_names_are_text(page: Page, watch: Watch, site: Site) -> None:
    data = site.data
    vision = data.vision_runs["lr-0.1"]
    views = [
        "/?" + urlencode({"prefix": "<img"}),
        f"/experiments/{data.hostile_exp}?" + urlencode({"p": XSS[0], "m": f"last:{XSS[1]}"}),
        f"/runs/{data.hostile_run}",
        "/compare?" + urlencode([("run", data.hostile_run), ("run", vision), ("key", XSS[0])]),
    ]
    for path in views:
        page.goto(path)
        page.wait_for_function(
            "xs => xs.some(x => document.querySelector('main')?.innerText.includes(x))",
            arg=XSS[:2])
        page.wait_for_timeout(300)  # let the rest of the page's answers arrive too
        assert page.locator("main img, main script, main iframe").count() == 0, path
        assert page.evaluate("() => document.querySelectorAll("
                             "'[onerror], [onload], [href^=javascript]').length") == 0, path
    # The run page shows every one of them as text: name, params, tags, SLURM job,
    # metadata, metric keys (chart titles).
    page.goto(f"/runs/{data.hostile_run}")
    wait_charts_drawn(page, [f"chart-{XSS[0]}", f"chart-{XSS[1]}"])
    text = page.locator("main").inner_text()
    for s in XSS:
        assert s in text, s
    assert page.locator("h1").inner_text().startswith(XSS[1])  # the run's name
    assert page.get_by_test_id(f"chart-{XSS[0]}").locator("h3").inner_text() == XSS[0]
    watch.assert_clean()
