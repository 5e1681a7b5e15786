"""Every REST endpoint against a real server: experiments, runs, metrics, comparisons,
health, the API description."""

from __future__ import annotations

import httpx

from tests.http_support import API, fields, log, new_experiment, new_run, ok, problem
from tests.support import Api, ServerThread
from tracker_proto.v1 import experiments_pb2 as ex


def test_experiments_create_list_get_update(hc: httpx.Client) -> None:
    exp = new_experiment(hc, "mnist", owner="ana", description="digits")
    assert exp["status"] == "created" and exp["owner"] == "ana"
    assert exp["created_at"].endswith("+00:00") and "T" in exp["created_at"]
    again = ok(hc.post(f"{API}/experiments", json={"name": "mnist", "owner": "ana",
                                                    "get_if_exists": True}), 200)
    assert again["experiment_id"] == exp["experiment_id"]
    new_experiment(hc, "cifar", owner="bo")
    listed = ok(hc.get(f"{API}/experiments", params={"owner": "ana"}))
    assert [e["name"] for e in listed["experiments"]] == ["mnist"]
    assert listed["next_page_token"] == ""
    page = ok(hc.get(f"{API}/experiments", params={"page_size": 1}))
    assert len(page["experiments"]) == 1 and page["next_page_token"]
    rest = ok(hc.get(f"{API}/experiments", params={"page_size": 1,
                                                   "page_token": page["next_page_token"]}))
    assert {e["name"] for e in page["experiments"] + rest["experiments"]} == {"mnist", "cifar"}
    assert ok(hc.get(f"{API}/experiments", params={"name_prefix": "cif"}))[
        "experiments"][0]["name"] == "cifar"
    eid = exp["experiment_id"]
    changed = ok(hc.patch(f"{API}/experiments/{eid}", json={"status": "archived",
                                                            "description": "old"}))
    assert changed["status"] == "archived" and changed["description"] == "old"
    assert ok(hc.patch(f"{API}/experiments/{eid}", json={}))["description"] == "old"
    visible = ok(hc.get(f"{API}/experiments"))["experiments"]
    assert [e["name"] for e in visible] == ["cifar"]  # archived ones hidden by default
    archived = ok(hc.get(f"{API}/experiments", params=[("status", "archived")]))
    assert [e["name"] for e in archived["experiments"]] == ["mnist"]
    run = new_run(hc, eid, name="r1")
    got = ok(hc.get(f"{API}/experiments/{eid}", params={"runs_page_size": 10}))
    assert got["experiment"]["experiment_id"] == eid
    assert [r["run_id"] for r in got["runs"]] == [run["run_id"]]
    assert got["next_runs_page_token"] == ""


def test_runs_create_get_search_finish_params_tags(hc: httpx.Client) -> None:
    eid = new_experiment(hc)["experiment_id"]
    run = new_run(hc, eid, name="lr-0.1", run_key="job-7", params={"lr": "0.1"},
                  tags={"team": "a"}, seed=42, slurm_job_id="123",
                  metadata={"git": {"commit": "abc", "dirty": False}, "gpus": 2})
    assert run["status"] == "running" and run["attempt"] == 0 and run["seed"] == 42
    assert run["params"] == {"lr": "0.1"} and run["tags"] == {"team": "a"}
    assert run["metadata"] == {"git": {"commit": "abc", "dirty": False}, "gpus": 2}
    assert run["ended_at"] is None and run["slurm_job_id"] == "123"
    same = ok(hc.post(f"{API}/runs", json={"experiment_id": eid, "run_key": "job-7"}), 200)
    assert same["run_id"] == run["run_id"]
    resumed = ok(hc.post(f"{API}/runs", json={"experiment_id": eid, "run_key": "job-7",
                                              "resume": True}), 200)
    assert resumed["attempt"] == 1
    other = new_run(hc, eid, name="lr-0.2", params={"lr": "0.2"})
    rid = run["run_id"]
    got = ok(hc.get(f"{API}/runs/{rid}"))
    assert got["name"] == "lr-0.1" and got["summaries"] == []
    log(hc, other["run_id"], keys=["loss"], key_index=[0], steps=[3], values=[0.25])
    found = ok(hc.get(f"{API}/runs", params={"experiment_id": eid,
                                             "filter": "params.lr = '0.2'"}))
    assert [r["run_id"] for r in found["runs"]] == [other["run_id"]]
    (summary,) = found["runs"][0]["summaries"]  # the runs table shows metric columns
    assert (summary["key"], summary["last_value"], summary["last_step"]) == ("loss", 0.25, 3)
    ordered = ok(hc.get(f"{API}/runs", params=[("experiment_id", eid), ("order_by", "name asc")]))
    assert [r["name"] for r in ordered["runs"]] == ["lr-0.1", "lr-0.2"]
    assert ordered["runs"][0]["summaries"] == []
    empty = ok(hc.get(f"{API}/runs", params={"experiment_id": eid, "filter": "name = 'x'"}))
    assert empty == {"runs": [], "next_page_token": ""}
    assert ok(hc.post(f"{API}/runs/{rid}/params", json={"params": {"batch": "64"}}), 204) is None
    tags = ok(hc.patch(f"{API}/runs/{rid}/tags", json={"set": {"stage": "eval"},
                                                       "delete": ["team"]}))
    assert tags == {"stage": "eval"}
    finished = ok(hc.post(f"{API}/runs/{rid}/finish", json={"status": "finished"}))
    assert finished["status"] == "finished" and finished["ended_at"]
    again = ok(hc.post(f"{API}/runs/{rid}/finish", json={"status": "finished"}))
    assert again["ended_at"] == finished["ended_at"]  # a retried finish is a no-op
    final = ok(hc.get(f"{API}/runs/{rid}"))
    assert final["params"] == {"lr": "0.1", "batch": "64"} and final["tags"] == {"stage": "eval"}
    killed = ok(hc.post(f"{API}/runs/{other['run_id']}/finish",
                        json={"status": "killed", "ended_at": "2024-05-01T12:00:00Z"}))
    assert killed["status"] == "killed" and killed["ended_at"].startswith("2024-05-01T12:00:00")


def test_metrics_write_keys_series_and_slash_keys(hc: httpx.Client) -> None:
    rid = new_run(hc)["run_id"]
    steps = list(range(100))
    result = log(hc, rid, keys=["train/loss", "lr"], key_index=[0] * 100 + [1] * 100,
                 steps=steps + steps, values=[1.0 / (s + 1) for s in steps] + [3e-4] * 100,
                 wall_time_ns=[1_000 + s for s in steps] * 2)
    assert result == {"committed_through_seq": 0, "points_written": 200}
    log(hc, rid, rank=1, points=[{"key": "train/loss", "step": s, "value": 2.0}
                                 for s in range(10)])
    keys = ok(hc.get(f"{API}/runs/{rid}/metrics"))["keys"]
    assert [k["key"] for k in keys] == ["lr", "train/loss"]
    loss = keys[1]
    assert loss["ranks"] == [0, 1] and loss["summary"]["count"] == 110
    assert loss["summary"]["max_value"] == 2.0
    series = ok(hc.get(f"{API}/runs/{rid}/metrics/train/loss"))["series"]
    assert [(s["rank"], s["aggregate"], s["total_points"]) for s in series] == [
        (0, "per_rank", 100), (1, "per_rank", 10)]
    assert series[0]["steps"] == steps and series[0]["values"][:2] == [1.0, 0.5]
    assert series[0]["wall_time_ns"][:2] == [1000, 1001] and not series[0]["downsampled"]
    # A percent-encoded slash is the same key.
    assert ok(hc.get(f"{API}/runs/{rid}/metrics/train%2Floss"))["series"][0]["steps"] == steps
    small = ok(hc.get(f"{API}/runs/{rid}/metrics/train/loss",
                      params={"max_points": 10, "method": "lttb", "rank": 0}))["series"]
    assert len(small) == 1 and small[0]["downsampled"] and len(small[0]["steps"]) <= 10
    assert small[0]["total_points"] == 100
    live = ok(hc.get(f"{API}/runs/{rid}/metrics/train/loss",
                     params={"start": 95, "rank": 0}))["series"][0]
    assert live["steps"] == [95, 96, 97, 98, 99]
    window = ok(hc.get(f"{API}/runs/{rid}/metrics/train/loss",
                       params={"start": 5, "end": 7, "aggregate": "mean"}))["series"]
    assert [(s["rank"], s["aggregate"], s["steps"]) for s in window] == [
        (None, "mean", [5, 6, 7])]
    assert window[0]["values"][0] == (1.0 / 6 + 2.0) / 2
    assert ok(hc.get(f"{API}/runs/{rid}/metrics/never-logged"))["series"] == []
    summaries = ok(hc.get(f"{API}/runs/{rid}"))["summaries"]
    assert [s["key"] for s in summaries] == ["lr", "train/loss"]
    assert summaries[0]["last_value"] == 3e-4 and summaries[0]["last_step"] == 99


def test_best_runs_and_compare(hc: httpx.Client) -> None:
    eid = new_experiment(hc)["experiment_id"]
    runs = []
    for i, final in enumerate((0.5, 0.2, 0.9)):
        run = new_run(hc, eid, name=f"r{i}", params={"lr": str(i), "batch": "64"})
        log(hc, run["run_id"], keys=["loss"], key_index=[0, 0], steps=[0, 1],
            values=[1.0, final])
        runs.append(run["run_id"])
    best = ok(hc.get(f"{API}/experiments/{eid}/best", params={"metric": "loss", "mode": "min"}))
    assert [(r["run_name"], r["value"], r["step"]) for r in best["runs"]] == [
        ("r1", 0.2, 1), ("r0", 0.5, 1), ("r2", 0.9, 1)]
    assert best["runs"][0]["status"] == "running"
    top = ok(hc.get(f"{API}/experiments/{eid}/best",
                    params={"metric": "loss", "mode": "max", "limit": 1}))["runs"]
    assert [r["run_name"] for r in top] == ["r2"]
    by_min = ok(hc.get(f"{API}/experiments/{eid}/best",
                       params={"metric": "loss", "mode": "min", "on": "max"}))["runs"]
    assert {r["value"] for r in by_min} == {1.0}
    cmp = ok(hc.get(f"{API}/compare", params=[("run_id", runs[0]), ("run_id", runs[1])]))
    assert [r["run_id"] for r in cmp["runs"]] == runs[:2]
    params = {p["key"]: (p["values"], p["differs"]) for p in cmp["params"]}
    assert params == {"batch": (["64", "64"], False), "lr": (["0", "1"], True)}
    (loss,) = cmp["metrics"]
    assert loss["key"] == "loss" and loss["differs"]
    assert [s["last_value"] for s in loss["summaries"]] == [0.5, 0.2]
    # No run defines a goal: none on the row, no best cell, no goals on the runs.
    assert loss["goal"] is None and loss["best_cell"] is None
    assert [r["metric_goals"] for r in cmp["runs"]] == [{}, {}]
    bare = new_run(hc, eid)["run_id"]
    cmp2 = ok(hc.get(f"{API}/compare", params=[("run_id", runs[0]), ("run_id", bare)]))
    assert cmp2["metrics"][0]["summaries"][1] is None
    assert cmp2["params"][0]["values"][1] is None


def _three_runs(hc: httpx.Client) -> tuple[str, list[str]]:
    """An experiment with runs r0, r1, r2 whose last ``acc`` is 0.5, 0.2, 0.9."""
    eid = new_experiment(hc)["experiment_id"]
    runs = []
    for i, final in enumerate((0.5, 0.2, 0.9)):
        run = new_run(hc, eid, name=f"r{i}")
        log(hc, run["run_id"], keys=["acc"], key_index=[0, 0], steps=[0, 1],
            values=[0.1, final])
        runs.append(run["run_id"])
    return eid, runs


def _define(api: Api, run_id: str, goal: str) -> None:
    """What ``run.define_metric("acc", goal)`` sends."""
    api.experiments.DefineMetrics(ex.DefineMetricsRequest(run_id=run_id, goals={"acc": goal}))


def test_best_runs_without_mode_use_the_goal_the_runs_defined(hc: httpx.Client,
                                                                 api: Api) -> None:
    def best(eid: str, **query: str) -> httpx.Response:
        return hc.get(f"{API}/experiments/{eid}/best", params={"metric": "acc", **query})

    eid, runs = _three_runs(hc)
    # No run defines a goal: 400 naming mode, saying how to give one.
    body = problem(best(eid), 400)
    assert body["code"] == "INVALID_ARGUMENT" and fields(body) == ["mode"]
    assert "no run defines one for 'acc'" in body["detail"]
    assert "min or max" in body["detail"] and "define_metric" in body["detail"]
    # Two runs define max (the third none): max ranks, where min would put r1 first.
    _define(api, runs[0], "max")
    _define(api, runs[1], "max")
    by_goal = ok(best(eid))
    assert [r["run_name"] for r in by_goal["runs"]] == ["r2", "r0", "r1"]
    assert (by_goal["mode"], by_goal["mode_source"]) == ("max", "runs")
    # An explicit mode overrides the defined goal.
    by_min = ok(best(eid, mode="min"))
    assert [r["run_name"] for r in by_min["runs"]] == ["r1", "r0", "r2"]
    assert (by_min["mode"], by_min["mode_source"]) == ("min", "request")
    assert ok(best(eid, mode="max"))["mode_source"] == "request"
    assert fields(problem(best(eid, mode="up"), 400)) == ["mode"]
    # The runs disagree: 400 naming mode; an explicit mode still ranks.
    _define(api, runs[2], "min")
    body = problem(best(eid), 400)
    assert fields(body) == ["mode"] and body["errors"][0]["message"] == "ambiguous"
    assert "define both min and max for 'acc'" in body["detail"]
    assert ok(best(eid, mode="max"))["runs"][0]["run_name"] == "r2"
    # Redefined (the last one wins): they agree again.
    _define(api, runs[2], "max")
    assert ok(best(eid, limit="1"))["runs"][0]["run_name"] == "r2"


def test_compare_carries_the_goal_and_the_best_cell(hc: httpx.Client, api: Api) -> None:
    def acc_row() -> dict[str, object]:
        cmp = ok(hc.get(f"{API}/compare", params=[("run_id", r) for r in runs]))
        (row,) = [m for m in cmp["metrics"] if m["key"] == "acc"]
        return row

    _, runs = _three_runs(hc)
    # max defined by two runs (the third none): the row has it, r2 (0.9) is best.
    _define(api, runs[0], "max")
    _define(api, runs[1], "max")
    row = acc_row()
    assert (row["goal"], row["best_cell"]) == ("max", 2)
    cmp = ok(hc.get(f"{API}/compare", params=[("run_id", r) for r in runs]))
    assert [r["metric_goals"] for r in cmp["runs"]] == [{"acc": "max"}, {"acc": "max"}, {}]
    assert ok(hc.get(f"{API}/runs/{runs[0]}"))["metric_goals"] == {"acc": "max"}
    # Redefined as min everywhere: r1 (0.2) is best.
    for r in runs:
        _define(api, r, "min")
    assert (acc_row()["goal"], acc_row()["best_cell"]) == ("min", 1)
    # The runs disagree: no shared goal, no best cell.
    _define(api, runs[2], "max")
    row = acc_row()
    assert row["goal"] is None and row["best_cell"] is None


def test_health_endpoints(server: ServerThread, hc: httpx.Client) -> None:
    assert ok(hc.get("/health")) == {"status": "ok"}
    ready = ok(hc.get("/health/ready"))
    assert ready["status"] == "ready" and ready["schema_version"] >= 9


def test_openapi_schema_and_docs_page(hc: httpx.Client) -> None:
    schema = ok(hc.get("/api/openapi.json"))
    paths = schema["paths"]
    assert "/api/v1/runs/{run_id}/metrics/{key}" in paths or \
        "/api/v1/runs/{run_id}/metrics/{key:path}" in paths
    post = paths["/api/v1/runs/{run_id}/metrics"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/MetricsIn")
    assert "MetricsIn" in schema["components"]["schemas"]
    assert "NaN" in post["description"]
    for item in paths.values():
        for op in item.values():
            assert "422" not in op["responses"], op  # validation errors are 400 here
    page = hc.get("/api/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script" not in page.text and "/api/v1/runs" in page.text
    assert 'id="error-invalid-argument"' in page.text
    css = hc.get("/api/docs.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_runs_carry_their_user_summary(hc: httpx.Client, api: Api) -> None:
    _, runs = _three_runs(hc)
    api.experiments.SetSummary(ex.SetSummaryRequest(  # what run.summary[...] = v sends
        run_id=runs[0], values={"test/acc": 0.93, "test/nll": float("nan"),
                                "test/ppl": float("inf")}))
    got = ok(hc.get(f"{API}/runs/{runs[0]}"))["user_summary"]
    assert got == {"test/acc": 0.93, "test/nll": "NaN", "test/ppl": "Infinity"}
    assert ok(hc.get(f"{API}/runs/{runs[1]}"))["user_summary"] == {}
    listed = ok(hc.get(f"{API}/runs", params={"experiment_id": ok(
        hc.get(f"{API}/runs/{runs[0]}"))["experiment_id"]}))
    assert {r["run_id"]: r["user_summary"] for r in listed["runs"]}[runs[0]]["test/acc"] == 0.93
