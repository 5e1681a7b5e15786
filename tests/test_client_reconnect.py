"""Reconnecting after a server restart: promptly (not after a back-off grown through
the outage), with a clean state afterwards, and a normal close that is not a cancel."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.fault.support import ServerProc, Writer, closing_all, wait_until

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(os.name != "posix", reason="signals")]

# The client's default back-off, not the tests' fast one: the defaults are what users get.
DEFAULT_BACKOFF = {"backoff_initial_s": 0.1, "backoff_max_s": 10.0}


def first_ack_after(writer: Writer, since: float, timeout: float = 30.0) -> float:
    """Seconds from ``since`` until the writer's acknowledged points grow."""
    before = writer.acked
    wait_until(lambda: writer.acked > before, timeout, "an ack after the restart", 0.005)
    return time.monotonic() - since


def test_first_ack_after_a_server_restart_is_prompt(database_url: str, tmp_path: Path) -> None:
    srv = ServerProc(database_url, tmp_path / "server.log", TRACKER_LOG_LEVEL="info")
    srv.start()
    writer = Writer(srv.address, "reconnect", 0, tmp_path / "spool", **DEFAULT_BACKOFF)
    writer.start()
    with closing_all(srv):
        wait_until(lambda: writer.acked > 0, 30, "first acks")
        run = writer.tracker_run
        delays = []
        for _ in range(2):
            srv.kill()
            time.sleep(0.7)
            srv.start()  # returns once the server answers its health check
            delays.append(first_ack_after(writer, time.monotonic()))
            wait_until(lambda: run.stats.state == "streaming", 10, "streaming again")
            # The error of the outage is history once delivery works again.
            wait_until(lambda: run.stats.last_error == "", 5, "last_error cleared")
        print("first ack after restart (s):", delays)
        assert max(delays) < 1.0, delays
        report = writer.finish(timeout=30)
        assert report.durable, report
        assert report.state == "closed", report
        assert writer.tracker_run.stats.state == "closed"
    # A normal close half-closes the stream and lets the server end it: OK, not a cancel.
    lines = [ln for ln in srv.log_text().splitlines() if "IngestService/Stream" in ln]
    assert lines, "no rpc log line for the stream"
    assert "CANCELLED" not in lines[-1], lines[-1]
