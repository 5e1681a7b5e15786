"""The bench's exactly-once check: interleaved chunks of two writers are not a fault,
a duplicate is (against a real server and PostgreSQL)."""

from __future__ import annotations

import numpy as np

from bench.verify import verify
from tests.support import Api, batch_req, columns, open_req, run_stream

KEYS = ["a", "b"]


def _send(api: Api, run_id: str, writer: str, steps: list[int]) -> None:
    s = np.repeat(np.asarray(steps, dtype=np.int64), len(KEYS))
    ki = np.tile(np.arange(len(KEYS)), len(steps))
    out = run_stream(api, [open_req(run_id, writer), batch_req(1, columns(KEYS, ki, s, s * 0.5))])
    assert out[-1].ack.committed_through_seq == 1


def test_interleaved_writers_pass_and_a_duplicate_fails(api: Api, database_url: str) -> None:
    # Writer A commits steps 0-9 and 20-29 in one chunk per key (a gappy chunk), writer
    # B then 10-19 (overlapping it): every step once, as a handover can leave it.
    good = api.new_run()
    _send(api, good, "A", [*range(10), *range(20, 30)])
    _send(api, good, "B", list(range(10, 20)))
    ok = verify(database_url, {good: 30}, len(KEYS))
    assert ok.ok, ok.problems
    assert ok.points_committed == 60

    # Same count and range, but step 20 twice and step 19 missing.
    bad = api.new_run()
    _send(api, bad, "A", [*range(10), *range(20, 30)])
    _send(api, bad, "B", [*range(10, 19), 20])
    res = verify(database_url, {bad: 30}, len(KEYS))
    assert not res.ok
    assert any("stored more than once" in p for p in res.problems), res.problems
