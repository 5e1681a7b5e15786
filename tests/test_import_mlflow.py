"""``tracker import mlflow`` against a real MLflow tracking server (sqlite backend on
127.0.0.1): experiments, runs, params, tags, status, metric steps and timestamps, and a
second import that sends nothing twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mlflow", reason="needs mlflow (pip install 'tracker[peers]')")

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

import tracker_client
from bench.peers import MlflowServer
from tests.support import ServerThread
from tracker_client.cli import main

pytestmark = pytest.mark.timeout(240)
T0_MS = 1_700_000_000_000


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` with a sqlite store, for this module."""
    root = tmp_path_factory.mktemp("mlflow")
    server = MlflowServer(f"sqlite:///{root / 'mlflow.db'}", workers=1,
                          log_path=root / "server.log")
    server.start(timeout_s=180)
    try:
        yield server.url
    finally:
        server.stop()


def log_mlflow(url: str, experiment: str) -> dict[str, Any]:
    """Three runs (finished, failed, still running) and a deleted one."""
    client = MlflowClient(tracking_uri=url)
    exp_id = client.create_experiment(experiment)
    ids: dict[str, Any] = {}
    for name, status in (("done", "FINISHED"), ("crashed", "FAILED"), ("live", None)):
        run = client.create_run(exp_id, run_name=name, start_time=T0_MS)
        rid = run.info.run_id
        metrics = [Metric("loss", 1.0 / (s + 1), T0_MS + 10 * s, s) for s in range(30)]
        metrics += [Metric("val/acc", s / 10, T0_MS + 100 * s + 5, 10 * s) for s in range(3)]
        client.log_batch(rid, metrics=metrics, params=[Param("lr", "0.01"),
                                                       Param("model.depth", "4")],
                         tags=[RunTag("team", "vision")])
        if status:
            client.set_terminated(rid, status=status, end_time=T0_MS + 60_000)
        ids[name] = rid
    gone = client.create_run(exp_id, run_name="deleted")
    client.log_metric(gone.info.run_id, "loss", 9.0)
    client.delete_run(gone.info.run_id)
    ids["client"] = client
    return ids


def run_import(server: ServerThread, capsys: pytest.CaptureFixture[str], *args: str
               ) -> tuple[int, dict[str, Any] | str]:
    capsys.readouterr()  # the mlflow client prints links when a run ends
    code = main(["--server", server.address, "import", "mlflow", *args])
    out, err = capsys.readouterr()
    if code != 0:
        return code, err
    return code, json.loads(out) if "--json" in args else out


def test_import_runs_and_import_again(server: ServerThread, mlflow_url: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    ids = log_mlflow(mlflow_url, "mlf-a")
    log_mlflow(mlflow_url, "mlf-other")  # not asked for
    code, first = run_import(server, capsys, "--tracking-uri", mlflow_url,
                             "--experiment", "mlf-a", "--json")
    assert code == 0 and isinstance(first, dict)
    assert first["runs"] == 3 and first["runs_created"] == 3  # the deleted run is left out
    assert first["points_sent"] == 3 * 33 and first["points_skipped"] == 0

    with tracker_client.Api(server=server.address) as api:
        assert [e.name for e in api.experiments(name_prefix="mlf-")] == ["mlf-a"]
        runs = {r.name: r for r in api.runs("mlf-a")}
        assert set(runs) == {"done", "crashed", "live"}
        done = runs["done"]
        assert done.run_key == f"mlflow:{ids['done']}"
        assert done.status == "finished" and runs["crashed"].status == "failed"
        assert runs["live"].status == "running"
        assert done.params == {"lr": "0.01", "model.depth": "4"}
        assert done.tags["team"] == "vision" and done.tags["mlflow.runName"] == "done"
        assert done.ended_at is not None
        assert int(done.ended_at.timestamp() * 1000) == T0_MS + 60_000
        assert done.metadata["mlflow.run_id"] == ids["done"]
        hist = done.history(["loss", "val/acc"], as_frame=False)
        loss = hist["key"] == "loss"
        assert hist["step"][loss].tolist() == list(range(30))
        assert hist["value"][loss].tolist() == [1.0 / (s + 1) for s in range(30)]
        assert hist["wall_time_ns"][loss].tolist() == [(T0_MS + 10 * s) * 10**6
                                                       for s in range(30)]
        acc = hist["key"] == "val/acc"
        assert hist["step"][acc].tolist() == [0, 10, 20]

    code, again = run_import(server, capsys, "--tracking-uri", mlflow_url,
                             "--experiment", "mlf-a", "--json")
    assert code == 0 and isinstance(again, dict)
    assert again["runs_skipped"] == 3 and again["points_sent"] == 0
    assert again["points_skipped"] == 3 * 33

    # The live run logs on and ends: the next import sends its new points and status.
    client: MlflowClient = ids["client"]
    client.log_batch(ids["live"], metrics=[Metric("loss", 0.001, T0_MS + 1_000_000 + s, 30 + s)
                                           for s in range(5)])
    client.set_terminated(ids["live"], status="KILLED", end_time=T0_MS + 2_000_000)
    code, third = run_import(server, capsys, "--tracking-uri", mlflow_url,
                             "--experiment", "mlf-a", "--json")
    assert code == 0 and isinstance(third, dict)
    assert third["points_sent"] == 5 and third["runs_updated"] == 1
    assert third["runs_skipped"] == 2
    with tracker_client.Api(server=server.address) as api:
        live = next(r for r in api.runs("mlf-a") if r.name == "live")
        assert live.status == "killed"
        assert live.metrics["loss"].count == 35 and live.metrics["loss"].last_step == 34


def test_unknown_experiment_and_text_summary(server: ServerThread, mlflow_url: str,
                                             tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_import(server, capsys, "--tracking-uri", mlflow_url,
                           "--experiment", "no-such-experiment")
    assert code == 2 and "no MLflow experiment named 'no-such-experiment'" in str(err)
    log_mlflow(mlflow_url, "mlf-text")
    code, out = run_import(server, capsys, "--tracking-uri", mlflow_url,
                           "--experiment", "mlf-text")
    assert code == 0
    assert "3 run(s): 3 new, 0 updated, 0 skipped" in str(out)
    assert "99 point(s) sent, 0 skipped" in str(out)
