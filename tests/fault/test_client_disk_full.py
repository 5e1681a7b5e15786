"""Fault 8: the spool's disk fills up (a 2 MiB tmpfs) while the server is down.

log() keeps returning at once, the drop policy applies and is counted exactly
(dropped + stored == logged, per writer), no client thread dies, and delivery resumes
when space and the server come back. Needs root for the tmpfs mount (CI runs as root).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault.checks import check_points, check_summaries
from tests.fault.support import (
    ServerProc,
    closing_all,
    merged_logged,
    outcome,
    start_writers,
    wait_until,
)

pytestmark = [pytest.mark.timeout(180), pytest.mark.skipif(os.name != "posix", reason="tmpfs")]


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (skips the test when mounting is not
    permitted: not root, or no CAP_SYS_ADMIN in a container)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def fill(path: Path, leave: int) -> Path:
    """A file that takes all free space of ``path``'s filesystem but ``leave`` bytes."""
    filler = path / "filler"
    st = os.statvfs(path)
    size = max(0, st.f_bavail * st.f_frsize - leave)
    with open(filler, "wb") as f:
        chunk = b"\0" * (64 << 10)
        with contextlib.suppress(OSError):  # ENOSPC: the spools took some meanwhile
            while size > 0:
                size -= f.write(chunk[: min(size, len(chunk))])
    return filler


def test_spool_disk_full_while_the_server_is_down(database_url: str, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "tracker_client")
    with small_tmpfs(tmp_path / "spool") as spool_root:
        srv = ServerProc(database_url, tmp_path / "server.log")
        srv.start()
        writers = start_writers(srv.address, "disk-full", 3, spool_root,
                                spool_segment_bytes=64 << 10, spool_tail_bytes=128 << 10)
        with closing_all(srv):
            wait_until(lambda: all(w.acked > 0 for w in writers), 30, "first acks")
            srv.kill()
            filler = fill(spool_root, leave=96 << 10)  # the spools fill the rest in ~1 s
            wait_until(lambda: all(w.tracker_run.stats.points_dropped > 0 for w in writers),
                       30, "every writer to drop points on the full disk")
            # The disk is really full.
            with pytest.raises(OSError) as full, open(spool_root / "probe", "wb") as f:
                f.write(b"\0" * (256 << 10))
                f.flush()
            assert full.value.errno == errno.ENOSPC
            with contextlib.suppress(FileNotFoundError):
                (spool_root / "probe").unlink()
            time.sleep(2)  # logging on, everything dropped and counted
            dropped_while_full = [w.tracker_run.stats.points_dropped for w in writers]
            # Each dropped write says so in last_error; the stream's reconnect attempts to
            # the dead server overwrite it with UNAVAILABLE in between: wait for each.
            for w in writers:
                wait_until(lambda w=w: w.tracker_run.stats.last_error.startswith(
                    "spool write failed"), 10, "last_error to name the spool write")
            filler.unlink()  # space returns ...
            srv.start()  # ... and the server
            started = time.monotonic()
            targets = [(w, w.logged_points) for w in writers]
            wait_until(lambda: all(w.acked + w.tracker_run.stats.points_dropped >= t
                                   for w, t in targets), 60, "delivery after the fault")
            recovery = time.monotonic() - started
            time.sleep(0.5)
            reports = [w.finish(timeout=30) for w in writers]
            assert all(r.durable for r in reports), reports
            stats = [w.tracker_run.stats for w in writers]
            run_id = writers[0].run_id
            assert run_id is not None and all(w.run_id == run_id for w in writers)
            logged = merged_logged(writers)
            report = check_points(database_url, run_id, logged)
            dropped = sum(s.points_dropped for s in stats)
            assert report.duplicates == 0 and report.unexpected == 0, report.problems
            assert report.wrong_values == 0, report.problems
            assert report.missing == dropped  # exactly the counted drops are absent
            assert report.stored + dropped == report.logged
            for w, s in zip(writers, stats, strict=True):
                assert s.points_logged == w.logged_points
                assert s.points_acked + s.points_dropped == s.points_logged, s
                assert s.points_invalid == 0 and s.points_rejected == 0
            # Points logged after space returned were delivered: drops stopped then.
            assert [s.points_dropped for s in stats] >= dropped_while_full
            assert not check_summaries(srv.address, database_url, run_id)
            slowest = max(w.slowest_log_s for w in writers)
            assert slowest < 0.1, f"log() stalled {slowest * 1000:.1f} ms"
            assert "thread failed" not in caplog.text
            assert "cannot write" in caplog.text  # the fault was noticed, and said so
    outcome("spool disk full", "2 MiB tmpfs spool filled while the server was down; space "
            "and server back after 2 s", writers, report, recovery,
            points_dropped=dropped, slowest_log_ms=round(slowest * 1000, 2))
