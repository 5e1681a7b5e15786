"""``tracker-server --workers 2`` as real processes: one port, writers reconnecting across
workers mid-stream, a worker SIGKILLed and restarted; every batch committed exactly
once and every acknowledged point durable."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from tests.stream_writer import KEYS, Writer
from tests.support import Api, ServerProcess, wait_healthy
from tracker_server.storage.points_export import materialize_points
from tracker_server.supervisor import reserve_port, split_listen

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux")]

WRITERS = 8
BATCHES = 60
PER = 500


def _offsets(database_url: str, run_id: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT writer_id, committed_seq FROM writer_offsets "
                            "WHERE run_id = %s", (run_id,)).fetchall()
    return {w: int(s) for w, s in rows}


def _workers(srv: ServerProcess) -> list[psutil.Process]:
    assert srv.proc is not None
    return psutil.Process(srv.proc.pid).children()


def _clients(proc: psutil.Process, port: int) -> int:
    """Established client connections a worker serves on ``port``."""
    return sum(1 for c in proc.net_connections("tcp")
               if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)


def test_writers_across_two_workers_with_one_killed_commit_exactly_once(
    database_url: str,
) -> None:
    srv = ServerProcess(database_url, TRACKER_WORKERS="2", TRACKER_FLUSH_LANES="2")
    srv.start()
    api = Api(srv.address)
    try:
        run_id = api.new_run()
        before = _workers(srv)
        assert len(before) == 2
        writers = [Writer(srv.address, run_id, rank, BATCHES, PER, reconnect_every=7)
                   for rank in range(WRITERS)]
        threads = [threading.Thread(target=w.run) for w in writers]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while sum(w.acked for w in writers) < WRITERS * BATCHES // 3:
            assert time.monotonic() < deadline, [w.errors for w in writers]
            time.sleep(0.02)
        # The worker holding most of the writers' connections now.
        victim = max(before, key=lambda p: _clients(p, srv.port))
        assert _clients(victim, srv.port) > 0
        acked_at_kill = {w.writer_id: w.acked for w in writers}
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        # Whatever was acknowledged before the kill is in the database.
        durable = _offsets(database_url, run_id)
        for name, acked in acked_at_kill.items():
            assert durable.get(name, 0) >= acked, (name, acked, durable)
        for t in threads:
            t.join(120)
        # The supervisor restarted the worker; the port serves again.
        wait_healthy(srv.address, 30)
        after = _workers(srv)
        assert len(after) == 2 and victim.pid not in {p.pid for p in after}
    finally:
        api.close()
        for w in writers:
            w.stop.set()
        srv.terminate()
    assert srv.proc is not None and srv.proc.returncode == 0
    for w in writers:
        assert w.acked == BATCHES, (w.writer_id, w.acked, w.errors[-3:])
        assert w.streams > BATCHES // 7  # reconnected all along
    # Streams on the killed worker failed and were resent elsewhere.
    assert any(w.errors for w in writers)
    assert _offsets(database_url, run_id) == {w.writer_id: BATCHES for w in writers}
    with psycopg.connect(database_url) as conn:
        materialize_points(conn, [run_id])
        total, dupes = conn.execute(
            "SELECT count(*), count(*) - count(DISTINCT (rank, key, step)) "
            "FROM metric_points WHERE run_id = %s", (run_id,)).fetchone()  # type: ignore[misc]
        per_rank = dict(conn.execute(
            "SELECT rank, count(*) FROM metric_points WHERE run_id = %s GROUP BY rank",
            (run_id,)).fetchall())
    assert dupes == 0
    assert total == WRITERS * BATCHES * PER
    assert per_rank == {r: BATCHES * PER for r in range(WRITERS)}
    assert PER % KEYS == 0


def test_every_worker_serves_the_dashboard_port(database_url: str) -> None:
    import httpx

    from tests.support import free_port

    http_port = free_port()
    srv = ServerProcess(database_url, TRACKER_WORKERS="2",
                        TRACKER_HTTP_LISTEN=f"127.0.0.1:{http_port}")
    srv.start()
    api = Api(srv.address)
    try:
        run_id = api.new_run("web", exp_name="web")
        workers = _workers(srv)
        listening = [p for p in workers if any(
            c.status == psutil.CONN_LISTEN and c.laddr.port == http_port
            for c in p.net_connections("tcp"))]
        assert len(listening) == 2  # both workers listen on the one port

        def get_run() -> None:
            # A new connection each time: the kernel picks a worker for each.
            with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=10) as web:
                response = web.get(f"/api/v1/runs/{run_id}")
                assert response.status_code == 200 and response.json()["run_key"] == "web"

        for _ in range(20):
            get_run()
        # With one worker killed the other keeps serving the port, whatever the kernel
        # would have picked, until the supervisor has restarted it.
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(10)
        for _ in range(20):
            get_run()
    finally:
        api.close()
        srv.terminate()


def test_the_reserved_port_is_real_shared_with_reuseport_and_refused_when_taken() -> None:
    sock, listen = reserve_port("127.0.0.1:0")
    lone = socket.socket()  # a server without SO_REUSEPORT holds another port
    try:
        host, port = split_listen(listen)
        assert host == "127.0.0.1" and port > 0
        worker = socket.socket()
        worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        worker.bind((host, port))  # what each worker's gRPC server does
        worker.listen()
        worker.close()
        lone.bind(("127.0.0.1", 0))
        lone.listen()
        with pytest.raises(OSError, match="cannot bind"):
            reserve_port(f"127.0.0.1:{lone.getsockname()[1]}")
    finally:
        sock.close()
        lone.close()


def test_a_worker_that_cannot_start_stops_the_supervisor(
    database_url: str, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from tests.support import free_port

    env = {**os.environ, "DATABASE_URL": database_url, "TRACKER_WORKERS": "2",
           "TRACKER_LISTEN": f"127.0.0.1:{free_port()}", "TRACKER_HTTP_LISTEN": "",
           # Read by each worker at start-up (the supervisor only checks the pair is set).
           "TRACKER_TLS_CERT": str(tmp_path / "missing.pem"),
           "TRACKER_TLS_KEY": str(tmp_path / "missing.key")}
    proc = subprocess.run([sys.executable, "-m", "tracker_server"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "missing.pem" in proc.stderr and "worker_failed_to_start" in proc.stderr
