"""When a series read fills the read cache: a whole read does; a zoomed read only of a
small series (a page zooming many large charts reads just their ranges); answers are the
same either way."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np

from tests.fakes.services import FakeServices
from tracker_server.domain.series_query import ZOOM_FILL_POINTS, SeriesQuery, SeriesRequest

CHUNK = 16_384


def _series(fx: FakeServices, points: int) -> tuple[uuid.UUID, int]:
    eid = str(asyncio.run(fx.experiments.create_experiment("e"))[0].experiment_id)
    run = asyncio.run(fx.runs.create_run(eid, name="r"))[0].run_id
    for lo in range(0, points, CHUNK):  # chunks as the flusher cuts them
        steps = np.arange(lo, min(lo + CHUNK, points))
        fx.db.add_points(run, "loss", steps, np.sin(steps / 1000.0))
    return run, fx.db.key_id("loss")


def _read(query: SeriesQuery, run: uuid.UUID, key: int, req: SeriesRequest) -> list[int]:
    [s] = asyncio.run(query.series(run, key, req))
    return s.steps.tolist()


def test_zoom_into_a_large_series_reads_only_its_range() -> None:
    fx = FakeServices()
    run, key = _series(fx, ZOOM_FILL_POINTS + CHUNK)
    query = SeriesQuery(fx.reader)
    cache = query.cache
    zoom = SeriesRequest(start_step=100_000, end_step=101_499, max_points=2000)
    assert _read(query, run, key, zoom) == list(range(100_000, 101_500))
    assert not cache.has((run, key))
    # A whole read (here small enough for no sketch) fills the cache; zooms then hit it.
    whole = SeriesRequest(max_points=1_000_000, method="none")
    assert len(_read(query, run, key, whole)) == ZOOM_FILL_POINTS + CHUNK
    assert cache.has((run, key))
    hits = cache.hits
    assert _read(query, run, key, zoom) == list(range(100_000, 101_500))
    assert cache.hits == hits + 1


def test_zoom_into_a_small_series_fills_the_cache() -> None:
    fx = FakeServices()
    run, key = _series(fx, 50_000)
    query = SeriesQuery(fx.reader)
    cache = query.cache
    zoom = SeriesRequest(start_step=10, end_step=20, max_points=100)
    assert _read(query, run, key, zoom) == list(range(10, 21))
    assert cache.has((run, key))
    assert _read(query, run, key, zoom) == list(range(10, 21)) and cache.hits == 1
