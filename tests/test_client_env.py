"""Identity from the environment, attaching by run id, nested config and node-wide
system metrics, against a real in-process server."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

import tracker_client
from tests.client_support import fast, stored
from tests.support import Api, ServerThread
from tracker_proto.v1 import experiments_pb2 as ex

pytestmark = pytest.mark.timeout(60)

ENV_VARS = ("TRACKER_RUN_KEY", "TRACKER_RESUME", "TRACKER_RUN_NAME", "TRACKER_TAGS",
            "TRACKER_SYSTEM_METRICS", "LOCAL_RANK", "SLURM_LOCALID", "RANK", "SLURM_PROCID",
            "TORCHELASTIC_RUN_ID", "SLURM_JOB_ID")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


def get_run(api: Api, run_id: str | None) -> ex.Run:
    assert run_id is not None
    return api.experiments.GetRun(ex.GetRunRequest(run_id=run_id)).run


def test_identity_from_the_environment(server: ServerThread, api: Api, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_RUN_KEY", "launcher-42")
    monkeypatch.setenv("TRACKER_RUN_NAME", "sweep-7")
    monkeypatch.setenv("TRACKER_TAGS", "cluster=a100, queue=long,owner=")
    run = tracker_client.init(experiment="env", server=server.address, options=fast(tmp_path))
    run.log({"x": 1.0})
    assert run.finish(timeout=20).durable
    got = get_run(api, run.run_id)
    assert run.run_key == "launcher-42" and got.run_key == "launcher-42"
    assert got.name == "sweep-7"
    assert dict(got.tags) == {"cluster": "a100", "queue": "long", "owner": ""}

    # TRACKER_RESUME=1: the same key starts the next attempt of the same run.
    monkeypatch.setenv("TRACKER_RESUME", "1")
    again = tracker_client.init(experiment="env", server=server.address, options=fast(tmp_path))
    assert again.run_id == run.run_id and again.attempt == got.attempt + 1
    assert again.finish(timeout=20).durable


def test_explicit_arguments_win_over_the_environment(
    server: ServerThread, api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACKER_RUN_KEY", "from-env")
    monkeypatch.setenv("TRACKER_RUN_NAME", "env-name")
    monkeypatch.setenv("TRACKER_TAGS", "cluster=a100,queue=long")
    monkeypatch.setenv("TRACKER_RESUME", "yes")
    run = tracker_client.init(experiment="env-win", server=server.address, run_key="explicit",
                              name="mine", tags={"queue": "short"}, resume=False,
                              options=fast(tmp_path))
    assert run.finish(timeout=20).durable
    got = get_run(api, run.run_id)
    assert (got.run_key, got.name, got.attempt) == ("explicit", "mine", 0)  # not resumed
    # Tags merge key by key; the script's value wins.
    assert dict(got.tags) == {"cluster": "a100", "queue": "short"}


@pytest.mark.parametrize(("var", "value"), [("TRACKER_TAGS", "cluster"),
                                            ("TRACKER_TAGS", "=x"),
                                            ("TRACKER_RESUME", "maybe"),
                                            ("TRACKER_SYSTEM_METRICS", "of")])
def test_malformed_identity_variables_are_refused_before_writing(
    var: str, value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=var):
        tracker_client.init(experiment="bad", mode="offline", options=fast(tmp_path))
    assert not any(tmp_path.iterdir())


def test_init_run_id_attaches_to_an_existing_run(server: ServerThread, api: Api,
                                                 database_url: str, tmp_path: Path) -> None:
    first = tracker_client.init(experiment="attach", server=server.address,
                                options=fast(tmp_path))
    first.log({"loss": 1.0}, step=0)
    assert first.close(timeout=20).durable
    run_id = first.run_id
    assert run_id is not None

    # Another process (an evaluation job) attaches by id: same run, same attempt.
    second = tracker_client.init(server=server.address, run_id=run_id,
                                 config={"eval": {"split": "test"}}, tags={"stage": "eval"},
                                 options=fast(tmp_path))
    assert second.run_id == run_id and second.attempt == first.attempt
    second.log({"test/loss": 0.5}, step=10)
    assert second.finish(timeout=20).durable
    got = get_run(api, run_id)
    assert got.params["eval.split"] == "test" and got.tags["stage"] == "eval"
    assert got.status == ex.RUN_STATUS_FINISHED
    assert {k for k, *_ in stored(database_url, run_id)} == {"loss", "test/loss"}

    # resume=True with a run id starts the next attempt of that run.
    third = tracker_client.init(server=server.address, run_id=run_id, resume=True,
                                options=fast(tmp_path))
    assert third.run_id == run_id and third.attempt == (first.attempt or 0) + 1
    assert third.close(timeout=20).durable


def test_init_run_id_errors(server: ServerThread, api: Api, tmp_path: Path) -> None:
    with pytest.raises(tracker_client.TrackerError) as err:
        tracker_client.init(server=server.address, options=fast(tmp_path),
                            run_id="00000000-0000-0000-0000-000000000001")
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(ValueError, match="UUID"):
        tracker_client.init(server=server.address, options=fast(tmp_path), run_id="abc")
    with pytest.raises(ValueError, match="not both"):
        tracker_client.init(server=server.address, options=fast(tmp_path),
                            run_id="00000000-0000-0000-0000-000000000001", run_key="k")

    # A run made by another tool without a run key: attach works (params applied one
    # call each), resume is refused for good since it could not be made idempotent.
    keyless = api.new_run(run_key="")
    run = tracker_client.init(server=server.address, run_id=keyless, config={"a": 1},
                              options=fast(tmp_path))
    assert run.run_id == keyless
    assert run.close(timeout=20).durable
    assert get_run(api, keyless).params["a"] == "1"
    with pytest.raises(tracker_client.TrackerError) as err:
        tracker_client.init(server=server.address, run_id=keyless, resume=True,
                            options=fast(tmp_path))
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_nested_config_becomes_searchable_dotted_params(
    server: ServerThread, api: Api, tmp_path: Path
) -> None:
    config = {"optim": {"lr": 1e-3, "betas": (0.9, 0.999), "name": "adamw"},
              "model": {"layers": 3, "dropout": None, "act": {"kind": "gelu"}},
              "flags": [1, "a"], "empty": {}, "debug": False}
    run = tracker_client.init(experiment="nested", server=server.address, config=config,
                              options=fast(tmp_path))
    run.log_params({"data": {"shards": 8}})
    assert run.finish(timeout=20).durable
    params = dict(get_run(api, run.run_id).params)
    assert params == {
        "optim.lr": "0.001", "optim.betas": "[0.9, 0.999]", "optim.name": "adamw",
        "model.layers": "3", "model.dropout": "None", "model.act.kind": "gelu",
        "flags": '[1, "a"]', "empty": "{}", "debug": "False", "data.shards": "8",
    }
    other = tracker_client.init(experiment="nested", server=server.address,
                                config={"optim": {"lr": 0.1}}, options=fast(tmp_path))
    assert other.finish(timeout=20).durable
    with tracker_client.Api(server=server.address) as reader:
        for text in ("params.optim.lr = '0.001'", "params.optim.lr < 0.01",
                     "params.model.act.kind = \"gelu\" and params.data.shards >= 8"):
            assert [r.run_id for r in reader.runs("nested", filter=text)] == [run.run_id], text
        by_lr = reader.runs("nested", order_by="params.optim.lr desc")
        assert [r.run_id for r in by_lr] == [other.run_id, run.run_id]


def sys_keys(database_url: str, run: tracker_client.Run) -> set[str]:
    assert run.run_id is not None
    return {k for k, *_ in stored(database_url, run.run_id) if k.startswith("sys/")}


@pytest.mark.parametrize("env", [{"TRACKER_SYSTEM_METRICS": "0"}, {"LOCAL_RANK": "1"},
                                 {"SLURM_LOCALID": "3"}, {}])
def test_system_metrics_once_per_node(env: dict[str, str], server: ServerThread,
                                      database_url: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    run = tracker_client.init(experiment="sys", server=server.address, rank=0,
                              options=fast(tmp_path, system_metrics_interval_s=0.05))
    run.log({"x": 1.0})
    time.sleep(0.4)  # several sampling periods
    assert run.close(timeout=20).durable
    if env:
        assert sys_keys(database_url, run) == set()
    else:
        assert "sys/cpu_percent" in sys_keys(database_url, run)
