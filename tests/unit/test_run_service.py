"""RunService against the in-memory fakes: validation, status rules, params and tags,
search with filters, orders and paging tokens."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.fakes.services import FakeServices
from tests.unit.test_experiment_service import fails, forge
from tracker_server.domain.errors import Code
from tracker_server.domain.runs import Run, RunStatus


@pytest.fixture
def fx() -> FakeServices:
    return FakeServices()


def _experiment(fx: FakeServices, name: str = "e") -> str:
    return str(asyncio.run(fx.experiments.create_experiment(name))[0].experiment_id)


def _run(fx: FakeServices, eid: str, **kw: Any) -> Run:
    return asyncio.run(fx.runs.create_run(eid, **kw))[0]


def test_create_run_validates_and_attaches_by_run_key(fx: FakeServices) -> None:
    eid = _experiment(fx)
    first, created = asyncio.run(fx.runs.create_run(
        eid, run_key="job-1", params={"lr": "0.1"}, tags={"a": "1"}, seed=7,
        metadata={"host": "n1"}))
    assert created and first.name == "job-1" and first.seed == 7 and first.attempt == 0
    same, created = asyncio.run(fx.runs.create_run(eid, run_key="job-1", tags={"b": "2"}))
    assert not created and same.run_id == first.run_id and same.tags == {"a": "1", "b": "2"}
    resumed = _run(fx, eid, run_key="job-1", resume=True, resume_token="t1")
    assert resumed.run_id == first.run_id and resumed.attempt == 1
    # The same token again (a retried call) does not start another attempt.
    assert _run(fx, eid, run_key="job-1", resume=True, resume_token="t1").attempt == 1
    assert _run(fx, eid, run_key="job-1", resume=True, resume_token="t2").attempt == 2
    # A clashing param fails the whole call: nothing of it is stored.
    fails(fx.runs.create_run(eid, run_key="job-1", params={"lr": "0.2"}, tags={"c": "3"}),
          Code.ALREADY_EXISTS)
    assert "c" not in asyncio.run(fx.runs.get_run(str(first.run_id))).tags
    assert _run(fx, eid).name.startswith("run-")  # no name, no key: a generated name
    unknown = str(uuid.uuid4())
    assert unknown in fails(fx.runs.create_run(unknown), Code.NOT_FOUND).message
    fails(fx.runs.create_run("x"), Code.INVALID_ARGUMENT, "experiment_id")
    fails(fx.runs.create_run(eid, name="n" * 201), Code.INVALID_ARGUMENT, "name")
    fails(fx.runs.create_run(eid, run_key="a\x00"), Code.INVALID_ARGUMENT, "run_key")
    fails(fx.runs.create_run(eid, params={"": "v"}), Code.INVALID_ARGUMENT, "params[]")
    fails(fx.runs.create_run(eid, tags={"k": "v" * 6001}), Code.INVALID_ARGUMENT, "tags[k]")
    fails(fx.runs.create_run(eid, params={f"k{i}": "" for i in range(1001)}),
          Code.INVALID_ARGUMENT)


def test_finish_run_status_rules(fx: FakeServices) -> None:
    run = str(_run(fx, _experiment(fx)).run_id)
    done = asyncio.run(fx.runs.finish_run(run, int(RunStatus.FINISHED)))
    assert done.status == RunStatus.FINISHED and done.ended_at is not None
    again = asyncio.run(fx.runs.finish_run(run, RunStatus.FINISHED))
    assert again.ended_at == done.ended_at  # a repeat is a no-op
    err = fails(fx.runs.finish_run(run, RunStatus.FAILED), Code.FAILED_PRECONDITION)
    assert "finished" in err.message
    for status in (0, int(RunStatus.RUNNING), 99):
        fails(fx.runs.finish_run(run, status), Code.INVALID_ARGUMENT, "status")
    at = datetime(2020, 5, 1, tzinfo=UTC)
    other = str(_run(fx, _experiment(fx, "f")).run_id)
    assert asyncio.run(fx.runs.finish_run(other, RunStatus.KILLED, at)).ended_at == at
    fails(fx.runs.finish_run(str(uuid.uuid4()), RunStatus.FINISHED), Code.NOT_FOUND)
    fails(fx.runs.finish_run("x", RunStatus.FINISHED), Code.INVALID_ARGUMENT, "run_id")


def test_params_are_immutable_and_tags_replace(fx: FakeServices) -> None:
    run = str(_run(fx, _experiment(fx), params={"a": "1"}).run_id)
    fails(fx.runs.log_params(run, {}), Code.INVALID_ARGUMENT, "params")
    asyncio.run(fx.runs.log_params(run, {"a": "1", "b": "2"}))  # same value again: fine
    err = fails(fx.runs.log_params(run, {"b": "3", "c": "4"}), Code.ALREADY_EXISTS)
    assert "'b'" in err.message
    assert asyncio.run(fx.runs.get_run(run)).params == {"a": "1", "b": "2"}  # no "c"
    assert asyncio.run(fx.runs.set_tags(run, {"x": "1", "y": "2"})) == {"x": "1", "y": "2"}
    assert asyncio.run(fx.runs.set_tags(run, {"y": "3"}, ["x"])) == {"y": "3"}
    fails(fx.runs.set_tags(run, {}, [""]), Code.INVALID_ARGUMENT, "delete_keys[]")
    missing = str(uuid.uuid4())
    assert missing in fails(fx.runs.log_params(missing, {"a": "1"}), Code.NOT_FOUND).message
    assert missing in fails(fx.runs.set_tags(missing, {"a": "1"}), Code.NOT_FOUND).message


def _search_all(fx: FakeServices, eids: list[str], page_size: int, **kw: Any
                ) -> list[uuid.UUID]:
    out: list[uuid.UUID] = []
    token = ""
    while True:
        page = asyncio.run(fx.runs.search_runs(eids, page_size=page_size, page_token=token,
                                               **kw))
        out += [r.run_id for r in page.items]
        token = page.next_page_token
        if not token:
            return out


def test_search_filters_orders_and_pages(fx: FakeServices) -> None:
    eid = _experiment(fx)
    lrs = ["0.3", "0.01", "big", "0.1", None, "2e-3"]
    runs = [_run(fx, eid, name=f"r{i}", params={"lr": lr} if lr else {}) for i, lr in
            enumerate(lrs)]
    for i, r in enumerate(runs):
        fx.db.add_points(r.run_id, "loss", [0, 1], [1.0, 1.0 / (i + 1)])
    by_lr = _search_all(fx, [eid], 2, order_by=["params.lr"])
    # Numbers ascending, then non-numeric text, then runs without the param.
    assert by_lr == [runs[i].run_id for i in (5, 1, 3, 0, 2, 4)]
    desc = _search_all(fx, [eid], 4, order_by=["params.lr desc"])
    # Descending numbers, then the text, then the missing: missing values sort last.
    assert desc == [runs[i].run_id for i in (0, 3, 1, 5, 2, 4)]
    small = _search_all(fx, [eid], 1, filter_text="params.lr < 0.05",
                        order_by=["metrics.loss asc"])
    assert small == [runs[5].run_id, runs[1].run_id]  # loss 1/6 before 1/2
    no_lr = _search_all(fx, [eid], 10, filter_text='not params.lr = "big"')
    assert set(no_lr) == {r.run_id for i, r in enumerate(runs) if i != 2}
    assert _search_all(fx, [eid], 10, filter_text="params.lr is null") == [runs[4].run_id]
    assert _search_all(fx, [eid], 10, filter_text='name like "r_"') == \
        [r.run_id for r in reversed(runs)]
    # A NULL column makes a comparison unknown, and "not unknown" is unknown too.
    assert _search_all(fx, [eid], 10, filter_text="seed = 1") == []
    assert _search_all(fx, [eid], 10, filter_text="not seed = 1") == []
    assert len(_search_all(fx, [eid], 10, filter_text="seed is null or seed = 1")) == 6


def test_search_limits_and_tokens(fx: FakeServices) -> None:
    eid = _experiment(fx)
    for i in range(3):
        _run(fx, eid, params={"lr": str(i)})
    svc = fx.runs
    fails(svc.search_runs([]), Code.INVALID_ARGUMENT, "experiment_ids")
    fails(svc.search_runs([str(uuid.uuid4()) for _ in range(101)]), Code.INVALID_ARGUMENT,
          "experiment_ids")
    fails(svc.search_runs(["x"]), Code.INVALID_ARGUMENT, "experiment_ids")
    missing = [str(uuid.uuid4()), str(uuid.uuid4())]
    err = fails(svc.search_runs([eid, *missing]), Code.NOT_FOUND)
    assert missing[0] in err.message and missing[1] not in err.message
    err = fails(svc.search_runs([eid], filter_text="params.lr <"), Code.INVALID_ARGUMENT,
                "filter")
    assert "position" in err.message
    fails(svc.search_runs([eid], order_by=["a", "b", "c", "d"]), Code.INVALID_ARGUMENT,
          "order_by")
    fails(svc.search_runs([eid], page_size=1001), Code.INVALID_ARGUMENT, "page_size")
    token = asyncio.run(svc.search_runs([eid], order_by=["params.lr"], page_size=1)
                        ).next_page_token
    assert token
    again = asyncio.run(svc.search_runs([eid], order_by=["params.lr"], page_size=1,
                                        page_token=token))
    assert len(again.items) == 1 and again.next_page_token not in ("", token)
    # Bound to its query: another order, filter or experiment set is refused.
    changed: list[dict[str, Any]] = [{"order_by": ["params.lr desc"]},
                                     {"order_by": ["params.lr"], "filter_text": "attempt = 0"}]
    for kw in changed:
        err = fails(svc.search_runs([eid], page_token=token, **kw),
                    Code.INVALID_ARGUMENT, "page_token")
        assert err.field_violations == [("page_token", "different query")]
    other = _experiment(fx, "other")
    fails(svc.search_runs([eid, other], order_by=["params.lr"], page_token=token),
          Code.INVALID_ARGUMENT, "page_token")
    # A position of the wrong length or with values of the wrong type.
    for k in ([1.0], [1.0, "1", "not a uuid"], ["one", "1", str(uuid.uuid4())]):
        err = fails(svc.search_runs([eid], order_by=["params.lr"], page_token=forge(token, k=k)),
                    Code.INVALID_ARGUMENT, "page_token")
        assert err.field_violations == [("page_token", "malformed")], k
