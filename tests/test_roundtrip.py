"""Special floats and int64 extremes survive the wire and PostgreSQL bit-exactly."""

from __future__ import annotations

import math

import numpy as np
import psycopg

from tests.support import Api, batch_req, columns, open_req, run_stream
from tracker_server.storage.points_export import materialize_points

I64_MIN, I64_MAX = -(2**63), 2**63 - 1


def test_special_values_round_trip(api: Api, database_url: str) -> None:
    run_id = api.new_run()
    values = np.array([math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, -1.7976931348623157e308,
                       1.7976931348623157e308, 1.0 / 3.0])
    steps = np.array([I64_MIN, I64_MAX, -1, 0, 1, 2, 3, 4, 5], dtype=np.int64)
    wall = np.array([I64_MIN, I64_MAX, 0, -1, 1, 2, 3, 4, 5], dtype=np.int64)
    cols = columns(["x"], np.zeros(len(values)), steps, values, wall)
    resp = run_stream(api, [open_req(run_id, "w"), batch_req(1, cols)])
    assert resp[-1].ack.committed_through_seq == 1
    with psycopg.connect(database_url) as conn:
        materialize_points(conn, [run_id])
        rows = conn.execute(
            "SELECT step, value, wall_ns FROM metric_points WHERE run_id = %s", (run_id,)
        ).fetchall()
        summary = conn.execute(
            "SELECT count, first_step, last_step, min_value, max_value, min_step, max_step "
            "FROM run_metric_summary WHERE run_id = %s", (run_id,)
        ).fetchone()
    got = {step: (value, w) for step, value, w in rows}
    assert len(got) == len(values)
    for s, v, w in zip(steps.tolist(), values.tolist(), wall.tolist(), strict=True):
        value, got_wall = got[s]
        assert np.float64(value).tobytes() == np.float64(v).tobytes(), (s, v, value)
        assert got_wall == w
    # min/max ignore NaN; -inf/+inf are real extremes.
    assert summary == (9, I64_MIN, I64_MAX, -math.inf, math.inf, -1, I64_MAX)
