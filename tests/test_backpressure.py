"""Overload: PostgreSQL stalls while 4 streams push at full speed. The server's memory
(every worker process together) stays within its budget, clients are slowed down, and
afterwards every point is committed exactly once."""

from __future__ import annotations

import threading
import time

import numpy as np
import psutil
import psycopg

from bench.environment import tree_rss
from tests.support import Api, ServerProcess, batch_req, columns, count_points, open_req

MiB = 1 << 20
BUDGET = 64 * MiB
STREAMS = 4
BATCH = 5000
WORKERS = 2


def test_database_stall_applies_backpressure_and_loses_nothing(database_url: str) -> None:
    srv = ServerProcess(database_url, TRACKER_MEMORY_BUDGET_BYTES=str(BUDGET),
                        TRACKER_FLUSH_BYTES=str(4 * MiB), TRACKER_MAX_FLUSH_BYTES=str(16 * MiB),
                        TRACKER_WORKERS=str(WORKERS))
    srv.start()
    api = Api(srv.address)
    proc = psutil.Process(srv.proc.pid)  # type: ignore[union-attr]
    try:
        run_id = api.new_run()
        idx = np.arange(BATCH)
        cols = columns([f"k{i}" for i in range(20)], idx % 20, idx // 20, np.random.rand(BATCH))
        stop_sending = threading.Event()
        sent = [0] * STREAMS
        slow_downs = [0] * STREAMS
        final_ack = [0] * STREAMS
        errors: list[BaseException] = []

        def stream(i: int) -> None:
            def requests():
                yield open_req(run_id, f"w{i}")
                seq = 0
                while not stop_sending.is_set():
                    seq += 1
                    sent[i] = seq  # counted when gRPC takes it
                    yield batch_req(seq, cols)
            try:
                for resp in api.ingest.Stream(requests(), timeout=120):
                    kind = resp.WhichOneof("kind")
                    if kind == "slow_down":
                        slow_downs[i] += 1
                    elif kind == "ack":
                        final_ack[i] = resp.ack.committed_through_seq
            except BaseException as exc:  # collected, asserted below
                errors.append(exc)

        base_rss = tree_rss(proc)  # idle server, before any load
        threads = [threading.Thread(target=stream, args=(i,)) for i in range(STREAMS)]
        for t in threads:
            t.start()
        time.sleep(2)
        peak_rss = tree_rss(proc)
        # Stall: hold an exclusive lock on the chunk table for 10 s; every flush waits.
        with psycopg.connect(database_url) as blocker:
            blocker.execute("LOCK TABLE metric_chunks IN ACCESS EXCLUSIVE MODE")
            stall_start = time.monotonic()
            sent_at_start = sum(sent)
            sent_mid = 0
            while time.monotonic() - stall_start < 10:
                peak_rss = max(peak_rss, tree_rss(proc))
                if sent_mid == 0 and time.monotonic() - stall_start > 5:
                    sent_mid = sum(sent)
                time.sleep(0.05)
            sent_at_end = sum(sent)
            blocker.rollback()
        time.sleep(2)
        stop_sending.set()
        for t in threads:
            t.join(120)
        print(f"base_rss={base_rss / MiB:.0f}MiB peak_rss={peak_rss / MiB:.0f}MiB "
              f"slow_downs={sum(slow_downs)} sent={sent} "
              f"start/mid/end={sent_at_start}/{sent_mid}/{sent_at_end}")
        assert errors == []
        # Memory: bounded by the one budget the workers share (plus interpreter, gRPC and
        # flush overhead of each worker).
        assert len(proc.children()) == WORKERS
        assert peak_rss < base_rss + BUDGET + WORKERS * 150 * MiB, (base_rss, peak_rss)
        # Clients were slowed down: told so, and sending stopped during the stall's
        # second half (only what gRPC flow-control windows absorb gets through).
        assert sum(slow_downs) > 0
        assert sent_at_end - sent_mid <= STREAMS * 4, (sent_at_start, sent_mid, sent_at_end)
        # Exactly once after the stall: every sent batch committed, nothing twice.
        assert final_ack == sent
        assert count_points(database_url, run_id) == sum(sent) * BATCH
    finally:
        api.close()
        srv.terminate()
