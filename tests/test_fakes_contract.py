"""The in-memory fakes answer like PostgreSQL: the same runs, filters, orders and pages
through the real server and through the services over ``tests/fakes`` give the same
runs in the same order (so unit tests against the fakes test real behaviour)."""

from __future__ import annotations

import asyncio
import math
import uuid

import numpy as np

from tests.fakes.services import FakeServices
from tests.query_support import log_points, new_experiment, new_run, query_stub
from tests.support import Api
from tracker_proto.v1 import artifacts_pb2 as ar
from tracker_proto.v1 import artifacts_pb2_grpc
from tracker_proto.v1 import experiments_pb2 as ex
from tracker_proto.v1 import query_pb2 as q
from tracker_server.domain.artifact_service import ArtifactIn, VerificationIn

# (params, tags, last loss) per run; None: not set. Texts sort by code point in the fake
# and by collation in PostgreSQL, so the texts here sort alike under both; no two
# losses are equal, since equal values would be ranked by (random) run id.
RUNS: list[tuple[dict[str, str], dict[str, str], float | None]] = [
    ({"lr": "0.3", "opt": "adam"}, {"team": "a"}, 0.5),
    ({"lr": "0.01", "opt": "sgd"}, {}, 0.25),
    ({"lr": "big"}, {"team": "b"}, math.nan),
    ({"lr": "0.1", "opt": "adam"}, {"team": "a"}, None),
    ({}, {"team": "c"}, 0.75),
    ({"lr": "2e-3", "opt": "sgd"}, {}, 0.125),
    ({"lr": "1e400"}, {}, 1.5),
]

FILTERS = [
    "",
    "params.lr < 0.05",
    'params.lr = "big"',
    'not params.lr = "big"',
    "params.lr in (0.3, 0.1)",
    'params.opt not in ("adam")',
    "params.opt is null",
    "tags.team is not null and not tags.team = \"a\"",
    'tags.team = "a" or params.opt = "sgd"',
    "metrics.loss < 0.6",
    "not metrics.loss >= 0.3",
    "metrics.loss.count = 1",
    "metrics.loss is null",
    'name like "r_"',
    'name like "%1"',
    "seed = 1",
    "not seed = 1",
    "seed is null",
    'status = "running"',
    "run_key is null",
]
# Ties end on the run id, random on each side: every order here is total without it.
ORDERS = [
    [],
    ["params.lr"],
    ["params.lr desc"],
    ["metrics.loss", "name"],
    ["metrics.loss desc", "name"],
    ["tags.team desc", "params.opt", "name"],
    ["name desc"],
]


def _seed_server(api: Api) -> tuple[str, dict[str, str]]:
    exp = new_experiment(api)
    names = {}
    for i, (params, tags, loss) in enumerate(RUNS):
        run = new_run(api, exp, params=params, tags=tags, name=f"r{i}")
        names[run] = f"r{i}"
        if loss is not None:
            log_points(api, run, "loss", [0], [loss])
    return exp, names


def _seed_fakes(fx: FakeServices) -> tuple[str, dict[str, str]]:
    exp = str(asyncio.run(fx.experiments.create_experiment("e"))[0].experiment_id)
    names = {}
    for i, (params, tags, loss) in enumerate(RUNS):
        run = asyncio.run(fx.runs.create_run(exp, params=params, tags=tags, name=f"r{i}"))[0]
        names[str(run.run_id)] = f"r{i}"
        if loss is not None:
            fx.db.add_points(run.run_id, "loss", [0], [loss])
    return exp, names


def _server_pages(api: Api, exp: str, flt: str, order: list[str]) -> list[list[str]]:
    pages, token = [], ""
    while True:
        resp = api.experiments.SearchRuns(ex.SearchRunsRequest(
            experiment_ids=[exp], filter=flt, order_by=order, page_size=2, page_token=token))
        pages.append([r.run_id for r in resp.runs])
        token = resp.next_page_token
        if not token:
            return pages


def _fake_pages(fx: FakeServices, exp: str, flt: str, order: list[str]) -> list[list[str]]:
    pages, token = [], ""
    while True:
        page = asyncio.run(fx.runs.search_runs([exp], flt, order, 2, token))
        pages.append([str(r.run_id) for r in page.items])
        token = page.next_page_token
        if not token:
            return pages


def test_search_and_best_runs_agree(api: Api) -> None:
    fx = FakeServices()
    pg_exp, pg_names = _seed_server(api)
    fake_exp, fake_names = _seed_fakes(fx)
    for flt in FILTERS:
        for order in ORDERS:
            pg = [[pg_names[r] for r in page] for page in _server_pages(api, pg_exp, flt, order)]
            fake = [[fake_names[r] for r in page]
                    for page in _fake_pages(fx, fake_exp, flt, order)]
            assert pg == fake, (flt, order)
    stub = query_stub(api)
    for goal, maximize in ((q.GOAL_MINIMIZE, False), (q.GOAL_MAXIMIZE, True)):
        for on, name in ((q.SUMMARY_FIELD_LAST, "last"), (q.SUMMARY_FIELD_MAX, "max")):
            for flt in ("", 'params.opt = "sgd"'):
                pg = stub.GetBestRuns(q.GetBestRunsRequest(
                    experiment_ids=[pg_exp], key="loss", goal=goal, on=on, filter=flt)).runs
                fake = asyncio.run(fx.query.ranking([fake_exp], "loss", maximize=maximize,
                                                    on=name, filter_text=flt)).runs
                assert [pg_names[r.run_id] for r in pg] == \
                    [fake_names[str(r.run_id)] for r in fake], (goal, on, flt)


def test_series_agree(api: Api) -> None:
    fx = FakeServices()
    pg_run = new_run(api, new_experiment(api))
    fake_exp = str(asyncio.run(fx.experiments.create_experiment("e"))[0].experiment_id)
    fake_run = asyncio.run(fx.runs.create_run(fake_exp))[0].run_id
    rng = np.random.default_rng(3)
    for rank, attempt, first, n in ((0, 0, 0, 3000), (1, 0, 10, 500), (0, 0, 2000, 400)):
        steps, values = np.arange(first, first + n), rng.normal(size=n)
        log_points(api, pg_run, "x", steps, values, rank=rank, attempt=attempt)
        fx.db.add_points(fake_run, "x", steps, values, rank=rank, attempt=attempt)
    stub = query_stub(api)
    for kw in ({}, {"max_points": 50}, {"start_step": 100, "end_step": 2500}):
        pg = stub.GetMetricSeries(q.GetMetricSeriesRequest(
            run_ids=[pg_run], keys=["x"], **kw)).series
        fake = asyncio.run(fx.query.get_series([str(fake_run)], ["x"], **kw))
        assert [(s.rank, list(s.steps), list(s.values)) for s in pg] == \
            [(f.series.rank, f.series.steps.tolist(), f.series.values.tolist()) for f in fake]
    latest = stub.GetLatestMetrics(q.GetLatestMetricsRequest(run_ids=[pg_run])).runs[0]
    (fake_latest,) = asyncio.run(fx.query.latest_metrics([str(fake_run)]))
    pg_s, fake_s = latest.metrics[0], fake_latest.metrics[0]
    assert (pg_s.count, pg_s.first_step, pg_s.last_step, pg_s.last_value, pg_s.min_value,
            pg_s.min_step, pg_s.max_value, pg_s.max_step) == \
        (fake_s.count, fake_s.first_step, fake_s.last_step, fake_s.last_value,
         fake_s.min_value, fake_s.min_step, fake_s.max_value, fake_s.max_step)
    assert uuid.UUID(latest.run_id) == uuid.UUID(pg_run)


def test_artifact_store_fake_answers_like_postgres(api: Api) -> None:
    """The same artifact calls through the server and through the fake: the same
    listings (filters, pages), the same created counts, the same verification rules."""
    stub = artifacts_pb2_grpc.ArtifactServiceStub(api.channel)
    fx = FakeServices()
    pg_run = new_run(api, new_experiment(api))
    eid = str(asyncio.run(fx.experiments.create_experiment("e"))[0].experiment_id)
    fake_run = str(asyncio.run(fx.runs.create_run(eid))[0].run_id)
    batches = [
        [ArtifactIn("/c/b", 1, step=5, size_bytes=1), ArtifactIn("/c/a", 1, step=5),
         ArtifactIn("/m", 2), ArtifactIn("/c/z", 1, step=-3)],
        [ArtifactIn("/c/a", 1, step=5, size_bytes=9), ArtifactIn("/d", 3, step=7),
         ArtifactIn("/c/a", 1, step=6)],
    ]
    for batch in batches:
        req = ar.LogArtifactsRequest(run_id=pg_run)
        for a in batch:
            msg = req.artifacts.add(uri=a.uri, kind=a.kind)  # type: ignore[arg-type]
            if a.step is not None:
                msg.step = a.step
            if a.size_bytes is not None:
                msg.size_bytes = a.size_bytes
        assert stub.LogArtifacts(req).created == asyncio.run(
            fx.artifacts.log_artifacts(fake_run, batch))
    for kinds, lo, hi in [((), None, None), ((1,), None, None), ((1, 3), 0, None),
                          ((), None, 5), ((), -3, 6)]:
        for size in (1, 2, 50):
            req = ar.ListArtifactsRequest(run_id=pg_run, kinds=kinds,  # type: ignore[arg-type]
                                          page_size=size)
            if lo is not None:
                req.min_step = lo
            if hi is not None:
                req.max_step = hi
            pg: list[tuple[str, int | None, int | None]] = []
            while True:
                page = stub.ListArtifacts(req)
                pg += [(a.uri, a.step if a.HasField("step") else None,
                        a.size_bytes if a.HasField("size_bytes") else None)
                       for a in page.artifacts]
                if not page.next_page_token:
                    break
                req.page_token = page.next_page_token
            fake: list[tuple[str, int | None, int | None]] = []
            token = ""
            while True:
                got = asyncio.run(fx.artifacts.list_artifacts(
                    fake_run, kinds, lo, hi, size, token))
                fake += [(a.uri, a.step, a.size_bytes) for a in got.items]
                token = got.next_page_token
                if not token:
                    break
            assert pg == fake, (kinds, lo, hi, size)
    stub.RecordVerification(ar.RecordVerificationRequest(run_id=pg_run, results=[
        ar.Verification(uri="/m", state=ar.VERIFY_STATE_MISSING)]))
    asyncio.run(fx.artifacts.record_verification(fake_run, [VerificationIn("/m", None, 2)]))
    pg_states = {a.uri: a.verify_state for a in stub.ListArtifacts(
        ar.ListArtifactsRequest(run_id=pg_run)).artifacts}
    fake_states = {a.uri: int(a.verify_state) for a in asyncio.run(
        fx.artifacts.list_artifacts(fake_run)).items}
    assert pg_states == fake_states
