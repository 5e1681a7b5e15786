"""Offline mode + tracker sync, spool-full policy at run level, params/tags/finish, metadata."""

from __future__ import annotations

from pathlib import Path

import pytest

import tracker_client
from tests.client_support import fast, stored
from tests.support import Api, ServerThread, count_points
from tracker_client._sync import main as sync_main
from tracker_client.cli import main as cli_main
from tracker_proto.v1 import experiments_pb2

pytestmark = pytest.mark.timeout(60)


def test_offline_spools_only_then_sync_uploads_once(
    server: ServerThread, api: Api, database_url: str, tmp_path: Path
) -> None:
    run = tracker_client.init(experiment="offline", mode="offline", run_key="hpc-1",
                              server=server.address, config={"lr": 0.5}, tags={"site": "hpc"},
                              seed=3, options=fast(tmp_path))
    for step in range(1000):
        run.log({"loss": 1 / (step + 1), "acc": step / 1000}, step=step)
    run.set_tags({"stage": "pretrain"})
    report = run.finish(timeout=5)
    assert not report.durable and report.points_pending == 2000 and report.ops_pending == 2
    assert run.run_id is None and run.stats.points_spooled == 2000
    # Nothing reached the server.
    exps = api.experiments.ListExperiments(experiments_pb2.ListExperimentsRequest()).experiments
    assert "offline" not in [e.name for e in exps]
    assert sync_main([str(tmp_path), "--max-time", "30"]) == 0
    # Through the `tracker` CLI; nothing is left, so it is a no-op.
    assert cli_main(["sync", str(tmp_path), "--max-time", "30"]) == 0
    assert not Path(report.spool_path).exists()
    exp = api.experiments.CreateExperiment(experiments_pb2.CreateExperimentRequest(
        name="offline", get_if_exists=True)).experiment
    runs = api.experiments.SearchRuns(experiments_pb2.SearchRunsRequest(
        experiment_ids=[exp.experiment_id])).runs
    assert len(runs) == 1
    r = runs[0]
    assert r.run_key == "hpc-1" and r.seed == 3
    assert dict(r.params) == {"lr": "0.5"}
    assert dict(r.tags) == {"site": "hpc", "stage": "pretrain"}
    assert r.status == experiments_pb2.RUN_STATUS_FINISHED
    counts = stored(database_url, r.run_id)
    assert len(counts) == 2000 and max(counts.values()) == 1


def test_spool_full_policy_is_explicit_and_counted(tmp_path: Path) -> None:
    opts = fast(tmp_path, spool_max_bytes=1 << 20, spool_full_policy="drop_new")
    run = tracker_client.init(experiment="full", mode="offline", options=opts)
    for step in range(100_000):  # ~2 MB of points into a 1 MiB spool
        run.log({"a": step, "b": step}, step=step)
    report = run.close(timeout=10)
    st = run.stats
    assert st.points_dropped > 0 and st.spool_bytes <= 1 << 20
    assert st.points_spooled == 200_000 - st.points_dropped
    assert report.points_pending == st.points_spooled


def test_params_tags_and_finish_reach_the_server(
    server: ServerThread, api: Api, tmp_path: Path
) -> None:
    run = tracker_client.init(experiment="ops", server=server.address, config={"lr": 0.1},
                              options=fast(tmp_path))
    assert run.log_params({"batch": 64}, timeout=10).ops_pending == 0
    assert run.set_tags({"team": "vision"}, timeout=10).ops_pending == 0
    run.log_params({"lr": 0.2})  # immutable param: refused by the server, reported
    run.log({"loss": 1.0})
    report = run.finish("failed", timeout=20)
    assert report.durable, report
    assert run._delivery.control.errors and "ALREADY_EXISTS" in run._delivery.control.errors[0]
    got = api.experiments.GetRun(experiments_pb2.GetRunRequest(run_id=run.run_id)).run
    assert dict(got.params) == {"lr": "0.1", "batch": "64"}
    assert got.tags["team"] == "vision"
    assert got.status == experiments_pb2.RUN_STATUS_FAILED


def test_reproducibility_metadata_recorded(
    server: ServerThread, api: Api, database_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "991")
    monkeypatch.setenv("SLURM_JOB_PARTITION", "gpu")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "node[1-2]")
    with tracker_client.init(experiment="meta", server=server.address, seed=1234,
                             options=fast(tmp_path, system_metrics_interval_s=0.05)) as run:
        run.log({"x": 1.0})
        import time

        time.sleep(0.3)  # a few system-metric samples
    assert run.run_key == "slurm-991"
    got = api.experiments.GetRun(experiments_pb2.GetRunRequest(run_id=run.run_id)).run
    md = got.metadata
    assert got.seed == 1234 and got.slurm_job_id == "991"
    assert md["slurm"]["partition"] == "gpu" and md["slurm"]["node_list"] == "node[1-2]"
    if (Path.cwd() / ".git").exists():
        assert md["git"]["commit"] and "dirty" in md["git"]
    assert md["python"] and md["packages"]["numpy"] and md["command"]
    assert md["host"] and md["seed"] == 1234
    assert got.status == experiments_pb2.RUN_STATUS_FINISHED
    keys = {k for k, *_ in stored(database_url, run.run_id)}
    assert "x" in keys and "sys/cpu_percent" in keys and "sys/process_rss_bytes" in keys
    assert count_points(database_url, run.run_id) >= 5
