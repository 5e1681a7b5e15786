"""Support for the browser tests: the system Chromium driven by Playwright, a page
watcher (dialogs, console errors, CSP violations), and a data set logged through
``tracker_client`` (multi-rank runs, many keys) and the REST API (many runs and
experiments, hostile names).

``playwright install`` cannot download browsers here, so the tests launch the Debian
Chromium at /usr/bin/chromium and skip, saying so, when it is absent.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import psycopg
import pytest

from tests.client_support import fast
from tests.http_support import API, ok
from tests.support import ServerThread

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page

CHROMIUM = Path(os.environ.get("TRACKER_TEST_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
"""Where the tests write the screenshots docs/dashboard.md shows."""

try:
    import playwright.sync_api  # noqa: F401  (only probing that it is installed)

    _HAVE_PLAYWRIGHT = True
except ImportError:
    _HAVE_PLAYWRIGHT = False

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.is_file() or not _HAVE_PLAYWRIGHT,
    reason=f"the browser tests need Chromium at {CHROMIUM} (Debian package `chromium`) and "
    "the playwright package (test extra)" if _HAVE_PLAYWRIGHT or not CHROMIUM.is_file()
    else "playwright is not installed (pip install -e '.[test]')",
)

XSS = ['<img src=x onerror=alert(1)>', '"><script>alert(2)</script>',
       "<svg onload=alert(3)>", "javascript:alert(4)"]
"""Names that execute script if any page renders them as HTML."""

BASE_WALL_S = 1_735_689_600.0
"""2025-01-01T00:00:00Z: logged points carry wall times from here (steady screenshots)."""


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium for one test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watch:
    """What a page did that it must not: dialogs (alert() from an injected script),
    uncaught errors, console errors, CSP violations."""

    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    csp: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        """Start watching ``page``."""
        def on_dialog(d: Dialog) -> None:
            self.dialogs.append(d.message)
            d.dismiss()

        def on_console(m: ConsoleMessage) -> None:
            if "Content Security Policy" in m.text or "Content-Security-Policy" in m.text:
                self.csp.append(m.text)
            elif m.type == "error" and not _expected_console_error(m.text):
                self.console.append(m.text)

        page.on("dialog", on_dialog)
        page.on("console", on_console)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def assert_clean(self) -> None:
        """Nothing ran that should not have."""
        assert not self.dialogs, f"a dialog opened (script ran): {self.dialogs}"
        assert not self.csp, f"CSP violations: {self.csp}"
        assert not self.errors, f"uncaught page errors: {self.errors}"
        assert not self.console, f"console errors: {self.console}"


def _expected_console_error(text: str) -> bool:
    # Chromium logs every non-2xx fetch ("Failed to load resource: ... 400/401/403"); the
    # tests provoke those on purpose (bad filters, viewer writes, signed-out visits).
    return bool(re.search(r"Failed to load resource: the server responded with a status "
                          r"of (400|401|403|404)", text))


def charts(page: Page) -> dict[str, Any]:
    """``window.__trackerCharts``: chart id -> its state (see the dashboard README)."""
    state: dict[str, Any] = page.evaluate("() => ({...window.__trackerCharts})")
    return state


def wait_charts_drawn(page: Page, ids: list[str], timeout_ms: float = 15_000) -> dict[str, Any]:
    """Wait until every chart in ``ids`` has drawn data that is not loading."""
    page.wait_for_function(
        """ids => ids.every(id => {
             const c = window.__trackerCharts[id];
             return c && !c.loading && c.drawnAt !== null;
           })""", arg=ids, timeout=timeout_ms)
    return charts(page)


def screenshot(page: Page, name: str, full_page: bool = True) -> None:
    """docs/images/<name>.png of the page (the caret and animations hidden)."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.mouse.move(0, 0)  # no hover state or chart cursor in the picture
    page.screenshot(path=str(IMAGES / f"{name}.png"), full_page=full_page,
                    animations="disabled", caret="hide")


# --- a database and a server per test module -------------------------------------------

_modules = itertools.count()


@contextmanager
def module_database(pg_admin_url: str, template: str) -> Iterator[str]:
    """A fresh migrated database (a clone of the session's template)."""
    name = f"browser_{os.getpid()}_{next(_modules)}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    try:
        yield psycopg.conninfo.make_conninfo(pg_admin_url, dbname=name)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# --- the data set ------------------------------------------------------------------------

KEYS = ["train/loss", "train/acc", "val/loss", "val.acc", "lr", "grad_norm"]
"""Metric keys of the multi-rank runs ("/" and "." inside keys on purpose)."""
STEPS = 400
LONG_POINTS = 50_000


@dataclass
class Seeded:
    """Ids of what ``seed`` logged."""

    vision: str = ""
    """Experiment with three 2-rank runs of every key in KEYS; val.acc has the goal max
    (define_metric), the other keys none."""
    vision_runs: dict[str, str] = field(default_factory=dict)
    """run name -> run id."""
    long_exp: str = ""
    long_run: str = ""
    """One rank, LONG_POINTS points of "loss": downsampled until zoomed in."""
    sweep: str = ""
    """SWEEP_RUNS runs with one param and one metric each (two pages of runs)."""
    hostile_exp: str = ""
    hostile_run: str = ""
    archived: str = ""
    """The one archived experiment (pretrain-long)."""


SWEEP_RUNS = 55
BULK_EXPERIMENTS = 52


def _curve(rng: np.random.Generator, steps: np.ndarray, start: float, end: float,
           noise: float) -> np.ndarray:
    decay = np.exp(-steps / (len(steps) / 4))
    values: np.ndarray = end + (start - end) * decay + rng.normal(0, noise, len(steps))
    return values


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def _log_multi_rank(server: ServerThread, spool: Path, experiment: str, name: str,
                    config: dict[str, Any], seed: int) -> str:
    import tracker_client

    rng = np.random.default_rng(seed)
    lr = float(config["lr"])
    steps = np.arange(STEPS)
    with _env("SLURM_JOB_ID", str(81230 + seed)):
        runs = [tracker_client.init(experiment=experiment, name=name, config=config,
                                    owner="alice", tags={"dataset": "cifar10", "arch": "resnet18"},
                                    run_key=f"{experiment}-{name}", server=server.address,
                                    rank=rank, seed=seed, options=fast(spool / f"{name}-{rank}"))
                for rank in (0, 1)]
    # Higher accuracy is better: the experiment page ranks val.acc by this goal, where a
    # .last column would otherwise rank lowest first. train/loss defines none.
    runs[0].define_metric("val.acc", goal="max")
    # User summary values, shown on the run page: a number and a special value.
    runs[0].summary["test/acc"] = 0.5 + seed / 100
    runs[0].summary["test/perplexity"] = math.inf
    for rank, run in enumerate(runs):
        scale = 1.0 + 0.08 * rank
        loss = _curve(rng, steps, 2.3, 0.2 + 3 * lr, 0.05) * scale
        acc = np.clip(1 - loss / 2.5, 0, 1)
        for step in steps.tolist():
            point = {"train/loss": loss[step], "train/acc": acc[step],
                     "lr": lr * 0.5 * (1 + math.cos(math.pi * step / STEPS)),
                     "grad_norm": abs(rng.normal(1.0 / (1 + step / 50), 0.05))}
            if step % 10 == 0:
                point["val/loss"] = loss[step] + 0.1
                point["val.acc"] = acc[step] - 0.02
            run.log(point, step=step, wall_time=BASE_WALL_S + seed * 3600 + step * 2.0)
    for run in runs[1:]:
        assert run.close(timeout=30).durable
    assert runs[0].finish(timeout=30).durable
    assert runs[0].run_id is not None
    return str(runs[0].run_id)


def _post(c: httpx.Client, path: str, body: dict[str, Any], status: int = 201) -> Any:
    return ok(c.post(f"{API}{path}", json=body), status)


def _hostile(c: httpx.Client, out: Seeded) -> None:
    out.hostile_exp = _post(c, "/experiments", {
        "name": XSS[0], "owner": XSS[1], "description": XSS[2]})["experiment_id"]
    hostile = _post(c, "/runs", {
        "experiment_id": out.hostile_exp, "name": XSS[1],
        "params": {XSS[0]: XSS[1], "plain": XSS[2]}, "tags": {XSS[2]: XSS[0]},
        "slurm_job_id": XSS[3], "metadata": {"host": XSS[0], "command": [XSS[1]]}})
    out.hostile_run = hostile["run_id"]
    _post(c, f"/runs/{out.hostile_run}/metrics",
          {"keys": [XSS[0], XSS[1]], "key_index": [0, 0, 1, 1], "steps": [0, 1, 0, 1],
           "values": [1.0, 2.0, 3.0, 4.0]}, 200)


def _sweep(c: httpx.Client) -> str:
    sweep: str = _post(c, "/experiments", {
        "name": "lr-sweep", "owner": "carol",
        "description": "55 short trials of a log-spaced learning rate"})["experiment_id"]
    for i in range(SWEEP_RUNS):
        run = _post(c, "/runs", {"experiment_id": sweep, "name": f"trial-{i:02d}",
                                 "params": {"lr": f"{10 ** (-1 - i / 20):.5f}",
                                            "width": str(64 * (1 + i % 4))}})
        _post(c, f"/runs/{run['run_id']}/metrics",
              {"keys": ["score"], "key_index": [0, 0], "steps": [0, 1],
               "values": [0.0, round(0.5 + 0.4 * math.sin(i), 4)]}, 200)
        _post(c, f"/runs/{run['run_id']}/finish", {"status": "finished"}, 200)
    return sweep


def seed(server: ServerThread, spool: Path) -> Seeded:
    """Log the data set the page tests look at, oldest first: the hostile experiment,
    BULK_EXPERIMENTS ablations, resnet-cifar (tracker_client, two ranks), pretrain-long
    (archived), lr-sweep."""
    import tracker_client

    out = Seeded()
    with httpx.Client(base_url=server.http_url, timeout=30) as c:
        _hostile(c, out)
        owners = ("dave", "erin", "frank")
        for i in range(BULK_EXPERIMENTS):
            _post(c, "/experiments", {
                "name": f"ablation-{i:02d}", "owner": owners[i % 3],
                "description": f"dropout {0.1 * (i % 5):.1f}, {2 + i % 4} layers"})

    configs = {"lr-0.1": {"lr": 0.1, "batch": 128, "optimizer": "sgd", "epochs": 30},
               "lr-0.03": {"lr": 0.03, "batch": 128, "optimizer": "sgd", "epochs": 30},
               "lr-0.01": {"lr": 0.01, "batch": 256, "optimizer": "adam", "epochs": 30}}
    for i, (name, config) in enumerate(configs.items()):
        out.vision_runs[name] = _log_multi_rank(server, spool, "resnet-cifar", name, config, i)

    long_run = tracker_client.init(experiment="pretrain-long", name="pretrain", owner="bob",
                                   config={"lr": 3e-4, "warmup": 2000},
                                   server=server.address, options=fast(spool / "long"))
    rng = np.random.default_rng(7)
    steps = np.arange(LONG_POINTS)
    long_run.log_series("loss", steps, _curve(rng, steps, 4.0, 1.2, 0.15))
    long_run.log_series("tokens_per_s", steps, 5e4 + rng.normal(0, 2e3, LONG_POINTS))
    assert long_run.finish(timeout=60).durable
    out.long_run = str(long_run.run_id)

    with httpx.Client(base_url=server.http_url, timeout=30) as c:
        exps = ok(c.get(f"{API}/experiments", params={"page_size": 100}))["experiments"]
        by_name = {e["name"]: e["experiment_id"] for e in exps}
        out.vision, out.long_exp = by_name["resnet-cifar"], by_name["pretrain-long"]
        ok(c.patch(f"{API}/experiments/{out.vision}",
                   json={"description": "ResNet-18 on CIFAR-10: a small learning-rate sweep"}))
        out.archived = out.long_exp
        ok(c.patch(f"{API}/experiments/{out.archived}", json={"status": "archived"}))
        out.sweep = _sweep(c)
    return out
