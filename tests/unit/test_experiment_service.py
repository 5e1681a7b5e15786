"""ExperimentService against the in-memory fakes: validation, paging tokens, limits."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import pytest

from tests.fakes.services import FakeServices
from tracker_server.domain.errors import Code, TrackerError
from tracker_server.domain.runs import ExperimentStatus


def fails(call: Awaitable[Any], code: Code, field: str | None = None) -> TrackerError:
    """The TrackerError ``call`` raises, checked for its code and first field."""
    with pytest.raises(TrackerError) as info:
        asyncio.run(_await(call))
    assert info.value.code == code, info.value
    if field is not None:
        assert [f for f, _ in info.value.field_violations][:1] == [field], info.value
    return info.value


async def _await(call: Awaitable[Any]) -> Any:
    return await call


def forge(token: str, **changes: Any) -> str:
    """A token with parts of its body replaced (what a client could hand-edit)."""
    body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    body.update(changes)
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


@pytest.fixture
def fx() -> FakeServices:
    return FakeServices()


def test_create_validates_and_is_unique_per_owner(fx: FakeServices) -> None:
    svc = fx.experiments
    exp, created = asyncio.run(svc.create_experiment("  mnist ", "ana", "x" * 20_000))
    assert created and exp.name == "mnist" and exp.status == ExperimentStatus.CREATED
    assert len(exp.description) == 10_000
    again = fails(svc.create_experiment("mnist", "ana"), Code.ALREADY_EXISTS)
    assert "mnist" in again.message and "ana" in again.message
    same, created = asyncio.run(svc.create_experiment("mnist", "ana", get_if_exists=True))
    assert same == exp and not created
    other, created = asyncio.run(svc.create_experiment("mnist", "bob"))
    assert created and other.experiment_id != exp.experiment_id
    fails(svc.create_experiment("   "), Code.INVALID_ARGUMENT, "name")
    fails(svc.create_experiment("n" * 201), Code.INVALID_ARGUMENT, "name")
    fails(svc.create_experiment("a\x00b"), Code.INVALID_ARGUMENT, "name")
    fails(svc.create_experiment("ok", owner="o" * 201), Code.INVALID_ARGUMENT, "owner")


def test_get_names_the_missing_experiment_and_pages_its_runs(fx: FakeServices) -> None:
    exp, _ = asyncio.run(fx.experiments.create_experiment("e"))
    eid = str(exp.experiment_id)
    runs = [asyncio.run(fx.runs.create_run(eid, name=f"r{i}"))[0] for i in range(5)]
    got = asyncio.run(fx.experiments.get_experiment(eid, runs_page_size=2))
    assert got.experiment.status == ExperimentStatus.ACTIVE  # the first run activated it
    seen = [r.run_id for r in got.runs.items]
    token = got.runs.next_page_token
    while token:
        page = asyncio.run(fx.experiments.get_experiment(eid, 2, token)).runs
        seen += [r.run_id for r in page.items]
        token = page.next_page_token
    assert seen == [r.run_id for r in reversed(runs)]  # newest first, each run once
    unknown = str(uuid.uuid4())
    err = fails(fx.experiments.get_experiment(unknown), Code.NOT_FOUND)
    assert unknown in err.message
    fails(fx.experiments.get_experiment("nope"), Code.INVALID_ARGUMENT, "experiment_id")
    fails(fx.experiments.get_experiment(eid, runs_page_size=1001), Code.INVALID_ARGUMENT,
          "runs_page_size")
    fails(fx.experiments.get_experiment(eid, runs_page_size=-1), Code.INVALID_ARGUMENT,
          "runs_page_size")
    fails(fx.experiments.get_experiment(eid, 2, "%%%"), Code.INVALID_ARGUMENT,
          "runs_page_token")
    first = asyncio.run(fx.experiments.get_experiment(eid, 2)).runs.next_page_token
    # A position the store cannot use is reported against the request's token field.
    fails(fx.experiments.get_experiment(eid, 2, forge(first, k=["not a time", "x"])),
          Code.INVALID_ARGUMENT, "runs_page_token")


def test_list_pages_filters_and_refuses_foreign_or_tampered_tokens(fx: FakeServices) -> None:
    svc = fx.experiments
    ids = [asyncio.run(svc.create_experiment(f"proj-{i}", "bob"))[0].experiment_id
           for i in range(7)]
    asyncio.run(svc.create_experiment("other", "bob"))
    asyncio.run(svc.create_experiment("proj-x", "carol"))
    archived, _ = asyncio.run(svc.create_experiment("proj-old", "bob"))
    asyncio.run(svc.update_experiment(str(archived.experiment_id),
                                      status=ExperimentStatus.ARCHIVED))
    seen: list[uuid.UUID] = []
    token, pages = "", 0
    while True:
        page = asyncio.run(svc.list_experiments("bob", name_prefix="proj-", page_size=3,
                                                page_token=token))
        seen += [e.experiment_id for e in page.items]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3 and seen == list(reversed(ids))  # archived hidden by default
    only = asyncio.run(svc.list_experiments("bob", statuses=[int(ExperimentStatus.ARCHIVED)]))
    assert [e.experiment_id for e in only.items] == [archived.experiment_id]
    full = asyncio.run(svc.list_experiments("bob", name_prefix="proj-", page_size=7))
    assert len(full.items) == 7 and full.next_page_token == ""  # no empty last page
    # Time window: [after, before).
    t3 = asyncio.run(svc.list_experiments("bob", name_prefix="proj-")).items[3].created_at
    window = asyncio.run(svc.list_experiments(
        "bob", created_after=t3, created_before=t3 + timedelta(milliseconds=2)))
    assert [e.created_at for e in window.items] == [t3 + timedelta(milliseconds=1), t3]

    first = asyncio.run(svc.list_experiments("bob", page_size=2)).next_page_token
    err = fails(svc.list_experiments("carol", page_token=first), Code.INVALID_ARGUMENT,
                "page_token")
    assert err.field_violations == [("page_token", "different query")]
    # The page size may change between pages; the token still fits the query.
    assert len(asyncio.run(svc.list_experiments("bob", page_size=3, page_token=first)).items) == 3
    for bad in ("%%%", "e30", forge(first, v=2), forge(first, k=[1]),
                forge(first, k=[{"x": 1}, "y"]), forge(first, k=["not a time", "nor a uuid"])):
        err = fails(svc.list_experiments("bob", page_size=2, page_token=bad),
                    Code.INVALID_ARGUMENT, "page_token")
        assert err.field_violations == [("page_token", "malformed")], bad
    fails(svc.list_experiments(page_size=-1), Code.INVALID_ARGUMENT, "page_size")
    fails(svc.list_experiments(page_size=1001), Code.INVALID_ARGUMENT, "page_size")
    fails(svc.list_experiments(statuses=[0]), Code.INVALID_ARGUMENT, "status")
    fails(svc.list_experiments(statuses=[9]), Code.INVALID_ARGUMENT, "status")


def test_update_checks_status_and_keeps_what_is_not_given(fx: FakeServices) -> None:
    exp, _ = asyncio.run(fx.experiments.create_experiment("e", description="first"))
    eid = str(exp.experiment_id)
    upd = asyncio.run(fx.experiments.update_experiment(eid, status=3))
    assert upd.status == ExperimentStatus.ARCHIVED and upd.description == "first"
    upd = asyncio.run(fx.experiments.update_experiment(eid, description="d" * 10_001))
    assert upd.status == ExperimentStatus.ARCHIVED and len(upd.description) == 10_000
    fails(fx.experiments.update_experiment(eid, status=0), Code.INVALID_ARGUMENT, "status")
    unknown = str(uuid.uuid4())
    assert unknown in fails(fx.experiments.update_experiment(unknown, description="x"),
                            Code.NOT_FOUND).message
    fails(fx.experiments.update_experiment("x"), Code.INVALID_ARGUMENT, "experiment_id")
