"""``python -m bench dashboard --json PATH``: the dashboard in headless Chromium, and REST
ingest.

Logs one run of ``--metrics`` keys (default 20) of ``--points`` points each (default 1 M)
through the raw ingest stream, starts a server with its HTTP port, and drives the
Debian Chromium (``/usr/bin/chromium``, through Playwright) on the run page:

* ``all_charts_drawn_ms``: from navigation start to the last chart's first draw
  (``window.__trackerCharts[...].drawnAt``), per page load; the first load meets a cold
  read cache, the others a warm one (a reload of the same page);
* ``points_per_series_on_wire``: the most points of any series response (what the page
  downloads per chart, at most 2,000), and the bytes of those responses;
* ``zoom``: drags across a chart to a random step range (1 %-10 % of the run), after
  which every chart of the page re-reads that range. ``requery_p50_ms`` is the median
  time of one range read from sending the request to the last byte of the answer
  (Resource Timing, in the browser); ``requery_with_queueing_p50_ms`` adds the wait for
  one of the browser's 6 connections (20 charts ask at once); ``dragged_chart_ms`` runs
  from the release of the mouse to the redraw of the chart dragged over, and
  ``all_charts_ms`` to the redraw of the last of the page's charts.

Then ``POST /api/v1/runs/{id}/metrics`` with ``--rest-batch`` point columnar batches (JSON
encoded once, up front) from ``--rest-writers`` concurrent writers, each a sequenced
writer of its own run: ``rest_points_per_s``.

Run it alone (it loads both cores). Targets: every chart drawn within 1.5 s, at most
2,000 points per series, zoom re-query p50 within 150 ms, REST ingest >= 300,000 points/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np

from bench.environment import Database, ServerProcess, free_port
from bench.ingest import environment_info
from bench.query import _ingest_series
from bench.report import write_json
from tracker_proto.v1 import experiments_pb2 as ex
from tracker_proto.v1 import experiments_pb2_grpc

CHROMIUM = Path(os.environ.get("TRACKER_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
TARGETS = {"all_charts_drawn_ms": 1500, "points_per_series_on_wire": 2000,
           "zoom_requery_p50_ms": 150, "rest_points_per_s": 300_000}
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 64 << 20)]


def log_run(address: str, metrics: int, points: int) -> tuple[str, list[str], float]:
    """A run with ``metrics`` keys of ``points`` points each (raw stream, 50k batches)."""
    channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    stub = experiments_pb2_grpc.ExperimentServiceStub(channel)
    exp = stub.CreateExperiment(ex.CreateExperimentRequest(
        name="bench-dashboard", get_if_exists=True)).experiment
    run_id = str(stub.CreateRun(ex.CreateRunRequest(experiment_id=exp.experiment_id,
                                                    name="twenty-by-a-million")).run.run_id)
    keys = [f"train/metric_{i:02d}" for i in range(metrics)]
    t0 = time.perf_counter()
    for key in keys:
        _ingest_series(channel, run_id, key, points, 50_000, writer=f"dash-{key}")
    channel.close()
    return run_id, keys, time.perf_counter() - t0


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 1) if values else float("nan")


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _chart_ids(keys: list[str]) -> list[str]:
    return [f"chart-{k}" for k in keys]


def _wait_drawn(page: Any, ids: list[str], timeout_ms: float = 60_000) -> dict[str, Any]:
    page.wait_for_function(
        "ids => ids.every(id => { const c = window.__trackerCharts[id];"
        " return c && !c.loading && c.drawnAt !== null; })", arg=ids, timeout=timeout_ms)
    state: dict[str, Any] = page.evaluate("() => ({...window.__trackerCharts})")
    return state


def measure_page(url: str, run_id: str, keys: list[str], loads: int, zooms: int,
                 seed: int) -> dict[str, Any]:
    """Page loads and zooms in headless Chromium."""
    from playwright.sync_api import sync_playwright

    ids = _chart_ids(keys)
    drawn: list[float] = []
    wire_points: list[int] = []
    wire_bytes: list[int] = []
    requery: list[float] = []
    queued: list[float] = []
    dragged: list[float] = []
    whole: list[float] = []
    rng = random.Random(seed)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        ctx = browser.new_context(viewport={"width": 1600, "height": 1000})
        page = ctx.new_page()

        def on_response(response: Any) -> None:
            if f"/api/v1/runs/{run_id}/metrics/" in response.url and response.ok:
                body = json.loads(response.body())
                wire_bytes.append(int(response.headers.get("content-length", 0) or 0))
                wire_points.extend(len(s["steps"]) for s in body["series"])

        page.on("response", on_response)
        for i in range(loads):
            if i == 0:
                page.goto(f"{url}/runs/{run_id}")
            else:
                page.reload()
            state = _wait_drawn(page, ids)
            drawn.append(max(float(state[c]["drawnAt"]) for c in ids))
        assert all(state[c]["downsampled"] for c in ids), "series should arrive downsampled"

        first = page.get_by_test_id(ids[0]).locator(".u-over")
        for _ in range(zooms):
            box = first.bounding_box()
            assert box is not None
            width = rng.uniform(0.01, 0.10)
            x0 = rng.uniform(0.02, 0.95 - width)
            y = box["y"] + box["height"] / 2
            page.evaluate("() => performance.clearResourceTimings()")
            page.mouse.move(box["x"] + box["width"] * x0, y)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * (x0 + width), y, steps=3)
            t_up = float(page.evaluate("() => performance.now()"))
            page.mouse.up()
            page.wait_for_function(
                "ids => ids.every(id => { const c = window.__trackerCharts[id];"
                " return c && c.requested[0] !== null && !c.loading && c.drawnAt !== null; })",
                arg=ids, timeout=60_000)
            state = page.evaluate("() => ({...window.__trackerCharts})")
            dragged.append(float(state[ids[0]]["drawnAt"]) - t_up)
            whole.append(max(float(state[c]["drawnAt"]) for c in ids) - t_up)
            timings = page.evaluate(
                "() => performance.getEntriesByType('resource')"
                ".filter(e => e.name.includes('end='))"
                ".map(e => [e.responseEnd - e.requestStart, e.duration])")
            requery.extend(t[0] for t in timings)
            queued.extend(t[1] for t in timings)
            page.get_by_test_id("reset-zoom").click()
            _wait_drawn(page, ids)
            page.wait_for_function(
                "id => window.__trackerCharts[id].requested[0] === null", arg=ids[0])
        browser.close()
    return {
        "page_loads": loads,
        "all_charts_drawn_ms": {"cold": round(drawn[0], 1),
                                "warm_median": _median(drawn[1:]) if loads > 1 else None,
                                "all": [round(d, 1) for d in drawn]},
        "points_per_series_on_wire": max(wire_points) if wire_points else 0,
        "series_responses": len(wire_points),
        "series_response_bytes_median": int(statistics.median(wire_bytes)) if wire_bytes else 0,
        "zoom": {"zooms": zooms, "requery_p50_ms": _median(requery),
                 "requery_p90_ms": _p(requery, 0.9), "range_requests": len(requery),
                 "requery_with_queueing_p50_ms": _median(queued),
                 "dragged_chart_p50_ms": _median(dragged), "all_charts_p50_ms": _median(whole)},
    }


def _bodies(batches: int, batch_points: int, writer: str) -> list[bytes]:
    rng = np.random.default_rng(11)
    out = []
    for seq in range(1, batches + 1):
        steps = np.arange((seq - 1) * batch_points, seq * batch_points, dtype=np.int64)
        keys = ["loss", "acc", "lr", "grad_norm"]
        body = {"writer_id": writer, "seq": seq, "keys": keys,
                "key_index": (steps % len(keys)).tolist(), "steps": steps.tolist(),
                "values": rng.normal(size=batch_points).round(6).tolist(),
                "wall_time_ns": (1_700_000_000_000_000_000 + steps * 1_000_000).tolist()}
        out.append(json.dumps(body).encode())
    return out


async def _rest_ingest(url: str, writers: int, total_points: int, batch_points: int
                       ) -> dict[str, Any]:
    batches = max(1, total_points // (writers * batch_points))
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        exp = (await c.post("/api/v1/experiments", json={"name": "bench-rest",
                                                          "get_if_exists": True})).json()
        runs = []
        for w in range(writers):
            r = await c.post("/api/v1/runs", json={"experiment_id": exp["experiment_id"],
                                                    "name": f"rest-{w}"})
            runs.append(r.json()["run_id"])
    bodies = [_bodies(batches, batch_points, f"rest-writer-{w}") for w in range(writers)]
    latencies: list[float] = []

    async def writer(w: int) -> int:
        written = 0
        async with httpx.AsyncClient(base_url=url, timeout=120,
                                     headers={"content-type": "application/json"}) as c:
            for body in bodies[w]:
                t0 = time.perf_counter()
                r = await c.post(f"/api/v1/runs/{runs[w]}/metrics", content=body)
                latencies.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
                written += int(r.json()["points_written"])
        return written

    t0 = time.perf_counter()
    written = sum(await asyncio.gather(*(writer(w) for w in range(writers))))
    elapsed = time.perf_counter() - t0
    expected = writers * batches * batch_points
    if written != expected:
        raise RuntimeError(f"REST ingest wrote {written} points, expected {expected}")
    return {"rest_points_per_s": round(written / elapsed), "rest_writers": writers,
            "rest_batch_points": batch_points, "rest_points": written,
            "rest_batch_body_bytes": len(bodies[0][0]),
            "rest_post_p50_ms": _median(latencies), "rest_post_p99_ms": _p(latencies, 0.99)}


def main(argv: list[str] | None = None) -> int:
    """Seed, measure, print and write JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench dashboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metrics", type=int, default=20, help="keys of the run")
    parser.add_argument("--points", type=int, default=1_000_000, help="points per key")
    parser.add_argument("--loads", type=int, default=5, help="page loads (1 cold + warm)")
    parser.add_argument("--zooms", type=int, default=10)
    parser.add_argument("--rest-writers", type=int, default=8)
    parser.add_argument("--rest-points", type=int, default=4_000_000)
    parser.add_argument("--rest-batch", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default="bench/results/dashboard.json", metavar="PATH",
                        help="write the figures to this file (default: %(default)s)")
    args = parser.parse_args(argv)
    if not CHROMIUM.is_file():
        print(f"no Chromium at {CHROMIUM} (apt-get install chromium)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    load_before = os.getloadavg()[0]
    with Database() as db:
        port = free_port()
        server = ServerProcess(db.conninfo, env={"TRACKER_HTTP_LISTEN": f"127.0.0.1:{port}",
                                                 "TRACKER_AUTH": "off"}).start()
        url = f"http://127.0.0.1:{port}"
        try:
            print(f"logging {args.metrics} x {args.points:,} points ...", file=sys.stderr)
            run_id, keys, ingest_s = log_run(server.address, args.metrics, args.points)
            print("driving Chromium ...", file=sys.stderr)
            page = measure_page(url, run_id, keys, args.loads, args.zooms, args.seed)
            print(f"REST ingest, {args.rest_writers} writers ...", file=sys.stderr)
            rest = asyncio.run(_rest_ingest(url, args.rest_writers, args.rest_points,
                                            args.rest_batch))
        finally:
            server.stop()
    result = {
        "benchmark": "dashboard",
        "seed": {"metrics": args.metrics, "points_per_metric": args.points,
                 "ingest_s": round(ingest_s, 1)},
        **page,
        **rest,
        "targets": TARGETS,
        "loadavg_1m_at_start": load_before,
        "environment": environment_info(),
        "elapsed_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(result, indent=2))
    write_json(args.json, result)
    return 0
