"""Experiment and run RPCs of the query API against a real server."""

from __future__ import annotations

import base64
import json
import uuid

import grpc
from google.protobuf import timestamp_pb2

from tests.query_support import code_of, log_points, new_experiment, new_run
from tests.support import Api
from tracker_proto.v1 import experiments_pb2 as ex

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


def test_get_and_update_experiment(api: Api) -> None:
    e = api.experiments
    exp_id = new_experiment(api, "mnist", owner="ana")
    runs = [new_run(api, exp_id, name=f"r{i}") for i in range(5)]
    got = e.GetExperiment(ex.GetExperimentRequest(experiment_id=exp_id, runs_page_size=2))
    assert got.experiment.name == "mnist" and got.experiment.status == ex.EXPERIMENT_STATUS_ACTIVE
    seen = [r.run_id for r in got.runs]
    token = got.next_runs_page_token
    while token:
        page = e.GetExperiment(ex.GetExperimentRequest(
            experiment_id=exp_id, runs_page_size=2, runs_page_token=token))
        seen += [r.run_id for r in page.runs]
        token = page.next_runs_page_token
    assert sorted(seen) == sorted(runs) and len(seen) == 5
    upd = e.UpdateExperiment(ex.UpdateExperimentRequest(
        experiment_id=exp_id, status=ex.EXPERIMENT_STATUS_ARCHIVED, description="old"))
    assert upd.experiment.status == ex.EXPERIMENT_STATUS_ARCHIVED
    assert upd.experiment.description == "old"
    upd = e.UpdateExperiment(ex.UpdateExperimentRequest(experiment_id=exp_id, description="d2"))
    assert upd.experiment.status == ex.EXPERIMENT_STATUS_ARCHIVED
    unknown = str(uuid.uuid4())
    assert code_of(e.GetExperiment, ex.GetExperimentRequest(experiment_id=unknown)) == NOT_FOUND
    assert code_of(e.UpdateExperiment, ex.UpdateExperimentRequest(
        experiment_id=unknown, description="x")) == NOT_FOUND
    assert code_of(e.UpdateExperiment, ex.UpdateExperimentRequest(
        experiment_id=exp_id, status=ex.EXPERIMENT_STATUS_UNSPECIFIED)) == INVALID
    assert code_of(e.GetExperiment, ex.GetExperimentRequest(experiment_id="nope")) == INVALID
    assert code_of(e.CreateExperiment, ex.CreateExperimentRequest(
        name="mnist", owner="ana")) == grpc.StatusCode.ALREADY_EXISTS


def test_list_experiments_filters_and_pages(api: Api) -> None:
    e = api.experiments
    ids = [new_experiment(api, f"proj-{i:02d}", owner="bob") for i in range(7)]
    new_experiment(api, "other", owner="bob")
    new_experiment(api, "proj-x", owner="carol")
    archived = new_experiment(api, "proj-archived", owner="bob")
    e.UpdateExperiment(ex.UpdateExperimentRequest(
        experiment_id=archived, status=ex.EXPERIMENT_STATUS_ARCHIVED))
    req = ex.ListExperimentsRequest(owner="bob", name_prefix="proj-", page_size=3)
    seen: list[str] = []
    pages = 0
    while True:
        page = e.ListExperiments(req)
        pages += 1
        seen += [x.experiment_id for x in page.experiments]
        if not page.next_page_token:
            break
        req.page_token = page.next_page_token
    assert pages == 3 and seen == list(reversed(ids))  # newest first, no archived
    arch = e.ListExperiments(ex.ListExperimentsRequest(
        owner="bob", statuses=[ex.EXPERIMENT_STATUS_ARCHIVED]))
    assert [x.experiment_id for x in arch.experiments] == [archived]
    future = timestamp_pb2.Timestamp(seconds=4_000_000_000)
    assert list(e.ListExperiments(ex.ListExperimentsRequest(created_after=future)).experiments) \
        == []
    assert len(e.ListExperiments(ex.ListExperimentsRequest(created_before=future)).experiments) \
        == 9
    # Exactly one full page: no token for an empty page after it.
    full = e.ListExperiments(ex.ListExperimentsRequest(owner="bob", name_prefix="proj-",
                                                       page_size=7))
    assert len(full.experiments) == 7 and full.next_page_token == ""
    first = e.ListExperiments(ex.ListExperimentsRequest(owner="bob", page_size=2))
    # A token from another query, a garbage token, a forged position, a bad page size.
    assert code_of(e.ListExperiments, ex.ListExperimentsRequest(
        owner="carol", page_token=first.next_page_token)) == INVALID
    assert code_of(e.ListExperiments, ex.ListExperimentsRequest(page_token="%%%")) == INVALID
    body = json.loads(base64.urlsafe_b64decode(first.next_page_token + "=="))
    body["k"] = ["not a time", "not a uuid"]
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).decode()
    assert code_of(e.ListExperiments, ex.ListExperimentsRequest(
        owner="bob", page_size=2, page_token=forged)) == INVALID
    assert code_of(e.ListExperiments, ex.ListExperimentsRequest(page_size=-1)) == INVALID
    assert code_of(e.ListExperiments, ex.ListExperimentsRequest(page_size=5000)) == INVALID


def test_finish_run_transitions(api: Api) -> None:
    e = api.experiments
    run = new_run(api, new_experiment(api))
    done = e.FinishRun(ex.FinishRunRequest(run_id=run, status=ex.RUN_STATUS_FINISHED))
    assert done.run.status == ex.RUN_STATUS_FINISHED and done.run.HasField("ended_at")
    again = e.FinishRun(ex.FinishRunRequest(run_id=run, status=ex.RUN_STATUS_FINISHED))
    assert again.run.ended_at == done.run.ended_at  # idempotent
    assert code_of(e.FinishRun, ex.FinishRunRequest(run_id=run, status=ex.RUN_STATUS_FAILED)) \
        == grpc.StatusCode.FAILED_PRECONDITION
    assert code_of(e.FinishRun, ex.FinishRunRequest(run_id=run, status=ex.RUN_STATUS_RUNNING)) \
        == INVALID
    run2 = new_run(api, new_experiment(api))
    at = timestamp_pb2.Timestamp(seconds=1_700_000_000)
    killed = e.FinishRun(ex.FinishRunRequest(run_id=run2, status=ex.RUN_STATUS_KILLED,
                                             ended_at=at))
    assert killed.run.ended_at.seconds == 1_700_000_000
    assert code_of(e.FinishRun, ex.FinishRunRequest(
        run_id=str(uuid.uuid4()), status=ex.RUN_STATUS_FAILED)) == NOT_FOUND


def test_log_params_and_set_tags(api: Api) -> None:
    e = api.experiments
    run = new_run(api, new_experiment(api), params={"lr": "0.1"})
    e.LogParams(ex.LogParamsRequest(run_id=run, params={"lr": "0.1", "bs": "32"}))
    err = code_of(e.LogParams, ex.LogParamsRequest(run_id=run, params={"lr": "0.2", "x": "1"}))
    assert err == grpc.StatusCode.ALREADY_EXISTS
    got = e.GetRun(ex.GetRunRequest(run_id=run)).run
    assert dict(got.params) == {"lr": "0.1", "bs": "32"}  # nothing of the failed call
    assert code_of(e.LogParams, ex.LogParamsRequest(run_id=run)) == INVALID
    assert code_of(e.LogParams, ex.LogParamsRequest(
        run_id=str(uuid.uuid4()), params={"a": "1"})) == NOT_FOUND
    tags = e.SetTags(ex.SetTagsRequest(run_id=run, tags={"a": "1", "b": "2"})).tags
    assert dict(tags) == {"a": "1", "b": "2"}
    tags = e.SetTags(ex.SetTagsRequest(run_id=run, tags={"a": "3"}, delete_keys=["b"])).tags
    assert dict(tags) == {"a": "3"}
    assert code_of(e.SetTags, ex.SetTagsRequest(run_id=str(uuid.uuid4()), tags={"a": "1"})) \
        == NOT_FOUND
    assert code_of(e.SetTags, ex.SetTagsRequest(run_id=run, tags={"": "1"})) == INVALID


def _search(api: Api, exp: str, flt: str = "", order: list[str] | None = None,
            size: int = 0) -> list[str]:
    req = ex.SearchRunsRequest(experiment_ids=[exp], filter=flt, order_by=order or [],
                               page_size=size)
    names: list[str] = []
    while True:
        page = api.experiments.SearchRuns(req)
        names += [r.name for r in page.runs]
        if not page.next_page_token:
            return names
        req.page_token = page.next_page_token


def test_search_runs_filter_order_and_pages(api: Api) -> None:
    e = api.experiments
    exp = new_experiment(api)
    lrs = ["0.1", "0.001", "0.01", "big", "0.0001"]
    ids = {}
    for i, lr in enumerate(lrs):
        ids[f"r{i}"] = new_run(api, exp, name=f"r{i}", params={"lr": lr, "opt": "adam" if i % 2
                                                                  else "sgd"},
                               tags={"team": "x"} if i < 2 else {})
        log_points(api, ids[f"r{i}"], "val_acc", [0, 1], [0.5, 0.8 + i * 0.04])
    new_run(api, exp, name="r5")  # no params, no metrics
    e.FinishRun(ex.FinishRunRequest(run_id=ids["r1"], status=ex.RUN_STATUS_FINISHED))
    e.FinishRun(ex.FinishRunRequest(run_id=ids["r2"], status=ex.RUN_STATUS_FINISHED))
    assert sorted(_search(api, exp, "params.lr < 0.05")) == ["r1", "r2", "r4"]
    assert _search(api, exp, 'params.lr < 0.05 and metrics.val_acc.max > 0.85 and '
                             'status = "finished"') == ["r2"]
    assert sorted(_search(api, exp, 'params.opt = "adam" or tags.team is not null')) \
        == ["r0", "r1", "r3"]
    assert sorted(_search(api, exp, "not params.lr < 0.05")) == ["r0", "r3", "r5"]
    assert sorted(_search(api, exp, 'params.lr in ("big", "0.1")')) == ["r0", "r3"]
    assert sorted(_search(api, exp, "metrics.val_acc is null")) == ["r5"]
    assert sorted(_search(api, exp, 'name like "r%" and status != "running"')) == ["r1", "r2"]
    # Numeric order of a text param, non-numeric after numbers, missing last; paged by 2.
    assert _search(api, exp, "", ["params.lr"], size=2) == ["r4", "r1", "r2", "r0", "r3", "r5"]
    assert _search(api, exp, "", ["params.lr desc"], size=1) == ["r0", "r2", "r1", "r4", "r3",
                                                                 "r5"]
    assert _search(api, exp, "", ["metrics.val_acc.last desc"], size=4) == [
        "r4", "r3", "r2", "r1", "r0", "r5"]
    assert _search(api, exp, "", ["name"], size=5) == [f"r{i}" for i in range(6)]
    assert _search(api, exp, "", ["status", "name desc"], size=2) == [
        "r5", "r4", "r3", "r0", "r2", "r1"]
    assert _search(api, exp, 'params.lr = "nothing"') == []
    assert len(_search(api, exp, "", size=1)) == 6  # default order: created_at desc


def test_search_runs_errors(api: Api) -> None:
    e = api.experiments
    exp = new_experiment(api)
    for i in range(3):
        new_run(api, exp, name=f"r{i}")
    search = e.SearchRuns
    err = None
    try:
        search(ex.SearchRunsRequest(experiment_ids=[exp], filter="params.lr < "))
    except grpc.RpcError as exc:
        err = exc
    assert err is not None and err.code() == INVALID and "position 12" in (err.details() or "")
    for flt in ["bogus = 1", 'status = "sleeping"', "params.lr <", "(params.a = 1",
                "metrics.loss > \"x\"", "created_at > \"yesterday\"", "attempt = 1.5",
                "params.a = 1 and", "params.a ~ 1"]:
        assert code_of(search, ex.SearchRunsRequest(experiment_ids=[exp], filter=flt)) \
            == INVALID, flt
    assert code_of(search, ex.SearchRunsRequest(experiment_ids=[exp], order_by=["nope"])) \
        == INVALID
    assert code_of(search, ex.SearchRunsRequest(experiment_ids=[])) == INVALID
    assert code_of(search, ex.SearchRunsRequest(experiment_ids=[str(uuid.uuid4())])) \
        == NOT_FOUND
    page = search(ex.SearchRunsRequest(experiment_ids=[exp], page_size=1))
    assert code_of(search, ex.SearchRunsRequest(
        experiment_ids=[exp], page_size=1, filter='name = "r1"',
        page_token=page.next_page_token)) == INVALID
