"""QueryService against the in-memory fakes: limits, the run x key loop, exports,
latest values, rankings and comparisons."""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

import numpy as np
import pytest

from tests.fakes.services import FakeServices
from tests.unit.test_experiment_service import fails
from tracker_server.domain.errors import Code
from tracker_server.domain.series import Series


@pytest.fixture
def fx() -> FakeServices:
    return FakeServices()


def _setup(fx: FakeServices, runs: int = 2) -> tuple[str, list[str]]:
    eid = str(asyncio.run(fx.experiments.create_experiment("e"))[0].experiment_id)
    ids = [str(asyncio.run(fx.runs.create_run(eid, name=f"r{i}", params={"i": str(i)}))[0]
               .run_id) for i in range(runs)]
    return eid, ids


def _add(fx: FakeServices, run: str, key: str, steps: Any, values: Any, **kw: Any) -> None:
    fx.db.add_points(uuid.UUID(run), key, steps, values, **kw)


def test_series_limits_name_the_field(fx: FakeServices) -> None:
    _, (run, _) = _setup(fx)
    q = fx.query
    many = [str(uuid.uuid4()) for _ in range(101)]
    fails(q.get_series([], ["x"]), Code.INVALID_ARGUMENT, "run_ids")
    fails(q.get_series(many, ["x"]), Code.INVALID_ARGUMENT, "run_ids")
    fails(q.get_series([run], []), Code.INVALID_ARGUMENT, "keys")
    fails(q.get_series([run], [f"k{i}" for i in range(101)]), Code.INVALID_ARGUMENT, "keys")
    fails(q.get_series(many[:6], [f"k{i}" for i in range(100)]), Code.INVALID_ARGUMENT, "keys")
    fails(q.get_series([run], [""]), Code.INVALID_ARGUMENT, "keys[]")
    fails(q.get_series([run], ["x"], start_step=5, end_step=4), Code.INVALID_ARGUMENT,
          "start_step")
    for bad in (3, -1, 100_001):
        fails(q.get_series([run], ["x"], max_points=bad), Code.INVALID_ARGUMENT, "max_points")
    err = fails(q.get_series([run], ["x"], downsampling="7"), Code.INVALID_ARGUMENT,
                "downsampling")
    assert "minmax" in err.message
    fails(q.get_series([run], ["x"], aggregation="median"), Code.INVALID_ARGUMENT, "aggregation")
    fails(q.get_series([run], ["x"], aggregation="mean", rank=0), Code.INVALID_ARGUMENT, "rank")
    missing = str(uuid.uuid4())
    assert missing in fails(q.get_series([run, missing], ["x"]), Code.NOT_FOUND).message


def test_series_loops_runs_then_keys_and_downsamples(fx: FakeServices) -> None:
    _, (a, b) = _setup(fx)
    _add(fx, a, "loss", np.arange(1000), np.linspace(1, 0, 1000))
    _add(fx, a, "acc", [0, 1], [0.1, 0.2])
    _add(fx, b, "loss", [0, 1, 2], [3.0, 2.0, 1.0], rank=1)
    _add(fx, b, "loss", [0, 1, 2], [5.0, 4.0, 3.0], rank=0)
    got = asyncio.run(fx.query.get_series([a, b, a], ["loss", "acc", "nothing"], max_points=10))
    assert [(str(s.run_id), s.key, s.series.rank) for s in got] == [
        (a, "loss", 0), (a, "acc", 0), (b, "loss", 0), (b, "loss", 1)]
    loss_a = got[0].series
    assert loss_a.total_points == 1000 and loss_a.downsampled and len(loss_a.steps) <= 10
    assert loss_a.steps[0] == 0 and loss_a.steps[-1] == 999  # the ends survive
    mean = asyncio.run(fx.query.get_series([b], ["loss"], aggregation="mean"))
    assert [(s.series.rank, s.aggregation) for s in mean] == [(-1, "mean")]
    assert mean[0].series.values.tolist() == [4.0, 3.0, 2.0]
    one = asyncio.run(fx.query.get_series([b], ["loss"], rank=1, start_step=1))
    assert [s.series.steps.tolist() for s in one] == [[1, 2]]
    err = fails(fx.query.get_series([a], ["loss"], downsampling="none", max_points=100),
                Code.INVALID_ARGUMENT, "max_points")
    assert "1000 points" in err.message


def test_export_checks_before_it_streams(fx: FakeServices) -> None:
    _, (run, _) = _setup(fx)
    _add(fx, run, "x", np.arange(25), np.arange(25.0), rank=0)
    _add(fx, run, "x", np.arange(3), np.zeros(3), rank=2)

    async def collect(**kw: Any) -> list[Series]:
        pieces = await fx.query.export_series(run, "x", **kw)
        return [p async for p in pieces]

    got = asyncio.run(collect(points_per_message=10))
    assert [(p.rank, len(p.steps)) for p in got] == [(0, 10), (0, 10), (0, 5), (2, 3)]
    ranged = asyncio.run(collect(rank=0, start_step=5, end_step=9))
    assert [p.steps.tolist() for p in ranged] == [[5, 6, 7, 8, 9]]

    async def nothing() -> list[Series]:
        return [p async for p in await fx.query.export_series(run, "never")]

    assert asyncio.run(nothing()) == []
    # Errors come from the await, before any piece: a streaming response can still fail.
    fails(fx.query.export_series(str(uuid.uuid4()), "x"), Code.NOT_FOUND)
    fails(fx.query.export_series(run, ""), Code.INVALID_ARGUMENT, "key")
    fails(fx.query.export_series("x", "x"), Code.INVALID_ARGUMENT, "run_id")
    fails(fx.query.export_series(run, "x", points_per_message=100_001), Code.INVALID_ARGUMENT,
          "points_per_message")
    fails(fx.query.export_series(run, "x", start_step=2, end_step=1), Code.INVALID_ARGUMENT,
          "start_step")


def test_keys_and_latest(fx: FakeServices) -> None:
    _, (a, b) = _setup(fx)
    _add(fx, a, "b", [0, 1, 2], [3.0, 1.0, 2.0])
    _add(fx, a, "b", [0], [9.0], rank=2)
    _add(fx, a, "a", [5], [math.nan])
    keys = asyncio.run(fx.query.list_metric_keys(a))
    assert [(k.summary.key, k.ranks) for k in keys] == [("a", [0]), ("b", [0, 2])]
    assert keys[0].summary.min_value is None and keys[1].summary.max_value == 9.0
    latest = asyncio.run(fx.query.latest_metrics([b, a], ["b"]))
    assert [(str(r.run_id), [s.key for s in r.metrics]) for r in latest] == [(b, []), (a, ["b"])]
    everything = asyncio.run(fx.query.latest_metrics([a]))
    assert [s.key for s in everything[0].metrics] == ["a", "b"]
    fails(fx.query.latest_metrics([]), Code.INVALID_ARGUMENT, "run_ids")
    fails(fx.query.latest_metrics([a], [f"k{i}" for i in range(1001)]), Code.INVALID_ARGUMENT,
          "keys")
    fails(fx.query.latest_metrics([str(uuid.uuid4())]), Code.NOT_FOUND)
    fails(fx.query.list_metric_keys(str(uuid.uuid4())), Code.NOT_FOUND)
    fails(fx.query.list_metric_keys("nope"), Code.INVALID_ARGUMENT, "run_id")


def test_best_runs(fx: FakeServices) -> None:
    eid, runs = _setup(fx, runs=4)
    for run, values in zip(runs, ([0.5, 0.2], [0.4, 0.3], [math.nan], [0.1, 0.9]),
                           strict=True):
        _add(fx, run, "loss", list(range(len(values))), values)
    best = asyncio.run(fx.query.ranking([eid], "loss", maximize=False)).runs
    assert [str(r.run_id) for r in best] == [runs[0], runs[1], runs[3]]  # last; NaN left out
    assert best[0].value == 0.2 and best[0].step == 1
    low = asyncio.run(fx.query.ranking([eid], "loss", maximize=False, on="min",
                                      limit=1)).runs
    assert [(str(r.run_id), r.value, r.step) for r in low] == [(runs[3], 0.1, 0)]
    top = asyncio.run(fx.query.ranking([eid], "loss", maximize=True,
                                       filter_text="params.i < 3")).runs
    assert [str(r.run_id) for r in top] == [runs[1], runs[0]]
    fails(fx.query.ranking([eid], "loss", maximize=None), Code.INVALID_ARGUMENT, "goal")
    fails(fx.query.ranking([eid], "loss", maximize=True, on="median"),
          Code.INVALID_ARGUMENT, "on")
    fails(fx.query.ranking([eid], "loss", maximize=True, limit=1001),
          Code.INVALID_ARGUMENT, "limit")
    fails(fx.query.ranking([eid], "", maximize=True), Code.INVALID_ARGUMENT, "key")
    fails(fx.query.ranking([eid], "loss", maximize=True, filter_text="nope ="),
          Code.INVALID_ARGUMENT, "filter")
    missing = str(uuid.uuid4())
    assert missing in fails(fx.query.ranking([missing], "loss", maximize=True),
                            Code.NOT_FOUND).message


def test_compare_runs(fx: FakeServices) -> None:
    _, (a, b) = _setup(fx)
    _add(fx, a, "loss", [0], [math.nan])
    _add(fx, b, "loss", [0], [math.nan])
    _add(fx, a, "acc", [0], [0.5])
    c = asyncio.run(fx.query.compare_runs([b, a, b]))
    assert [str(r.run_id) for r in c.runs] == [b, a]  # duplicates dropped, order kept
    assert [(p.key, p.values, p.differs) for p in c.params] == [("i", ["1", "0"], True)]
    assert [(m.key, m.differs) for m in c.metrics] == [("acc", True), ("loss", False)]
    missing = str(uuid.uuid4())
    assert missing in fails(fx.query.compare_runs([a, missing]), Code.NOT_FOUND).message
    fails(fx.query.compare_runs([str(uuid.uuid4()) for _ in range(101)]),
          Code.INVALID_ARGUMENT, "run_ids")
