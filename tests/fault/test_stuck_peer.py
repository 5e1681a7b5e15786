"""A peer stuck while holding a run's flush lock in a way PostgreSQL's own timeouts do
not end: frozen in the middle of its COPY (the backend waits for data; neither idle nor
cancellable), or idle in a transaction with the idle timeout switched off for its
session. The healthy server's flush terminates that session once it has waited for its
client longer than ``TRACKER_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS``, and the run's writers
go on; nothing of the stuck transaction is stored."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import psycopg
import pytest

from tests.support import Api, ServerThread, batch_req, columns, count_points, open_req
from tracker_server.config import Settings
from tracker_server.storage.copy_binary import COPY_COLUMNS
from tracker_server.storage.flush_locks import run_lock_key

REAP_MS = 2_000


@pytest.mark.parametrize("how", ["mid-copy", "idle-without-timeout"])
def test_a_stuck_lock_holder_is_terminated(settings: Settings, database_url: str,
                                            how: str) -> None:
    srv = ServerThread(replace(settings, db_idle_in_transaction_timeout_ms=REAP_MS,
                               flush_lock_wait_ms=200))
    api = Api(srv.address)
    holder = psycopg.connect(database_url)
    try:
        run_id = api.new_run()
        hi, lo = run_lock_key(uuid.UUID(run_id))
        holder.execute("SET idle_in_transaction_session_timeout = 0")
        holder.execute("SELECT pg_advisory_xact_lock(%s, %s)", (hi, lo))
        copying = None
        if how == "mid-copy":
            copying = holder.cursor().copy(f"COPY metric_chunks ({', '.join(COPY_COLUMNS)}) "
                                           "FROM STDIN (FORMAT BINARY)")
            copy = copying.__enter__()
            copy.write(b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8)  # the header, then nothing
        started = time.monotonic()
        resp = list(api.ingest.Stream(iter([open_req(run_id, "w"), batch_req(
            1, columns(["x"], [0, 0], [1, 2], [0.5, 0.25]))]), timeout=60))
        took = time.monotonic() - started
        assert resp[-1].ack.committed_through_seq == 1
        assert REAP_MS / 1000 <= took < REAP_MS / 1000 + 5, took
        assert count_points(database_url, run_id) == 2
        with pytest.raises(psycopg.OperationalError):
            if copying is not None:
                copying.__exit__(None, None, None)
            holder.execute("SELECT 1")
    finally:
        holder.close()
        api.close()
        srv.stop()
