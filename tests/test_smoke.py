from __future__ import annotations

import numpy as np

from tests.support import Api, batch_req, columns, count_points, open_req, run_stream


def test_stream_commits_and_acks(api: Api, database_url: str) -> None:
    run_id = api.new_run()
    n = 5000
    cols = columns(["loss", "acc"], np.arange(n) % 2, np.arange(n) // 2, np.random.rand(n))
    resp = run_stream(api, [open_req(run_id, "w1"), batch_req(1, cols), batch_req(2, cols)])
    kinds = [r.WhichOneof("kind") for r in resp]
    assert kinds[0] == "opened" and resp[0].opened.committed_seq == 0
    assert resp[-1].ack.committed_through_seq == 2
    assert count_points(database_url, run_id) == 2 * n
