"""The client against a real in-process server: logging, types, stats, params."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import tracker_client
from tests.client_support import fast, stored, values
from tests.support import ServerThread, count_points, iter_points

pytestmark = pytest.mark.timeout(60)


def test_log_types_and_roundtrip(server: ServerThread, database_url: str, tmp_path: Path) -> None:
    run = tracker_client.init(experiment="basic", server=server.address,
                              options=fast(tmp_path), config={"lr": 0.1})
    run.log({"py_float": 0.5, "py_int": 3, "np_f32": np.float32(1.5), "np_i64": np.int64(7),
             "zero_d": np.array(2.25), "nan": math.nan, "inf": -math.inf, "negzero": -0.0})
    run.log({"py_float": 0.25})  # step auto-increments to 1
    run.log_series("series", np.arange(10, 20), np.linspace(0, 1, 10))
    report = run.close(timeout=20)
    assert report.durable, report
    assert run.run_id is not None
    got = values(database_url, run.run_id)
    assert got[("py_float", 0)] == 0.5 and got[("py_float", 1)] == 0.25
    assert got[("py_int", 0)] == 3.0 and got[("np_f32", 0)] == 1.5
    assert got[("np_i64", 0)] == 7.0 and got[("zero_d", 0)] == 2.25
    assert math.isnan(got[("nan", 0)]) and got[("inf", 0)] == -math.inf
    assert math.copysign(1, got[("negzero", 0)]) == -1
    assert got[("series", 19)] == 1.0
    assert count_points(database_url, run.run_id) == 8 + 1 + 10
    st = run.stats
    assert st.points_logged == st.points_acked == 19
    assert st.points_pending == 0 and st.state == "closed"
    assert not report.spool_path or not Path(report.spool_path).exists()


def test_many_points_exact(server: ServerThread, database_url: str, tmp_path: Path) -> None:
    with tracker_client.init(experiment="many", server=server.address,
                             options=fast(tmp_path)) as run:
        for step in range(5000):
            run.log({f"k{i}": step * 0.1 + i for i in range(10)}, step=step)
        run.log_series("big", np.arange(250_000), np.random.rand(250_000))
        report = run.flush(timeout=30)
        assert report.durable, report
    assert run.run_id is not None
    counts = stored(database_url, run.run_id)
    assert sum(counts.values()) == 50_000 + 250_000
    assert max(counts.values()) == 1


def test_log_rejects_non_numbers_at_call_site(server: ServerThread, tmp_path: Path) -> None:
    run = tracker_client.init(experiment="types", server=server.address, options=fast(tmp_path))
    try:
        with pytest.raises((TypeError, ValueError)):
            run.log({"loss": "not a number"})
        with pytest.raises(ValueError):
            run.log_series("s", [1, 2, 3], [1.0, 2.0])
    finally:
        run.close(timeout=10)


def test_invalid_metric_names_are_dropped_and_counted(
    server: ServerThread, database_url: str, tmp_path: Path
) -> None:
    run = tracker_client.init(experiment="names", server=server.address, options=fast(tmp_path))
    run.log({"good": 1.0, "": 2.0, "x" * 300: 3.0})
    report = run.close(timeout=20)
    assert report.durable, report
    assert run.stats.points_invalid == 2
    assert run.run_id is not None
    assert count_points(database_url, run.run_id) == 1


def test_stats_report_send_to_ack_times(server: ServerThread, tmp_path: Path) -> None:
    import time

    run = tracker_client.init(experiment="acks", server=server.address, options=fast(tmp_path))
    assert run.stats.ack_latencies_ms == () and run.stats.ack_percentile_ms(50) is None
    started = time.monotonic()
    for step in range(5):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
        assert run.flush(timeout=10).durable  # one batch per step
    elapsed_ms = (time.monotonic() - started) * 1000
    st = run.stats
    assert len(st.ack_latencies_ms) == 5  # one sample per batch, first send to ack
    assert all(0 < ms <= elapsed_ms for ms in st.ack_latencies_ms)
    p50, p99 = st.ack_percentile_ms(50), st.ack_percentile_ms(99)
    assert p50 is not None and p99 is not None and p50 <= p99 == max(st.ack_latencies_ms)
    run.close(timeout=10)


@pytest.mark.parametrize("resolution_ns", [1_000_000, 1000, 1])
def test_wall_times_stamped_at_the_configured_resolution(
        server: ServerThread, database_url: str, tmp_path: Path, resolution_ns: int) -> None:
    # The client's own clock at Options.wall_time_resolution_ns (1 ms by default); a
    # given float wall time keeps every digit it really holds (~0.2 us today).
    options = fast(tmp_path)
    assert options.wall_time_resolution_ns == 1_000_000  # the default
    options = replace(options, wall_time_resolution_ns=resolution_ns)
    before = time.time_ns()
    with tracker_client.init(experiment="wall-res", server=server.address,
                             options=options) as run:
        run.log({"now": 1.0}, step=0)
        run.log({"given": 2.0}, step=1, wall_time=1_700_000_000.123456789)
        run.log_series("series", np.arange(3), np.zeros(3))
        assert run.flush(timeout=20).durable
    after = time.time_ns()
    assert run.run_id is not None
    walls = {k: w for k, _r, _s, _v, w in iter_points(database_url, run.run_id)}
    assert walls["given"] == 1_700_000_000_123_457_000
    for key in ("now", "series"):
        assert walls[key] % resolution_ns == 0, key
        assert before - resolution_ns < walls[key] <= after, key


@pytest.mark.parametrize("bad", [0, -1, 2_000_000_000])
def test_wall_time_resolution_is_checked(bad: int) -> None:
    with pytest.raises(ValueError, match=r"wall_time_resolution_ns must be 1\.\.1000000000"):
        tracker_client.Options(wall_time_resolution_ns=bad)
