"""The band of a series: min/max across ranks for the mean, and the per-bucket envelope
of a downsampled series, against naive models of both."""

from __future__ import annotations

import asyncio
import itertools
import math
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes.services import FakeServices
from tracker_server.domain.downsample import Reduction, envelope, reduction
from tracker_server.domain.series import Series, aggregate, reduce_points

values_st = st.one_of(st.floats(-1e6, 1e6), st.sampled_from([math.nan, math.inf, -math.inf]))


def _nan_min(xs: list[float]) -> float:
    real = [x for x in xs if not math.isnan(x)]
    return min(real) if real else math.nan


def _nan_max(xs: list[float]) -> float:
    real = [x for x in xs if not math.isnan(x)]
    return max(real) if real else math.nan


def _same(a: np.ndarray, b: list[float]) -> bool:
    return bool(np.array_equal(a, np.array(b, dtype=np.float64), equal_nan=True))


def _buckets(cut: Reduction, n: int) -> list[range]:
    bounds = [*cut.starts.tolist(), n]
    return [range(lo, hi) for lo, hi in itertools.pairwise(bounds)]


@settings(max_examples=200, deadline=None)
@given(st.lists(values_st, min_size=5, max_size=300), st.integers(5, 40),
       st.sampled_from(["minmax", "lttb"]), st.integers(1, 5))
def test_envelope_is_min_and_max_of_each_kept_points_bucket(
        values: list[float], max_points: int, method: str, gap: int) -> None:
    n = len(values)
    steps = np.arange(n, dtype=np.int64) * gap
    vals = np.array(values, dtype=np.float64)
    cut = reduction(steps, vals, max_points, method)
    buckets = _buckets(cut, n)
    assert cut.starts[0] == 0 and np.all(np.diff(cut.starts) > 0)
    assert all(b for b in buckets)  # a partition of the points into non-empty runs
    low, high = envelope(vals, vals, cut)
    owner = [next(b for b in buckets if k in b) for k in cut.index.tolist()]
    assert _same(low, [_nan_min([values[j] for j in b]) for b in owner])
    assert _same(high, [_nan_max([values[j] for j in b]) for b in owner])
    if method == "minmax" and n > max_points:
        # The line goes through each bucket's extremes, so the band is where it turns.
        for b in buckets:
            kept = [values[k] for k in cut.index.tolist() if k in b]
            assert _nan_min(kept) == _nan_min([values[j] for j in b]) or all(
                math.isnan(values[j]) for j in b)


@settings(max_examples=100, deadline=None)
@given(st.lists(values_st, min_size=20, max_size=400), st.integers(5, 30),
       st.sampled_from(["minmax", "lttb"]))
def test_downsampled_series_spans_every_point(values: list[float], max_points: int,
                                              method: str) -> None:
    vals = np.array(values, dtype=np.float64)
    s = Series(0, np.arange(len(values), dtype=np.int64), vals,
               np.zeros(len(values), dtype=np.int64))
    out = reduce_points(s, max_points, method)
    if len(values) <= max_points:
        assert out is s and out.low is None and out.high is None
        return
    assert out.downsampled and out.low is not None and out.high is not None
    assert out.low.shape == out.high.shape == out.steps.shape
    real = ~np.isnan(out.values)
    assert np.all(out.low[real] <= out.values[real]) and np.all(out.values[real] <= out.high[real])
    assert _same(np.array([np.fmin.reduce(out.low)]), [_nan_min(values)])
    assert _same(np.array([np.fmax.reduce(out.high)]), [_nan_max(values)])


rank_st = st.lists(st.tuples(st.integers(0, 30), values_st), min_size=1, max_size=30)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf - inf
@settings(max_examples=150, deadline=None)
@given(st.lists(rank_st, min_size=1, max_size=4))
def test_mean_band_is_min_and_max_across_ranks(ranks: list[list[tuple[int, float]]]) -> None:
    series = []
    per_step: dict[int, list[float]] = {}
    for r, points in enumerate(ranks):
        by_step = dict(points)  # one value per step and rank
        steps = sorted(by_step)
        for st_ in steps:
            per_step.setdefault(st_, []).append(by_step[st_])
        series.append(Series(r, np.array(steps, dtype=np.int64),
                             np.array([by_step[x] for x in steps], dtype=np.float64),
                             np.array(steps, dtype=np.int64)))
    mean = aggregate(series, "mean")
    assert mean is not None and mean.low is not None and mean.high is not None
    steps = sorted(per_step)
    assert mean.steps.tolist() == steps
    assert _same(mean.low, [_nan_min(per_step[x]) for x in steps])
    assert _same(mean.high, [_nan_max(per_step[x]) for x in steps])
    for how in ("min", "max"):
        other = aggregate(series, how)
        assert other is not None and other.low is None and other.high is None


def test_downsampled_mean_band_spans_every_rank() -> None:
    rng = np.random.default_rng(3)
    steps = np.arange(5000, dtype=np.int64)
    ranks = [Series(r, steps, rng.normal(r, 1.0, steps.shape[0]), steps) for r in range(4)]
    ranks[2].values[1234] = -50.0  # one rank's spike, far outside the mean
    mean = aggregate(ranks, "mean")
    assert mean is not None
    out = reduce_points(mean, 100, "minmax")
    assert out.low is not None and out.high is not None and out.steps.shape[0] <= 100
    assert out.low.min() == -50.0
    assert out.high.max() == max(float(s.values.max()) for s in ranks)
    assert np.all(out.low <= out.values) and np.all(out.values <= out.high)


def test_query_service_returns_the_band() -> None:
    fx = FakeServices()
    eid = str(asyncio.run(fx.experiments.create_experiment("e"))[0].experiment_id)
    run = str(asyncio.run(fx.runs.create_run(eid, name="r"))[0].run_id)
    for rank in (0, 1):
        fx.db.add_points(uuid.UUID(run), "loss", np.arange(50), np.arange(50) + 10.0 * rank,
                         rank=rank)
    [mean] = asyncio.run(fx.query.get_series([run], ["loss"], aggregation="mean"))
    assert mean.series.low is not None and mean.series.high is not None
    assert mean.series.low.tolist() == list(np.arange(50.0))
    assert mean.series.high.tolist() == list(np.arange(50) + 10.0)
    per_rank = asyncio.run(fx.query.get_series([run], ["loss"], max_points=10))
    assert [s.series.rank for s in per_rank] == [0, 1]
    for s in per_rank:
        assert s.series.downsampled and s.series.low is not None
        assert s.series.low.min() == 10.0 * s.series.rank
        assert s.series.high is not None and s.series.high.max() == 49 + 10.0 * s.series.rank
    plain = asyncio.run(fx.query.get_series([run], ["loss"], rank=0))
    assert plain[0].series.low is None and not plain[0].series.downsampled
