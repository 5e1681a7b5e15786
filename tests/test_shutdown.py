"""SIGTERM drains instead of waiting out the grace: streams stop being read, what was
read is committed and acknowledged, the streams end with UNAVAILABLE (clients
reconnect at once) and the process exits 0 well within the grace. Real processes,
one server process and a supervisor with two workers."""

from __future__ import annotations

import os
import signal
import threading
import time

import grpc
import psycopg
import pytest

from tests.stream_writer import Writer
from tests.support import Api, ServerProcess

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(os.name != "posix", reason="signals")]

GRACE_S = 10.0
STREAMS = 4


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_commits_acks_and_ends_streams_unavailable_then_exits(
    database_url: str, workers: int
) -> None:
    srv = ServerProcess(database_url, TRACKER_WORKERS=str(workers),
                        TRACKER_SHUTDOWN_GRACE_S=str(GRACE_S))
    srv.start()
    api = Api(srv.address)
    run_id = api.new_run()
    api.close()
    # Writers that never stop sending on their own: only the server can end them.
    writers = [Writer(srv.address, run_id, rank, batches=10**6, per=2000)
               for rank in range(STREAMS)]
    codes: list[grpc.StatusCode] = []

    def stream(w: Writer) -> None:
        try:
            w._one_stream(abrupt=False)
        except grpc.RpcError as exc:
            codes.append(exc.code())

    threads = [threading.Thread(target=stream, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while not all(w.acked >= 5 for w in writers):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert srv.proc is not None
    began = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    code = srv.proc.wait(GRACE_S + 10)
    took = time.monotonic() - began
    for t in threads:
        t.join(10)
    assert code == 0, srv.proc.stderr.read().decode()[-2000:] if srv.proc.stderr else code
    assert took < GRACE_S / 2, f"shutdown took {took:.1f} s of a {GRACE_S} s grace"
    assert codes == [grpc.StatusCode.UNAVAILABLE] * STREAMS
    with psycopg.connect(database_url) as conn:
        offsets = dict(conn.execute("SELECT writer_id, committed_seq FROM writer_offsets "
                                    "WHERE run_id = %s", (run_id,)).fetchall())
        points = conn.execute("SELECT coalesce(sum(n), 0) FROM metric_chunks "
                              "WHERE run_id = %s", (run_id,)).fetchone()
    # Everything committed was acknowledged before the stream ended, and nothing read
    # was left uncommitted: the last ack is the durable seq.
    assert offsets == {w.writer_id: w.acked for w in writers}
    assert points == (sum(w.acked for w in writers) * 2000,)
