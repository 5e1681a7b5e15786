"""The band of a series over REST (and gRPC): ``min_values`` / ``max_values`` across ranks
for ``aggregate=mean``, the per-bucket envelope when downsampled, absent otherwise."""

from __future__ import annotations

import math

import httpx
import numpy as np

from tests.http_support import API, log, new_run, ok
from tests.query_support import query_stub
from tests.support import Api
from tracker_proto.v1 import query_pb2 as q


def _log_ranks(hc: httpx.Client, rid: str, n: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(5)
    values = {}
    for rank in (0, 1, 2):
        v = rng.normal(rank, 1.0, n)
        if rank == 2:
            v[n // 3] = -40.0  # one rank's spike: the band must reach it
            v[n // 2] = math.nan  # NaN: the mean is NaN there, the band ignores it
        values[rank] = v
        log(hc, rid, rank=rank, keys=["val/loss"], key_index=[0] * n, steps=list(range(n)),
            values=[x if math.isfinite(x) else "NaN" for x in v.tolist()])
    return values


def _floats(column: list[float | str]) -> np.ndarray:
    return np.array([float("nan") if x == "NaN" else x for x in column], dtype=np.float64)


def test_mean_has_the_band_across_ranks(hc: httpx.Client, api: Api) -> None:
    rid = new_run(hc)["run_id"]
    values = _log_ranks(hc, rid, 300)
    stacked = np.vstack([values[r] for r in (0, 1, 2)])
    [mean] = ok(hc.get(f"{API}/runs/{rid}/metrics/val/loss",
                       params={"aggregate": "mean", "max_points": 1000}))["series"]
    assert mean["rank"] is None and not mean["downsampled"]
    assert mean["steps"] == list(range(300))
    assert np.array_equal(_floats(mean["min_values"]), np.nanmin(stacked, axis=0))
    assert np.array_equal(_floats(mean["max_values"]), np.nanmax(stacked, axis=0))
    assert mean["values"][150] == "NaN" and _floats(mean["min_values"])[150] < 5
    # The same band over gRPC (optional repeated fields of MetricSeries).
    [grpc_mean] = query_stub(api).GetMetricSeries(q.GetMetricSeriesRequest(
        run_ids=[rid], keys=["val/loss"], aggregation=q.RANK_AGGREGATION_MEAN)).series
    assert list(grpc_mean.min_values) == _floats(mean["min_values"]).tolist()
    assert list(grpc_mean.max_values) == _floats(mean["max_values"]).tolist()


def test_downsampled_series_carry_their_bucket_envelope(hc: httpx.Client, api: Api) -> None:
    rid = new_run(hc)["run_id"]
    values = _log_ranks(hc, rid, 3000)
    per_rank = ok(hc.get(f"{API}/runs/{rid}/metrics/val/loss",
                         params={"max_points": 100}))["series"]
    assert [s["rank"] for s in per_rank] == [0, 1, 2]
    for s in per_rank:
        assert s["downsampled"] and s["total_points"] == 3000 and len(s["steps"]) <= 100
        low, high, line = (_floats(s[c]) for c in ("min_values", "max_values", "values"))
        assert low.shape == high.shape == line.shape
        real = ~np.isnan(line)
        assert np.all(low[real] <= line[real]) and np.all(line[real] <= high[real])
        assert np.nanmin(low) == np.nanmin(values[s["rank"]])
        assert np.nanmax(high) == np.nanmax(values[s["rank"]])
    [mean] = ok(hc.get(f"{API}/runs/{rid}/metrics/val/loss",
                       params={"aggregate": "mean", "max_points": 100}))["series"]
    assert mean["downsampled"] and len(mean["steps"]) <= 100
    assert np.nanmin(_floats(mean["min_values"])) == -40.0  # the downsampled band spans ranks
    # Zoomed in to fewer points than max_points: full resolution, per-rank, no band.
    zoomed = ok(hc.get(f"{API}/runs/{rid}/metrics/val/loss",
                       params={"max_points": 100, "start": 1000, "end": 1049, "rank": 0}))
    [z] = zoomed["series"]
    assert z["steps"] == list(range(1000, 1050)) and not z["downsampled"]
    assert "min_values" not in z and "max_values" not in z
    [grpc_s] = query_stub(api).GetMetricSeries(q.GetMetricSeriesRequest(
        run_ids=[rid], keys=["val/loss"], max_points=100, rank=1)).series
    assert grpc_s.downsampled and len(grpc_s.min_values) == len(grpc_s.steps)
    plain = query_stub(api).GetMetricSeries(q.GetMetricSeriesRequest(
        run_ids=[rid], keys=["val/loss"], start_step=0, end_step=9, rank=1)).series[0]
    assert not plain.min_values and not plain.max_values
