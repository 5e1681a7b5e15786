"""A COPY that fails in the middle of the flush transaction (a trigger injected by the
test refuses the rows of one key): nothing of the failing flushes is committed (no
chunk, no summary, no offset), writers are told to slow down, a unary call times out
with a retryable status, and once the trigger is gone everything lands exactly once,
retries included."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import psycopg
import pytest

from tests.fault.checks import check_summaries
from tests.fault.support import (
    ServerProc,
    check_run,
    closing_all,
    merged_logged,
    outcome,
    start_writers,
    wait_progress,
)
from tests.support import columns
from tracker_proto.v1 import ingest_pb2, ingest_pb2_grpc

_INJECT = """
CREATE TABLE fault_switch (armed boolean NOT NULL);
INSERT INTO fault_switch VALUES (true);
CREATE FUNCTION fault_refuse_acc() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT armed FROM fault_switch)
       AND NEW.key_id = (SELECT key_id FROM metric_keys WHERE name = 'acc') THEN
        RAISE EXCEPTION 'injected fault: refusing a chunk of acc';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER fault_refuse_acc BEFORE INSERT ON metric_chunks
    FOR EACH ROW EXECUTE FUNCTION fault_refuse_acc();
"""


def _snapshot(url: str, run_id: str) -> tuple[int, int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT coalesce(sum(n), 0) FROM metric_chunks WHERE run_id = %(r)s), "
            "(SELECT coalesce(sum(count), 0) FROM run_metric_summary WHERE run_id = %(r)s), "
            "(SELECT coalesce(sum(committed_seq), 0) FROM writer_offsets WHERE run_id = %(r)s)",
            {"r": run_id}).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def test_copy_failing_mid_transaction(database_url: str, tmp_path: Path) -> None:
    srv = ServerProc(database_url, tmp_path / "server.log")
    srv.start()
    with closing_all(srv):
        writers = start_writers(srv.address, "copy-fault", 3, tmp_path)
        time.sleep(1.5)
        run_id = writers[0].tracker_run.run_id
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(_INJECT)
        injected = time.monotonic()
        time.sleep(1)  # flushes that began before the trigger are done
        before = _snapshot(database_url, run_id)
        acked = sum(w.acked for w in writers)
        slow = sum(w.tracker_run.stats.slow_downs for w in writers)
        # A unary write meanwhile: not acknowledged, a retryable status at its deadline.
        channel = grpc.insecure_channel(srv.address)
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        unary = ingest_pb2.LogMetricsRequest(
            writer=ingest_pb2.Open(run_id=run_id, writer_id="unary", rank=9),
            batch=ingest_pb2.Batch(seq=1, columns=columns(["acc"], [0, 0], [1, 2], [0.5, 0.25])))
        with pytest.raises(grpc.RpcError) as info:
            stub.LogMetrics(unary, timeout=2)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(2)
        # Nothing partial: no chunk of any key, no summary, no offset moved.
        assert _snapshot(database_url, run_id) == before
        assert sum(w.acked for w in writers) == acked
        assert sum(w.tracker_run.stats.slow_downs for w in writers) > slow
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("UPDATE fault_switch SET armed = false")
        cleared = time.monotonic()
        recovery = wait_progress(writers, 60)
        # The retried unary call: acknowledged, and stored once whichever attempt won.
        reply = stub.LogMetrics(unary, timeout=30)
        assert reply.committed_through_seq == 1
        channel.close()
        reports = [w.finish(timeout=30) for w in writers]
        assert all(r.durable for r in reports), reports
        logged = merged_logged(writers)
        logged[("acc", 9)] = {1: 0.5, 2: 0.25}
        report = check_run(srv.address, database_url, run_id, logged)
        assert not check_summaries(srv.address, database_url, run_id)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DROP TRIGGER fault_refuse_acc ON metric_chunks")
    outcome("COPY fails mid-transaction",
            f"a trigger raises on the chunk rows of one key for {cleared - injected:.0f} s "
            "(every flush rolls back)", writers, report, recovery,
            unary_status="DEADLINE_EXCEEDED, then OK on retry (stored once)")
