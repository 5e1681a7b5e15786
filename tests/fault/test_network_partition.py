"""The network between clients and server cut by a proxy: a 20 s blackhole (bytes
dropped, nothing closed), then a reset of every connection. The server's keepalive
notices the dead peers within its configured time and releases their streams; the
clients reconnect after the reset and deliver everything exactly once; no keepalive
ping is ever refused as too many."""

from __future__ import annotations

import time
from pathlib import Path

from tests.fault.support import (
    FaultProxy,
    ServerProc,
    check_run,
    closing_all,
    merged_logged,
    outcome,
    start_writers,
    wait_progress,
)

KEEPALIVE_MS = 2_000
KEEPALIVE_TIMEOUT_MS = 2_000
BLACKHOLE_S = 20


def test_blackhole_then_reset(database_url: str, tmp_path: Path) -> None:
    srv = ServerProc(database_url, tmp_path / "server.log",
                     TRACKER_KEEPALIVE_TIME_MS=str(KEEPALIVE_MS),
                     TRACKER_KEEPALIVE_TIMEOUT_MS=str(KEEPALIVE_TIMEOUT_MS))
    srv.start()
    proxy = FaultProxy(srv.port)
    with closing_all(srv, proxy):
        writers = start_writers(proxy.address, "partition", 3, tmp_path)
        time.sleep(2)
        open_links = [link for link in proxy.links if link.upstream is not None]
        assert open_links
        proxy.blackhole()
        cut = time.monotonic()
        time.sleep(BLACKHOLE_S)
        # The server dropped every connection it could no longer ping.
        noticed = [link.upstream_closed - cut for link in open_links
                   if link.upstream_closed is not None]
        assert len(noticed) == len(open_links), (len(noticed), len(open_links))
        limit_s = (KEEPALIVE_MS + KEEPALIVE_TIMEOUT_MS) / 1000 + 3
        assert max(noticed) < limit_s, noticed
        proxy.restore()
        resets = proxy.reset()
        recovery = wait_progress(writers, 60)
        time.sleep(1)
        reports = [w.finish(timeout=30) for w in writers]
        assert all(r.durable for r in reports), reports
        errors = " ".join(w.tracker_run.stats.last_error for w in writers)
        assert "too_many_pings" not in errors.lower() and "too many pings" not in errors.lower()
        assert "too_many_pings" not in srv.log_text()
        run_id = writers[0].run_id
        assert run_id is not None
        report = check_run(srv.address, database_url, run_id, merged_logged(writers))
    outcome("network blackhole + reset",
            f"proxy drops all bytes for {BLACKHOLE_S} s, then resets every connection (RST)",
            writers, report, recovery, server_noticed_s=round(max(noticed), 2),
            connections_reset=resets)
