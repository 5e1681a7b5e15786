"""The real ``tracker-server`` process: embedded PostgreSQL by default, clean shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from tests.support import Api, free_port, wait_healthy


def test_embedded_default_starts_serves_and_stops(tmp_path: Path) -> None:
    port, http_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(TRACKER_DATA_DIR=str(tmp_path / "data"), TRACKER_LISTEN=f"127.0.0.1:{port}",
               TRACKER_HTTP_LISTEN=f"127.0.0.1:{http_port}")
    proc = subprocess.Popen([sys.executable, "-m", "tracker_server"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_healthy(f"127.0.0.1:{port}", timeout=60)
        api = Api(f"127.0.0.1:{port}")
        run_id = api.new_run("embedded", exp_name="e")
        assert len(run_id) == 36
        api.close()
        # The same process serves the REST API and the dashboard on TRACKER_HTTP_LISTEN.
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=10) as web:
            assert web.get("/health/ready").json()["status"] == "ready"
            assert web.get(f"/api/v1/runs/{run_id}").json()["run_key"] == "embedded"
        pid_file = tmp_path / "data" / "pg" / "postmaster.pid"
        postmaster = int(pid_file.read_text().splitlines()[0])
        assert psutil.pid_exists(postmaster)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"listening on" in out
    assert f"dashboard and REST API at http://127.0.0.1:{http_port}/".encode() in out
    deadline = time.monotonic() + 20
    while psutil.pid_exists(postmaster) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not psutil.pid_exists(postmaster), "embedded PostgreSQL still running after exit"
    # Restart on the same data directory: data survives.
    proc = subprocess.Popen([sys.executable, "-m", "tracker_server"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_healthy(f"127.0.0.1:{port}", timeout=60)
        api = Api(f"127.0.0.1:{port}")
        assert api.new_run("embedded", exp_name="e") == run_id  # idempotent run key, same database
        api.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def test_a_server_stops_the_postgresql_it_adopted_after_a_kill(tmp_path: Path) -> None:
    """A SIGKILLed server leaves its embedded PostgreSQL running; the next server on the
    data directory adopts it and, when it stops cleanly, stops it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(TRACKER_DATA_DIR=str(tmp_path / "data"), TRACKER_LISTEN=f"127.0.0.1:{port}")

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "tracker_server"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_healthy(f"127.0.0.1:{port}", timeout=60)
        return proc

    first = start()
    pid_file = tmp_path / "data" / "pg" / "postmaster.pid"
    postmaster = int(pid_file.read_text().splitlines()[0])
    first.kill()
    first.wait(10)
    assert psutil.pid_exists(postmaster)  # a kill leaves it running ...
    second = start()
    try:
        assert int(pid_file.read_text().splitlines()[0]) == postmaster  # ... adopted
    finally:
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err.decode()[-2000:]
    deadline = time.monotonic() + 20
    while psutil.pid_exists(postmaster) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not psutil.pid_exists(postmaster), "adopted PostgreSQL left running"
