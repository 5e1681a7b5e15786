"""Random bytes and mutated valid messages to every RPC over a raw channel: every call
ends with a proper status (never INTERNAL, UNKNOWN, UNAVAILABLE or a hang), the server
keeps serving a well-behaved writer meanwhile, and its memory stays flat."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import grpc
import pytest

from tests.fault.support import RESULTS_ENV, ServerProc, Writer, check_run, closing_all
from tests.fuzz_support import Tally, corpus, fuzz
from tests.support import Api
from tracker_proto.v1 import experiments_pb2 as ex

MiB = 1 << 20


def _fuzz_server(database_url: str, tmp_path: Path, rounds: int, passes: int) -> Tally:
    srv = ServerProc(database_url, tmp_path / "server.log")
    srv.start()
    with closing_all(srv):
        api = Api(srv.address)
        run_id = api.new_run("fuzz-target", exp_name="fuzz")
        run = api.experiments.GetRun(ex.GetRunRequest(run_id=run_id)).run
        seeds = corpus(run.experiment_id, run_id)
        good = Writer(srv.address, "fuzz-good", 0, tmp_path / "good", steps_per_s=200,
                      experiment="fuzz-good")
        good.start()
        tally = Tally()
        channel = grpc.insecure_channel(srv.address)
        fuzz(channel, seeds, rounds, seed=0, tally=tally)  # warm-up: caches, pools, arenas
        base = srv.rss()
        samples = []
        for i in range(passes):
            fuzz(channel, seeds, rounds, seed=i + 1, tally=tally)
            samples.append(srv.rss())
        channel.close()
        report = good.finish(timeout=30)
        assert report.durable, report
        assert good.run_id is not None
        check_run(srv.address, database_url, good.run_id, good.logged)
        api.close()
        assert srv.proc is not None and srv.proc.poll() is None
    assert not tally.bad, "\n".join(tally.bad)
    growth = max(samples) - base
    assert growth < 40 * MiB, (base, samples)
    return tally


def test_fuzz_every_rpc(database_url: str, tmp_path: Path) -> None:
    started = time.monotonic()
    tally = _fuzz_server(database_url, tmp_path, rounds=60, passes=2)
    calls = sum(sum(c.values()) for c in tally.codes.values())
    assert calls >= 60 * 3 * len(tally.codes)
    # Most mutations are refused as bad input, and some decode into valid requests.
    codes = {c for per in tally.codes.values() for c in per}
    assert {"INVALID_ARGUMENT", "OK"} <= codes, tally.codes
    assert time.monotonic() - started < 120
    root = os.environ.get(RESULTS_ENV)
    if root:
        Path(root).mkdir(parents=True, exist_ok=True)
        (Path(root) / "fuzz.json").write_text(json.dumps(
            {m.rsplit("/", 1)[1]: c for m, c in tally.codes.items()}, indent=2) + "\n")


@pytest.mark.slow
def test_fuzz_every_rpc_long(database_url: str, tmp_path: Path) -> None:
    _fuzz_server(database_url, tmp_path, rounds=400, passes=6)
