"""Out of disk under the spool: handled like the spool-size limit. The drop policy
applies, every dropped point is counted, no thread dies, nothing raises into the
training script, and writing (and delivery) resumes when space returns."""

from __future__ import annotations

import errno
import json
import logging
import time
from pathlib import Path

import pytest

import tracker_client
from tests.client_support import fast, stored
from tests.fakes.disk import FullDisk
from tracker_client import _spool
from tracker_client._control import OPS_FILE, ControlQueue, read_ops
from tracker_client._meta import read_meta
from tracker_client._spool import HEADER_BYTES, Spool
from tracker_client._stats import DeliveryStats

pytestmark = pytest.mark.timeout(60)

RECORD = HEADER_BYTES + 100


def payload(i: int) -> bytes:
    return bytes([i % 251]) * 100


def test_short_write_is_cut_back_and_counted_as_dropped(tmp_path: Path) -> None:
    disk = FullDisk(free=3 * RECORD + 40)  # room for 3 records and part of a 4th
    spool = Spool(tmp_path / "w", io=disk)
    assert [spool.append(payload(i), 10) for i in range(3)] == [1, 2, 3]
    assert spool.append(payload(3), 10) is None  # short write, then ENOSPC
    assert disk.short_writes == 1
    assert spool.append(payload(4), 10) is None  # still full
    assert spool.counters.dropped_batches == 2 and spool.counters.dropped_points == 20
    assert spool.counters.write_errors == 2
    assert spool.counters.last_write_error.startswith("ENOSPC")
    assert spool.write_error  # in an out-of-disk episode
    seg = next((tmp_path / "w").glob("*.seg"))
    assert seg.stat().st_size == 3 * RECORD  # the torn bytes were cut back off
    assert spool.last_seq == 3 and spool.pending_points == 30 and spool.bytes == 3 * RECORD
    disk.make_room()
    assert spool.append(payload(5), 10) == 4  # seqs stay contiguous across the drops
    assert spool.write_error == ""
    spool.close()
    again = Spool(tmp_path / "w")
    assert again.counters.torn_bytes == 0 and again.counters.corrupt_records == 0
    assert [again.get(s).payload for s in (1, 2, 3, 4)] == [  # type: ignore[union-attr]
        payload(0), payload(1), payload(2), payload(5)]
    again.close()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_every_write_error_drops_instead_of_raising(tmp_path: Path, code: int) -> None:
    disk = FullDisk(free=0, errno_=code)
    spool = Spool(tmp_path / "w", io=disk)
    assert spool.append(payload(0), 7) is None
    assert spool.counters.dropped_points == 7 and spool.counters.write_errors == 1
    assert spool.counters.last_write_error.startswith(errno.errorcode[code])
    spool.close()


def test_truncate_failure_seals_the_segment_and_recovery_reads_what_is_whole(
        tmp_path: Path) -> None:
    disk = FullDisk(free=2 * RECORD + 10)
    spool = Spool(tmp_path / "w", io=disk)
    assert spool.append(payload(0), 10) == 1 and spool.append(payload(1), 10) == 2
    disk.refuse_truncate = True
    assert spool.append(payload(2), 10) is None  # 10 torn bytes stay on the segment
    disk.make_room()
    assert spool.append(payload(3), 10) == 3  # in a new segment, after the torn bytes
    assert len(list((tmp_path / "w").glob("*.seg"))) == 2
    spool.close()
    again = Spool(tmp_path / "w")
    assert again.last_seq == 3 and again.pending_points == 30
    assert [again.get(s).payload for s in (1, 2, 3)] == [  # type: ignore[union-attr]
        payload(0), payload(1), payload(3)]
    assert again.append(payload(4), 10) == 4
    again.close()


def test_no_room_for_a_new_segment(tmp_path: Path) -> None:
    disk = FullDisk()
    spool = Spool(tmp_path / "w", io=disk, max_bytes=1 << 20, segment_bytes=64 << 10)
    disk.refuse_open = True
    assert spool.append(payload(0), 10) is None  # the first segment cannot be created
    assert spool.counters.dropped_points == 10 and not list((tmp_path / "w").glob("*.seg"))
    disk.make_room()
    assert spool.append(payload(1), 10) == 1
    spool.close()


def test_drop_oldest_evicts_older_segments_when_the_disk_is_full(tmp_path: Path) -> None:
    disk = FullDisk()
    spool = Spool(tmp_path / "w", io=disk, policy="drop_oldest", max_bytes=1 << 30,
                  segment_bytes=64 << 10)
    per_segment = (64 << 10) // (HEADER_BYTES + 1000)
    n = 3 * per_segment + 5  # four segments, the last one partly filled
    for i in range(n):
        assert spool.append(bytes([i % 251]) * 1000, 10) is not None
    assert len(list((tmp_path / "w").glob("*.seg"))) == 4
    disk.free = 0  # the disk is full: only evicting frees space
    disk.refuse_open = True
    evicted_before = spool.counters.dropped_points
    # The write fails, the oldest segment goes, the fake gets nothing back (a real disk
    # would), so the spool evicts down to the segment being written and then drops.
    assert spool.append(b"new" * 100, 10) is None
    assert spool.counters.dropped_points - evicted_before == 3 * per_segment * 10 + 10
    assert spool.pending_points + spool.counters.dropped_points == (n + 1) * 10
    assert len(list((tmp_path / "w").glob("*.seg"))) == 1
    disk.make_room()
    seq = spool.append(b"after", 1)
    assert seq == n + 1 and spool.get(seq).payload == b"after"  # type: ignore[union-attr]
    assert spool.get(1).placeholder  # type: ignore[union-attr]
    spool.close()


def test_drop_oldest_retries_after_evicting_on_a_real_shortage(tmp_path: Path) -> None:
    class ReclaimingDisk(FullDisk):
        """Unlinking a segment gives its bytes back, as on a real filesystem."""

    disk = ReclaimingDisk()
    spool = Spool(tmp_path / "w", io=disk, policy="drop_oldest", segment_bytes=64 << 10)
    for i in range(200):
        spool.append(bytes([i % 251]) * 1000, 10)
    assert len(spool._segments) > 2
    first_seg_records = spool._segments[0].last_seq - spool._segments[0].first_seq + 1
    disk.free = 0
    orig = spool._evict_oldest

    def evict_and_reclaim() -> bool:
        ok = orig()
        if ok:
            disk.free = 1 << 20
        return ok

    spool._evict_oldest = evict_and_reclaim  # type: ignore[method-assign]
    seq = spool.append(b"kept", 1)
    assert seq == 201  # written after one eviction
    assert spool.counters.dropped_points == first_seg_records * 10
    spool.close()


def test_meta_write_failure_keeps_the_old_meta_and_retries(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    disk = FullDisk()
    spool = Spool(tmp_path / "w", io=disk)
    spool.update_meta(lambda m: m.__class__(run_key="k", writer_id="w1"))
    disk.refuse_meta = True
    with caplog.at_level(logging.WARNING, "tracker_client"):
        meta = spool.update_meta(lambda m: m.__class__(**{**m.__dict__, "run_id": "r-1"}))
    assert meta.run_id == "r-1"  # in memory, the change holds
    assert read_meta(tmp_path / "w").run_id == ""  # on disk, the old one, whole
    assert not (tmp_path / "w" / "meta.json.tmp").exists()
    assert spool.counters.meta_write_errors == 1
    assert "cannot write meta.json" in caplog.text
    disk.make_room()
    assert spool.append(payload(0), 1) == 1  # the first write that succeeds retries it
    assert read_meta(tmp_path / "w").run_id == "r-1"
    spool.close()


def test_ops_survive_a_full_disk_in_order(tmp_path: Path) -> None:
    disk = FullDisk()
    spool = Spool(tmp_path / "w", io=disk)
    queue = ControlQueue(spool, None, (), 1.0, DeliveryStats())
    assert queue.submit({"op": "params", "values": {"a": "1"}}) == 1
    disk.free = 5  # a torn line would make read_ops stop there
    assert queue.submit({"op": "tags", "values": {"b": "2"}}) == 2  # no OSError
    assert queue.pending == 2
    assert [o["op"] for o in read_ops(tmp_path / "w")] == ["params"]
    assert (tmp_path / "w" / OPS_FILE).read_text().count("\n") == 1  # cut back, whole
    disk.make_room()
    assert queue.submit({"op": "finish", "status": "finished"}) == 3
    assert [o["op"] for o in read_ops(tmp_path / "w")] == ["params", "tags", "finish"]
    spool.close()


def _full_disk_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, disk: FullDisk,
                   **opts: object) -> tracker_client.Run:
    # Every spool of this process writes through the fake (the client makes its own).
    for name in ("open", "write", "fsync", "ftruncate", "write_meta"):
        monkeypatch.setattr(_spool.DISK, name, getattr(disk, name))
    return tracker_client.init(experiment="disk-full", mode="offline",
                               options=fast(tmp_path, **opts))


def test_offline_run_on_a_full_disk_counts_every_drop_and_finishes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    disk = FullDisk()
    run = _full_disk_run(tmp_path, monkeypatch, disk)
    for step in range(500):
        run.log({"a": step, "b": -step}, step=step)
    assert run.flush(10).points_pending == 1000  # offline: spooled, pending
    disk.free = 0
    disk.refuse_open = True
    slowest = 0.0
    with caplog.at_level(logging.WARNING, "tracker_client"):
        for step in range(500, 5000):
            t0 = time.perf_counter()
            run.log({"a": step, "b": -step}, step=step)
            slowest = max(slowest, time.perf_counter() - t0)
        run.flush(10)
        st = run.stats
        assert st.points_dropped == 9000 and st.points_spooled == 1000
        assert st.last_error.startswith("spool write failed: ENOSPC")
        assert run._batcher._thread.is_alive()
        disk.make_room()
        for step in range(5000, 5100):
            run.log({"a": step, "b": -step}, step=step)
        run.flush(10)
        st = run.stats
        assert st.points_spooled == 1200 and st.points_dropped == 9000
        assert st.points_logged == st.points_spooled + st.points_dropped
        disk.free = 0
        disk.refuse_open = True
        started = time.monotonic()
        report = run.finish(timeout=5)  # must not raise, must not sit out the timeout
        assert time.monotonic() - started < 2
    assert report.points_pending == 1200 and not report.durable
    assert "thread failed" not in caplog.text
    assert slowest < 0.05, slowest
    # The meta on disk is an older one, but whole: the spool reopens with every record.
    assert json.loads((run.spool_path / "meta.json").read_text())["run_key"] == run.run_key
    again = Spool(run.spool_path)
    assert again.pending_points == 1200 and again.counters.torn_bytes == 0
    again.close()


def test_delivery_resumes_when_space_returns(server: object, database_url: str,
                                              tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    disk = FullDisk()
    for name in ("open", "write", "fsync", "ftruncate", "write_meta"):
        monkeypatch.setattr(_spool.DISK, name, getattr(disk, name))
    run = tracker_client.init(experiment="disk-full", server=server.address,  # type: ignore[attr-defined]
                              options=fast(tmp_path))
    for step in range(300):
        run.log({"a": step}, step=step)
    assert run.flush(20).durable
    disk.free = 0
    disk.refuse_open = True
    for step in range(300, 2300):
        run.log({"a": step}, step=step)
    run.flush(5)
    dropped = run.stats.points_dropped
    assert dropped == 2000
    disk.make_room()
    for step in range(2300, 2600):
        run.log({"a": step}, step=step)
    report = run.finish(timeout=20)
    assert report.durable, report
    st = run.stats
    assert st.points_acked == 600 and st.points_dropped == dropped
    assert run.run_id is not None
    got = stored(database_url, run.run_id)
    assert sum(got.values()) == st.points_logged - st.points_dropped
    assert max(got.values()) == 1
