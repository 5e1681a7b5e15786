"""run_metric_summary, maintained in the flush transaction, equals a recomputation over
the points a series read returns: resumed attempts supersede earlier ones from their
first step on, a step logged again keeps its last write, and both move min/max, count
and the last value."""

from __future__ import annotations

import math
import threading
import uuid
from dataclasses import replace

import numpy as np
import psycopg
import pytest

from tests.fault.checks import check_summaries
from tests.support import Api, ServerThread, batch_req, columns, open_req, run_stream
from tracker_proto.v1 import experiments_pb2, query_pb2, query_pb2_grpc
from tracker_server.config import Settings
from tracker_server.storage.migrate import load_migrations, migrate

KEYS = ["loss", "acc", "nan_only", "grad"]


def _batch(rng: np.random.Generator, steps: np.ndarray, spike: float | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    n = steps.shape[0] * 4
    step = np.repeat(steps, 4)
    values = rng.normal(size=n)
    values[rng.random(n) < 0.05] = math.nan
    key_idx = np.tile(np.arange(4), steps.shape[0])
    values[key_idx == 2] = math.nan
    values[(key_idx == 3) & (rng.random(n) < 0.01)] = -math.inf
    if spike is not None:
        values[key_idx == 0] = spike
    return step, values


def _write(api: Api, run_id: str, writer: str, rank: int, attempt: int,
           batches: list[tuple[np.ndarray, np.ndarray]]) -> None:
    reqs = [open_req(run_id, writer, rank=rank, attempt=attempt)]
    for b, (step, values) in enumerate(batches):
        reqs.append(batch_req(b + 1, columns(KEYS, np.tile(np.arange(4), len(step) // 4),
                                             step, values)))
    assert run_stream(api, reqs)[-1].ack.committed_through_seq == len(batches)


def _resume(api: Api, exp_id: str, run_key: str) -> int:
    return api.experiments.CreateRun(experiments_pb2.CreateRunRequest(
        experiment_id=exp_id, run_key=run_key, resume=True)).run.attempt


def test_summary_matches_a_read_through_resumes_and_rewrites(
        api: Api, server: ServerThread, database_url: str) -> None:
    exp = api.experiments.CreateExperiment(
        experiments_pb2.CreateExperimentRequest(name="summary")).experiment
    run = api.experiments.CreateRun(experiments_pb2.CreateRunRequest(
        experiment_id=exp.experiment_id, run_key="r")).run
    rng = np.random.default_rng(7)

    # Attempt 0: three ranks, steps 0..2999; rank 0 has the all-time low at step 2500.
    def attempt0(rank: int) -> None:
        batches = [_batch(rng, np.arange(b * 100, b * 100 + 100)) for b in range(30)]
        if rank == 0:
            values = batches[25][1]
            values[0] = -1e9  # loss at step 2500
        _write(api, run.run_id, f"w{rank}", rank, 0, batches)

    threads = [threading.Thread(target=attempt0, args=(r,)) for r in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not check_summaries(server.address, database_url, run.run_id)

    # Attempt 1 resumes rank 0 from step 1000: the low at 2500 is superseded.
    assert _resume(api, exp.experiment_id, "r") == 1
    _write(api, run.run_id, "w0-a1", 0, 1,
           [_batch(rng, np.arange(1000 + b * 50, 1050 + b * 50)) for b in range(4)])
    problems = check_summaries(server.address, database_url, run.run_id)
    assert not problems, problems
    # Appends of the resumed attempt, then a step logged again, then steps going back.
    _write(api, run.run_id, "w0-a1b", 0, 1, [
        _batch(rng, np.arange(1200, 1300)),
        _batch(rng, np.array([1250, 1251]), spike=1e12),  # a new max, but rewrites
        _batch(rng, np.arange(1100, 1150)),
    ])
    problems = check_summaries(server.address, database_url, run.run_id)
    assert not problems, problems
    # A straggler of attempt 0 (rank 0) after attempt 1 began: partly hidden.
    _write(api, run.run_id, "w0-late", 0, 0, [_batch(rng, np.arange(900, 1100), spike=-5e9)])
    # Rank 1 resumes below its first step: it supersedes all of rank 1's attempt 0.
    _write(api, run.run_id, "w1-a1", 1, 1, [_batch(rng, np.arange(-10, 10))])
    problems = check_summaries(server.address, database_url, run.run_id)
    assert not problems, problems

    with psycopg.connect(database_url) as conn:
        lo = conn.execute(
            "SELECT min_value, min_step FROM run_metric_summary s JOIN metric_keys k "
            "USING (key_id) WHERE run_id = %s AND k.name = 'loss'", (run.run_id,)).fetchone()
        assert lo is not None
        # -5e9 at steps < 1000 of the straggler is visible; -1e9 at 2500 is not.
        assert lo[0] == -5e9 and lo[1] < 1000
        nan_only = conn.execute(
            "SELECT min_value, max_value FROM run_metric_summary s JOIN metric_keys k "
            "USING (key_id) WHERE run_id = %s AND k.name = 'nan_only'",
            (run.run_id,)).fetchone()
    assert nan_only == (None, None)
    # GetBestRuns ranks by the same summary.
    query = query_pb2_grpc.MetricsQueryServiceStub(api.channel)
    best = query.GetBestRuns(query_pb2.GetBestRunsRequest(
        experiment_ids=[exp.experiment_id], key="loss", goal=query_pb2.GOAL_MINIMIZE,
        on=query_pb2.SUMMARY_FIELD_MIN)).runs
    assert best[0].value == -5e9


def test_ties_and_repeated_steps_in_one_flush(api: Api, server: ServerThread,
                                              database_url: str) -> None:
    run_id = api.new_run()
    # Equal values everywhere, steps logged twice within one batch and across ranks.
    reqs = [open_req(run_id, "a", rank=0), batch_req(1, columns(
        ["k"], [0] * 6, [1, 2, 2, 3, 1, 4], [0.0, -0.0, 0.0, 1.0, 1.0, 0.0]))]
    run_stream(api, reqs)
    run_stream(api, [open_req(run_id, "b", rank=1), batch_req(1, columns(
        ["k"], [0] * 3, [4, 4, 4], [1.0, 0.0, 1.0]))])
    problems = check_summaries(server.address, database_url, run_id)
    assert not problems, problems


@pytest.mark.parametrize("first_steps", [[0, 0], [5, 0], [0, 5]])
def test_new_attempt_that_starts_after_the_last_step_is_an_append(
        api: Api, server: ServerThread, database_url: str, first_steps: list[int]) -> None:
    exp = api.experiments.CreateExperiment(
        experiments_pb2.CreateExperimentRequest(name="append", get_if_exists=True)).experiment
    run = api.experiments.CreateRun(experiments_pb2.CreateRunRequest(
        experiment_id=exp.experiment_id, run_key=f"k{first_steps}")).run
    run_stream(api, [open_req(run.run_id, "a"), batch_req(1, columns(
        ["k"], [0] * 10, np.arange(10) + first_steps[0], np.arange(10.0)))])
    _resume(api, exp.experiment_id, f"k{first_steps}")
    run_stream(api, [open_req(run.run_id, "b", attempt=1), batch_req(1, columns(
        ["k"], [0] * 10, np.arange(10) + 10 + first_steps[1], -np.arange(10.0)))])
    problems = check_summaries(server.address, database_url, run.run_id)
    assert not problems, problems


def test_upgrade_repairs_summaries_of_keys_logged_by_several_attempts(
        pg_admin_url: str, settings: Settings) -> None:
    """A database from before series heads: migration 0010 backfills the heads and marks
    the summaries of resumed keys stale; the repair pass recomputes them."""
    name = f"upgrade_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = psycopg.conninfo.make_conninfo(pg_admin_url, dbname=name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, "
                         "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            for m in load_migrations():
                if m.version < 10:
                    conn.execute(m.sql.encode())
                    conn.execute("INSERT INTO schema_migrations VALUES (%s, %s)",
                                 (m.version, m.name))
            exp, run = uuid.uuid4(), uuid.uuid4()
            conn.execute("INSERT INTO experiments (experiment_id, name) VALUES (%s, 'up')",
                         (exp,))
            conn.execute("INSERT INTO runs (run_id, experiment_id, name, attempt) "
                         "VALUES (%s, %s, 'r', 1)", (run, exp))
            key = conn.execute("INSERT INTO metric_keys (name) VALUES ('loss') "
                               "RETURNING key_id").fetchone()
            assert key is not None
            # Attempt 0 logged steps 0..9 (minimum -5 at step 8), attempt 1 resumed at 5.
            for attempt, steps, values in ((0, list(range(10)), [1.0] * 8 + [-5.0, 1.0]),
                                           (1, list(range(5, 8)), [2.0, 3.0, 4.0])):
                conn.execute(
                    "INSERT INTO metric_chunks (run_id, key_id, rank, attempt, first_step, "
                    "last_step, n, steps, \"values\", wall_ns) VALUES "
                    "(%s, %s, 0, %s, %s, %s, %s, %s, %s, %s)",
                    (run, key[0], attempt, min(steps), max(steps), len(steps), steps, values,
                     steps))
            # The old summary: every stored point, superseded ones included.
            conn.execute(
                "INSERT INTO run_metric_summary VALUES (%s, %s, 13, 0, 7, 4.0, 1, 7, "
                "-5.0, 8, 4.0, 7)", (run, key[0]))
        # 0010 and every migration after it (later ones are other features').
        assert migrate(url) == [m.version for m in load_migrations() if m.version >= 10]
        with psycopg.connect(url) as conn:
            heads = conn.execute("SELECT rank, attempt, first_step, last_step FROM "
                                 "metric_series_heads").fetchall()
            stale = conn.execute("SELECT stale FROM run_metric_summary").fetchall()
        assert heads == [(0, 1, 5, 7)] and stale == [(True,)]
        srv = ServerThread(replace(settings, database_url=url, summary_repair_interval_ms=100))
        try:
            problems = check_summaries(srv.address, url, str(run))
        finally:
            srv.stop()
        assert not problems, problems
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count, min_value, min_step FROM run_metric_summary"
                               ).fetchone()
        assert row == (8, 1.0, 0)  # steps 0..4 of attempt 0 and 5..7 of attempt 1
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
