"""Citus schema mode (migration 0011, storage/citus.py) against a real cluster: a
coordinator and two workers (TRACKER_TEST_BACKEND=citus, .ci/run's second pass), plus
what the same code must keep doing on a single PostgreSQL (every pass).

The ingest exactly-once, query and summary suites run unchanged on the cluster in that
pass; these tests check what is specific to it: where the rows are, that one run per key
holds without the unique constraint Citus refuses, and the upgrade of a populated
database."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest

from tests.citus_support import BACKEND, CitusCluster
from tests.support import Api, ServerThread, batch_req, columns, count_points, open_req, run_stream
from tracker_proto.v1 import experiments_pb2
from tracker_server.config import Settings
from tracker_server.storage.citus import is_citus, keyed_run_id
from tracker_server.storage.migrate import load_migrations, migrate

on_citus = pytest.mark.skipif(BACKEND != "citus",
                              reason="needs the Citus cluster (TRACKER_TEST_BACKEND=citus)")

DISTRIBUTED = ["runs", "run_params", "run_tags", "metric_chunks", "run_metric_summary",
               "metric_series_heads", "writer_offsets", "run_user_summary", "run_metric_goals",
               "run_artifacts"]
REFERENCE = ["experiments", "metric_keys", "api_keys", "server_secrets"]


def _experiment(api: Api, name: str) -> str:
    return str(api.experiments.CreateExperiment(experiments_pb2.CreateExperimentRequest(
        name=name)).experiment.experiment_id)


def _create_run(api: Api, exp_id: str, key: str, **kw: object) -> experiments_pb2.Run:
    return api.experiments.CreateRun(experiments_pb2.CreateRunRequest(
        experiment_id=exp_id, run_key=key, **kw)).run  # type: ignore[arg-type]


@on_citus
def test_run_tables_are_distributed_by_run_id_colocated(database_url: str,
                                                        citus_cluster: CitusCluster) -> None:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT logicalrelid::text, partmethod, "
            "       column_to_column_name(logicalrelid, partkey), colocationid "
            "FROM pg_dist_partition").fetchall()
        placed = conn.execute(
            "SELECT DISTINCT nodeport FROM citus_shards WHERE table_name = 'runs'::regclass"
        ).fetchall()
        constraints = {r[0] for r in conn.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid IN "
            "('runs'::regclass, 'run_params'::regclass, 'run_tags'::regclass)").fetchall()}
    tables = {name: (method, column, coloc) for name, method, column, coloc in rows}
    assert {t: tables[t][:2] for t in DISTRIBUTED} == {t: ("h", "run_id") for t in DISTRIBUTED}
    assert len({tables[t][2] for t in DISTRIBUTED}) == 1  # one co-location group
    assert {t: tables[t][0] for t in REFERENCE} == {t: "n" for t in REFERENCE}
    assert "schema_migrations" not in tables  # a local table of the coordinator
    assert {p for (p,) in placed} == {n.port for n in citus_cluster.nodes[1:]}
    # The foreign keys came back; the unique key Citus refuses is gone.
    assert {"runs_experiment_id_fkey", "run_params_run_id_fkey",
            "run_tags_run_id_fkey"} <= constraints
    assert "runs_experiment_id_run_key_key" not in constraints


def _placement(conn: psycopg.Connection, table: str, run_id: str) -> tuple[int, str]:
    row = conn.execute(
        "SELECT s.nodeport, s.shard_name FROM citus_shards s "
        "WHERE s.shardid = get_shard_id_for_distribution_column(%s, %s::uuid)",
        (table, run_id)).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


@on_citus
def test_a_runs_rows_live_on_one_worker_and_runs_spread_over_both(
        api: Api, server: ServerThread, database_url: str,
        citus_cluster: CitusCluster) -> None:
    exp = _experiment(api, "spread")
    runs = [str(_create_run(api, exp, f"r{i}", params={"lr": "0.1"}).run_id)
            for i in range(16)]

    def write(run_id: str) -> None:
        reqs = [open_req(run_id, f"w-{run_id}")]
        for b in range(5):
            steps = np.arange(b * 100, (b + 1) * 100)
            reqs.append(batch_req(b + 1, columns(["loss", "acc"], np.tile([0, 1], 100),
                                                 np.repeat(steps, 2)[:200],
                                                 np.linspace(0, 1, 200))))
        assert run_stream(api, reqs)[-1].ack.committed_through_seq == 5

    # Concurrent streams: the flushes hold several runs, on both workers.
    threads = [threading.Thread(target=write, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ports = {n.name: n.port for n in citus_cluster.nodes}
    workers_used = set()
    with psycopg.connect(database_url) as conn:
        for run_id in runs:
            homes = {_placement(conn, t, run_id)[0] for t in DISTRIBUTED}
            assert len(homes) == 1, (run_id, homes)  # co-located: one worker per run
            (port,) = homes
            workers_used.add(port)
            # The rows are physically there, in that worker's shard tables.
            with psycopg.connect(citus_cluster.nodes[0].url(conn.info.dbname).replace(
                    f"port={ports['coordinator']}", f"port={port}")) as worker:
                for table in ("metric_chunks", "run_metric_summary", "metric_series_heads",
                              "writer_offsets", "run_params"):
                    shard = _placement(conn, table, run_id)[1]
                    n = worker.execute(f'SELECT count(*) FROM "{shard}" WHERE run_id = %s',
                                       (run_id,)).fetchone()
                    assert n is not None and n[0] > 0, (table, run_id)
    assert workers_used == {ports["worker1"], ports["worker2"]}
    assert all(count_points(database_url, r) == 1000 for r in runs)


@pytest.fixture
def two_servers(settings: Settings) -> Iterator[list[Api]]:
    servers = [ServerThread(settings), ServerThread(settings)]
    apis = [Api(s.address) for s in servers]
    try:
        yield apis
    finally:
        for a in apis:
            a.close()
        for s in servers:
            s.stop()


def test_one_run_per_key_when_two_servers_create_it_at_once(
        two_servers: list[Api], database_url: str) -> None:
    """Citus has no UNIQUE (experiment_id, run_key); the derived run id carries it."""
    exp = _experiment(two_servers[0], "race")
    results: list[experiments_pb2.Run] = []
    errors: list[Exception] = []
    barrier = threading.Barrier(8)

    def create(i: int) -> None:
        barrier.wait()
        try:
            results.append(_create_run(two_servers[i % 2], exp, "job-42",
                                       params={"lr": "0.1"}))
        except Exception as exc:  # collected: a thread's exception would not fail the test
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 8 and len({r.run_id for r in results}) == 1
    assert results[0].run_id == str(keyed_run_id(uuid.UUID(exp), "job-42"))
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM runs WHERE run_key = 'job-42'").fetchone()
    assert row == (1,)
    # A resume through either server starts exactly one new attempt per token.
    resumed = {_create_run(a, exp, "job-42", resume=True, resume_token="t1").attempt
               for a in two_servers}
    assert resumed == {1}


def test_first_runs_of_new_experiments_at_once(two_servers: list[Api]) -> None:
    """Each CreateRun activates its new experiment (a reference table on Citus) while
    others do the same: none deadlocks or waits for a retry."""
    exps = [_experiment(two_servers[0], f"first-{i}") for i in range(8)]
    errors: list[Exception] = []
    barrier = threading.Barrier(16)

    def create(i: int) -> None:
        barrier.wait()
        try:
            _create_run(two_servers[i % 2], exps[i % 8], f"k{i}")
        except Exception as exc:  # collected: a thread's exception would not fail the test
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    statuses = {two_servers[1].experiments.GetExperiment(experiments_pb2.GetExperimentRequest(
        experiment_id=e)).experiment.status for e in exps}
    assert statuses == {experiments_pb2.EXPERIMENT_STATUS_ACTIVE}


def test_citus_mode_is_off_without_the_extension(database_url: str) -> None:
    """On a single PostgreSQL migration 0011 changes nothing (the unique key stays)."""
    if BACKEND == "citus":
        pytest.skip("the single-PostgreSQL pass checks this")
    with psycopg.connect(database_url) as conn:
        assert not is_citus(conn)
        row = conn.execute("SELECT count(*) FROM pg_constraint "
                           "WHERE conname = 'runs_experiment_id_run_key_key'").fetchone()
    assert row == (1,)


@on_citus
def test_upgrade_distributes_a_populated_database(
        citus_cluster: CitusCluster, settings: Settings) -> None:
    """A database migrated up to 0010 with data (a keyed run with a random id, as runs were
    made before) gets distributed by 0011 with its rows, and CreateRun of that key still
    finds that run."""
    name = f"up_{uuid.uuid4().hex[:8]}"
    url = citus_cluster.create_database(name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, "
                         "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            for m in load_migrations():
                if m.version <= 10:
                    conn.execute(m.sql.encode())
                    conn.execute("INSERT INTO schema_migrations VALUES (%s, %s)",
                                 (m.version, m.name))
            exp, run = uuid.uuid4(), uuid.uuid4()
            conn.execute("INSERT INTO experiments (experiment_id, name) VALUES (%s, 'up')",
                         (exp,))
            conn.execute("INSERT INTO runs (run_id, experiment_id, name, run_key) "
                         "VALUES (%s, %s, 'r', 'old-key')", (run, exp))
            conn.execute("INSERT INTO run_params VALUES (%s, 'lr', '0.1')", (run,))
            key = conn.execute("INSERT INTO metric_keys (name) VALUES ('loss') "
                               "RETURNING key_id").fetchone()
            assert key is not None
            conn.execute(
                "INSERT INTO metric_chunks (run_id, key_id, rank, attempt, first_step, "
                "last_step, n, steps, \"values\", wall_ns) VALUES "
                "(%s, %s, 0, 0, 0, 2, 3, '{0,1,2}', '{1,2,3}', '{0,1,2}')", (run, key[0]))
            assert not is_citus(conn)
        assert migrate(url) == [m.version for m in load_migrations() if m.version > 10]
        with psycopg.connect(url) as conn:
            assert is_citus(conn)
            assert count_points(url, str(run)) == 3
            row = conn.execute("SELECT value FROM run_params WHERE run_id = %s",
                               (run,)).fetchone()
            assert row == ("0.1",)
        srv = ServerThread(settings.__class__(**{**settings.__dict__, "database_url": url}))
        api = Api(srv.address)
        try:
            again = _create_run(api, str(exp), "old-key")
            fresh = _create_run(api, str(exp), "new-key")
        finally:
            api.close()
            srv.stop()
        assert again.run_id == str(run)  # found by key, not a second run
        assert fresh.run_id == str(keyed_run_id(exp, "new-key"))
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM runs WHERE run_key = 'old-key'").fetchone()
        assert row == (1,)
    finally:
        citus_cluster.drop_database(name)
