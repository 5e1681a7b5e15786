"""User summaries (``run.summary[key] = value``) and goals (``run.define_metric``)
against a real server: stored, returned with the run, delivered through the spool when
offline, and respected by best/compare (read API, CLI, RPC) when no mode is given."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest

import tracker_client
from tests.client_support import fast
from tests.support import Api, ServerThread
from tracker_client._sync import main as sync_main
from tracker_client.cli import main as cli_main
from tracker_proto.v1 import experiments_pb2 as ex
from tracker_proto.v1 import query_pb2 as q
from tracker_proto.v1 import query_pb2_grpc

pytestmark = pytest.mark.timeout(90)


def get_run(api: Api, run_id: str | None) -> ex.Run:
    assert run_id is not None
    return api.experiments.GetRun(ex.GetRunRequest(run_id=run_id)).run


def test_summary_and_goals_are_stored_and_returned(
    server: ServerThread, api: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tracker_client.init(experiment="summ", server=server.address, options=fast(tmp_path))
    run.log({"loss": 0.5, "val/acc": 0.7}, step=0)
    run.summary["test/acc"] = 0.93
    run.summary["loss"] = 0.125  # overrides the last logged value in the read API
    report = run.summary.set({"nan": math.nan, "inf": -math.inf, "gone": 1.0}, timeout=10)
    assert report.ops_pending == 0
    del run.summary["gone"]
    run.define_metric("val/acc", goal="max")
    run.define_metric("loss", goal="max")
    run.define_metric("loss", goal="min")  # redefined: the last one wins
    local = dict(run.summary)
    assert math.isnan(local.pop("nan"))
    assert local == {"test/acc": 0.93, "loss": 0.125, "inf": -math.inf}
    assert run.finish(timeout=20).durable
    got = get_run(api, run.run_id)
    assert set(got.summary) == {"test/acc", "loss", "nan", "inf"}
    assert got.summary["test/acc"] == 0.93 and got.summary["inf"] == -math.inf
    assert math.isnan(got.summary["nan"])
    assert dict(got.metric_goals) == {"val/acc": "max", "loss": "min"}
    assert cli_main(["--server", server.address, "runs", "show", got.run_id]) == 0
    shown = capsys.readouterr().out
    assert "SUMMARY" in shown and "test/acc" in shown and "0.93" in shown
    assert "GOAL" in shown and "max" in shown
    with tracker_client.Api(server=server.address) as reader:
        seen = reader.run(got.run_id)
        assert seen.user_summary["test/acc"] == 0.93
        assert seen.goals == {"val/acc": "max", "loss": "min"}
        assert seen.summary["loss"] == 0.125 and seen.summary["val/acc"] == 0.7
        assert seen.metrics["loss"].last == 0.5  # the series summary is untouched
        (listed,) = reader.runs("summ").to_list()
        assert listed.summary["test/acc"] == 0.93
        assert listed.row()["summary.test/acc"] == 0.93


def test_summary_set_offline_is_delivered_by_sync(server: ServerThread, api: Api,
                                                   tmp_path: Path) -> None:
    run = tracker_client.init(experiment="summ-off", mode="offline", run_key="off-1",
                              server=server.address, options=fast(tmp_path))
    run.log({"val/acc": 0.5}, step=1)
    run.summary["test/acc"] = 0.81
    run.define_metric("val/acc", goal="max")
    report = run.finish(timeout=2)
    assert report.ops_pending == 3  # summary, goal, finish: all in the spool
    assert sync_main([str(tmp_path), "--max-time", "30"]) == 0
    exp = api.experiments.CreateExperiment(ex.CreateExperimentRequest(
        name="summ-off", get_if_exists=True)).experiment
    (stored,) = api.experiments.SearchRuns(ex.SearchRunsRequest(
        experiment_ids=[exp.experiment_id])).runs
    assert dict(stored.summary) == {"test/acc": 0.81}
    assert dict(stored.metric_goals) == {"val/acc": "max"}


def three_runs(address: str, spool: Path, experiment: str, goal: str | None) -> list[str]:
    ids = []
    for i, acc in enumerate([0.6, 0.9, 0.75]):
        run = tracker_client.init(experiment=experiment, name=f"r{i}", server=address,
                                  options=fast(spool))
        if goal:
            run.define_metric("val/acc", goal=goal)
        run.log({"val/acc": acc}, step=10)
        assert run.finish(timeout=20).durable
        assert run.run_id is not None
        ids.append(run.run_id)
    return ids


def test_best_and_compare_respect_the_goal(server: ServerThread, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    ids = three_runs(server.address, tmp_path, "goals", "max")
    with tracker_client.Api(server=server.address) as reader:
        assert [r.run_id for r in reader.best("goals", "val/acc")] == [ids[1], ids[2], ids[0]]
        # An explicit mode still wins.
        assert reader.best("goals", "val/acc", mode="min")[0].run_id == ids[0]
        cmp = reader.compare(ids)
        assert cmp.goals == {"val/acc": "max"} and cmp.best == {"val/acc": ids[1]}
    assert cli_main(["--server", server.address, "best", "goals", "-m", "val/acc",
                     "--json"]) == 0
    ranked = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in ranked] == [ids[1], ids[2], ids[0]]
    assert {(r["mode"], r["mode_source"]) for r in ranked} == {("max", "runs")}
    assert cli_main(["--server", server.address, "best", "goals", "-m", "val/acc", "--min",
                     "--json"]) == 0
    ranked = json.loads(capsys.readouterr().out)
    assert ranked[0]["run_id"] == ids[0]
    assert {(r["mode"], r["mode_source"]) for r in ranked} == {("min", "request")}
    assert cli_main(["--server", server.address, "best", "goals", "-m", "val/acc"]) == 0
    assert "ranked by max (largest first), defined by the runs" in capsys.readouterr().out
    assert cli_main(["--server", server.address, "best", "goals", "-m", "val/acc",
                     "--min"]) == 0
    assert "ranked by min (smallest first), as requested" in capsys.readouterr().out
    resp = query_pb2_grpc.MetricsQueryServiceStub(grpc.insecure_channel(server.address))
    (row,) = resp.CompareRuns(q.CompareRunsRequest(run_ids=ids)).metrics
    assert row.goal == q.GOAL_MAXIMIZE and row.best_cell == 1


def test_best_answers_say_which_goal_ranked(server: ServerThread, api: Api,
                                            tmp_path: Path) -> None:
    ids = three_runs(server.address, tmp_path, "goal-answers", "max")
    eid = api.experiments.CreateExperiment(ex.CreateExperimentRequest(
        name="goal-answers", get_if_exists=True)).experiment.experiment_id

    query = query_pb2_grpc.MetricsQueryServiceStub(api.channel)

    def best(goal: int) -> q.GetBestRunsResponse:
        return query.GetBestRuns(q.GetBestRunsRequest(experiment_ids=[eid],
                                                          key="val/acc", goal=goal))

    # gRPC: the defined goal, then each explicit one (which wins over the defined max).
    by_runs = best(q.GOAL_UNSPECIFIED)
    assert (by_runs.goal, by_runs.goal_defined_by_runs) == (q.GOAL_MAXIMIZE, True)
    assert [r.run_id for r in by_runs.runs] == [ids[1], ids[2], ids[0]]
    by_min = best(q.GOAL_MINIMIZE)
    assert (by_min.goal, by_min.goal_defined_by_runs) == (q.GOAL_MINIMIZE, False)
    assert by_min.runs[0].run_id == ids[0]
    by_max = best(q.GOAL_MAXIMIZE)
    assert (by_max.goal, by_max.goal_defined_by_runs) == (q.GOAL_MAXIMIZE, False)
    # An empty ranking still says which goal it would have used.
    none = query.GetBestRuns(q.GetBestRunsRequest(
        experiment_ids=[eid], key="val/acc", filter='name = "nobody"'))
    assert list(none.runs) == [] and none.goal == q.GOAL_MAXIMIZE and none.goal_defined_by_runs
    # Read API: still a list of RankedRun (equal to one), with mode and mode_source.
    with tracker_client.Api(server=server.address) as reader:
        ranked = reader.best("goal-answers", "val/acc")
        assert isinstance(ranked, list) and isinstance(ranked, tracker_client.Ranking)
        assert (ranked.mode, ranked.mode_source) == ("max", "runs")
        assert ranked == list(ranked) and [r.run_id for r in ranked] == [ids[1], ids[2], ids[0]]
        asked = reader.best("goal-answers", "val/acc", mode="min", with_checkpoint=True)
        assert (asked.mode, asked.mode_source) == ("min", "request")
        assert asked[0].run_id == ids[0] and asked[0].checkpoint is None
        assert "mode='min'" in repr(asked)
        empty = reader.best("goal-answers", "val/acc", filter='name = "nobody"')
        assert list(empty) == [] and (empty.mode, empty.mode_source) == ("max", "runs")

    async def read_async() -> tracker_client.Ranking:
        async with tracker_client.AsyncApi(server=server.address) as reader:
            return await reader.best("goal-answers", "val/acc", with_checkpoint=True)

    got = asyncio.run(read_async())
    assert (got.mode, got.mode_source) == ("max", "runs") and got[0].run_id == ids[1]


def test_ranking_from_an_older_server_falls_back_to_what_was_asked() -> None:
    # A server that predates the answer's goal leaves it GOAL_UNSPECIFIED.
    old = q.GetBestRunsResponse()
    assert (tracker_client.Ranking.from_proto(old, "min").mode,
            tracker_client.Ranking.from_proto(old, "min").mode_source) == ("min", "request")
    unknown = tracker_client.Ranking.from_proto(old, None)
    assert (unknown.mode, unknown.mode_source) == (None, None)


def test_best_without_a_goal_anywhere_is_invalid_argument(
    server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = three_runs(server.address, tmp_path, "no-goals", None)
    with tracker_client.Api(server=server.address) as reader:
        with pytest.raises(grpc.RpcError) as err:
            reader.best("no-goals", "val/acc")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "define_metric" in (err.value.details() or "")
        cmp = reader.compare(ids)
        assert cmp.goals == {} and cmp.best == {}
    assert cli_main(["--server", server.address, "best", "no-goals", "-m", "val/acc"]) == 1
    assert "INVALID_ARGUMENT" in capsys.readouterr().err
    # Runs that disagree: min on one, max on another.
    conflict = tracker_client.init(experiment="no-goals", server=server.address,
                                   options=fast(tmp_path))
    conflict.define_metric("val/acc", goal="min")
    other = tracker_client.init(experiment="no-goals", server=server.address,
                                options=fast(tmp_path))
    other.define_metric("val/acc", goal="max")
    assert conflict.finish(timeout=20).durable and other.finish(timeout=20).durable
    with tracker_client.Api(server=server.address) as reader:
        with pytest.raises(grpc.RpcError) as err:
            reader.best("no-goals", "val/acc")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "both min and max" in (err.value.details() or "")


def test_bad_summaries_and_goals_are_refused(server: ServerThread, api: Api,
                                             tmp_path: Path) -> None:
    run = tracker_client.init(experiment="summ-bad", server=server.address,
                              options=fast(tmp_path))
    try:
        with pytest.raises(ValueError, match="goal must be 'min' or 'max'"):
            run.define_metric("acc", goal="up")
        with pytest.raises(ValueError, match="summary key"):
            run.summary[""] = 1.0
        with pytest.raises(TypeError):
            run.summary[3] = 1.0  # type: ignore[index]
        with pytest.raises(ValueError):
            run.summary["x"] = "not a number"
        assert len(run.summary) == 0
    finally:
        assert run.close(timeout=20).durable
    stub = api.experiments

    def code(call: object, request: object) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as err:
            call(request)  # type: ignore[operator]
        return err.value.code()  # type: ignore[no-any-return]

    rid = run.run_id
    assert code(stub.SetSummary, ex.SetSummaryRequest(run_id=rid, values={"": 1.0})) \
        == grpc.StatusCode.INVALID_ARGUMENT
    assert code(stub.SetSummary, ex.SetSummaryRequest(
        run_id=rid, values={f"k{i}": 1.0 for i in range(1001)})) \
        == grpc.StatusCode.INVALID_ARGUMENT
    assert code(stub.SetSummary, ex.SetSummaryRequest(run_id="nope", values={"a": 1.0})) \
        == grpc.StatusCode.INVALID_ARGUMENT
    assert code(stub.SetSummary, ex.SetSummaryRequest(
        run_id="00000000-0000-0000-0000-000000000001", values={"a": 1.0})) \
        == grpc.StatusCode.NOT_FOUND
    assert code(stub.DefineMetrics, ex.DefineMetricsRequest(run_id=rid, goals={"a": "up"})) \
        == grpc.StatusCode.INVALID_ARGUMENT
    assert code(stub.DefineMetrics, ex.DefineMetricsRequest(run_id=rid)) \
        == grpc.StatusCode.INVALID_ARGUMENT
    ok = stub.SetSummary(ex.SetSummaryRequest(run_id=rid, values={"a": 2.0}))
    assert dict(ok.summary) == {"a": 2.0}
    ok2 = stub.DefineMetrics(ex.DefineMetricsRequest(run_id=rid, goals={"a": "max"}))
    assert dict(ok2.goals) == {"a": "max"}


def test_the_fake_store_agrees_with_postgresql(api: Api) -> None:
    """tests/fakes/user_summary_store.py behaves as the real store for the same calls."""
    from tests.fakes.services import FakeServices
    from tests.query_support import log_points, new_experiment, new_run

    fx = FakeServices()
    pg_exp = new_experiment(api, "contract")
    fake_exp = str(asyncio.run(fx.experiments.create_experiment("contract"))[0].experiment_id)
    pg_runs = [new_run(api, pg_exp, name=f"r{i}") for i in range(3)]
    fake_runs = [str(asyncio.run(fx.runs.create_run(fake_exp, name=f"r{i}"))[0].run_id)
                 for i in range(3)]
    names = {**{r: f"r{i}" for i, r in enumerate(pg_runs)},
             **{r: f"r{i}" for i, r in enumerate(fake_runs)}}
    for i, (pg, fake) in enumerate(zip(pg_runs, fake_runs, strict=True)):
        log_points(api, pg, "acc", [0, 1], [0.1, 0.5 + i / 10])
        fx.db.add_points(uuid.UUID(fake), "acc", np.array([0, 1]),
                         np.array([0.1, 0.5 + i / 10]))
        real = api.experiments.SetSummary(ex.SetSummaryRequest(
            run_id=pg, values={"a": 1.0, "b": float(i)}, delete_keys=["zz"])).summary
        got = asyncio.run(fx.summaries.set_summary(fake, {"a": 1.0, "b": float(i)}, ["zz"]))
        assert dict(real) == got
        real = api.experiments.SetSummary(ex.SetSummaryRequest(
            run_id=pg, delete_keys=["a"])).summary
        assert dict(real) == asyncio.run(fx.summaries.set_summary(fake, {}, ["a"]))
        real_goals = api.experiments.DefineMetrics(ex.DefineMetricsRequest(
            run_id=pg, goals={"acc": "max"})).goals
        assert dict(real_goals) == asyncio.run(fx.summaries.define_metrics(fake, {"acc": "max"}))
    stub = query_pb2_grpc.MetricsQueryServiceStub(api.channel)
    pg_best = stub.GetBestRuns(q.GetBestRunsRequest(experiment_ids=[pg_exp], key="acc")).runs
    fake_best = asyncio.run(fx.query.ranking([fake_exp], "acc", maximize=None)).runs
    assert [names[r.run_id] for r in pg_best] == [names[str(r.run_id)] for r in fake_best]
    assert [names[r.run_id] for r in pg_best] == ["r2", "r1", "r0"]
    pg_run = api.experiments.GetRun(ex.GetRunRequest(run_id=pg_runs[0])).run
    fake_run = asyncio.run(fx.runs.get_run(fake_runs[0]))
    assert dict(pg_run.summary) == fake_run.summary
    assert dict(pg_run.metric_goals) == fake_run.metric_goals
