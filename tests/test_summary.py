"""run_metric_summary, maintained in the flush transaction, equals a recomputation from
the stored chunks."""

from __future__ import annotations

import math
import threading

import numpy as np
import psycopg

from tests.support import Api, batch_req, columns, open_req, run_stream
from tracker_proto.v1 import experiments_pb2

_POINTS = """
SELECT k.name, c.attempt, p.step, p.value, p.wall_ns
FROM metric_chunks c JOIN metric_keys k USING (key_id),
     unnest(c.steps, c."values", c.wall_ns) WITH ORDINALITY AS p(step, value, wall_ns, ord)
WHERE c.run_id = %s
ORDER BY c.chunk_id, p.ord
"""


def test_summary_matches_recomputation(api: Api, database_url: str) -> None:
    exp = api.experiments.CreateExperiment(
        experiments_pb2.CreateExperimentRequest(name="summary")).experiment
    run = api.experiments.CreateRun(experiments_pb2.CreateRunRequest(
        experiment_id=exp.experiment_id, run_key="r")).run
    rng = np.random.default_rng(7)
    keys = ["loss", "acc", "nan_only", "grad"]

    def writer(name: str, rank: int, attempt: int, step0: int) -> None:
        reqs = [open_req(run.run_id, name, rank=rank, attempt=attempt)]
        for b in range(30):
            n = 400
            step = step0 + b * 100 + np.arange(n) // 4
            values = rng.normal(size=n)
            values[rng.random(n) < 0.05] = math.nan
            key_idx = np.arange(n) % 4
            values[key_idx == 2] = math.nan
            values[(key_idx == 3) & (rng.random(n) < 0.01)] = -math.inf
            reqs.append(batch_req(b + 1, columns(keys, key_idx, step, values)))
        assert run_stream(api, reqs)[-1].ack.committed_through_seq == 30

    threads = [threading.Thread(target=writer, args=(f"w{r}", r, 0, 0)) for r in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # Resume: attempt 1 re-logs from step 1000 on.
    resumed = api.experiments.CreateRun(experiments_pb2.CreateRunRequest(
        experiment_id=exp.experiment_id, run_key="r", resume=True)).run
    assert resumed.attempt == 1
    writer("w-resumed", 0, 1, 1000)

    with psycopg.connect(database_url) as conn:
        points = conn.execute(_POINTS, (run.run_id,)).fetchall()
        stored = {row[0]: row[1:] for row in conn.execute(
            "SELECT k.name, count, first_step, last_step, last_value, last_attempt, min_value, "
            "min_step, max_value, max_step FROM run_metric_summary s JOIN metric_keys k "
            "USING (key_id) WHERE run_id = %s", (run.run_id,))}
    assert set(stored) == set(keys)
    for key in keys:
        pts = [(i, p) for i, p in enumerate(points) if p[0] == key]
        last = max(pts, key=lambda ip: (ip[1][1], ip[1][2], ip[0]))[1]
        finite = [(i, p) for i, p in pts if not math.isnan(p[3])]
        lo = min(finite, key=lambda ip: (ip[1][3], ip[0]))[1] if finite else None
        hi = max(finite, key=lambda ip: (ip[1][3], -ip[0]))[1] if finite else None
        expected = (
            len(pts), min(p[2] for _, p in pts), last[2], last[3], last[1],
            lo[3] if lo else None, lo[2] if lo else None,
            hi[3] if hi else None, hi[2] if hi else None,
        )
        got = stored[key]
        assert got[:3] == expected[:3] and got[4:] == expected[4:], key
        assert np.float64(got[3]).tobytes() == np.float64(expected[3]).tobytes(), key
    assert stored["nan_only"][5] is None and stored["nan_only"][7] is None
    assert stored["loss"][4] == 1  # the resumed attempt holds the last value
