"""The memory-mapped tail: what log() wrote survives a killed process and is recovered
into the spool exactly once, even when recovery itself is interrupted."""

from __future__ import annotations

import multiprocessing
import os
import signal
import struct
from pathlib import Path

import numpy as np
import pytest

import tracker_client
from tests.client_support import fast
from tracker_client._columns import ColumnBuilder
from tracker_client._spool import Spool
from tracker_client._tail import (
    HEADER_BYTES,
    TAIL_FILE,
    create_tail,
    recover_tail,
    tail_backlog,
)
from tracker_proto.v1 import metrics_pb2

pytestmark = pytest.mark.timeout(60)


def points_in(spool: Spool) -> list[tuple[str, int, float]]:
    """(key, step, value) of every pending batch of ``spool``, in seq order."""
    out = []
    for seq in range(spool.acked_seq + 1, spool.last_seq + 1):
        rec = spool.get(seq)
        assert rec is not None
        if rec.placeholder:
            continue
        cols = metrics_pb2.MetricColumns.FromString(rec.payload)
        out += [(cols.keys[k], s, v) for k, s, v in
                zip(cols.key_index, cols.steps, cols.values, strict=True)]
    return out


def test_records_survive_and_are_recovered_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "w", tail_bytes=1 << 20)
    tail = spool.tail
    assert tail is not None and tail.persistent
    for step in range(100):
        assert tail.log_scalars(("a", "b"), (step * 1.0, -step * 1.0), step, 7) == 1
    steps = np.arange(5, dtype=np.int64)
    assert tail.log_series("s", steps, steps * 0.5, 9, max_points=100) == 1
    assert tail_backlog(tmp_path / "w") == 101
    # The process "dies": no batcher ran, the spool is abandoned without close().
    spool._closed = True
    os.close(spool._lock_fd)
    again = Spool(tmp_path / "w")
    assert again.tail_recovered_points == 205
    got = points_in(again)
    assert sorted(got) == sorted([("a", s, s * 1.0) for s in range(100)]
                                 + [("b", s, -s * 1.0) for s in range(100)]
                                 + [("s", s, s * 0.5) for s in range(5)])
    again.close()
    third = Spool(tmp_path / "w")
    assert third.tail_recovered_points == 0 and len(points_in(third)) == 205
    third.close()


def test_torn_last_entry_is_not_recovered(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "w", tail_bytes=1 << 20)
    tail = spool.tail
    assert tail is not None
    for step in range(10):
        tail.log_scalars(("a",), (float(step),), step, 1)
    last = tail.write_pos - (tail.write_pos - tail.covered) // 10
    spool._closed = True
    os.close(spool._lock_fd)
    tail.close()
    with open(tmp_path / "w" / TAIL_FILE, "r+b") as f:  # a kill in the middle of entry 10
        f.seek(HEADER_BYTES + last + 30)
        f.write(b"\xff" * 8)
    again = Spool(tmp_path / "w")
    assert again.tail_recovered_points == 9
    assert sorted(s for _, s, _ in points_in(again)) == list(range(9))
    again.close()


@pytest.mark.parametrize("killed_after", ["begin", "append"])
def test_a_recovery_killed_midway_is_finished_exactly_once(tmp_path: Path,
                                                           killed_after: str) -> None:
    spool = Spool(tmp_path / "w", tail_bytes=1 << 20)
    tail = spool.tail
    assert tail is not None
    for step in range(50):
        tail.log_scalars(("a",), (float(step),), step, 1)
    # A batcher cut the first 20 records: step 1 (begin), maybe step 2 (append), then the
    # process died before step 3 (commit).
    builder = ColumnBuilder()
    end = 0
    for i, (_kind, rec, rec_end) in enumerate(tail.read()):
        if i == 20:
            break
        builder.add_scalars(*rec)
        end = rec_end
    payload, points = builder.build()
    tail.begin(spool.last_seq + 1, end)
    if killed_after == "append":
        assert spool.append(payload, points) == 1
    spool._closed = True
    os.close(spool._lock_fd)
    again = Spool(tmp_path / "w")
    assert sorted(s for _, s, _ in points_in(again)) == list(range(50))
    again.close()


def test_the_ring_wraps_and_reports_full(tmp_path: Path) -> None:
    tail = create_tail(tmp_path, 64 << 10, 0)
    keys = tuple(f"k{i}" for i in range(10))
    written = 0
    while tail.log_scalars(keys, tuple(range(10)), written, 0) == 1:  # type: ignore[arg-type]
        written += 1
    assert 300 < written < 1000  # full: the batcher is a whole ring behind
    for _lap in range(5):  # consume and cover, then fill again: the positions wrap
        got = list(tail.read())
        assert got and got[0][1][0] == keys
        tail.commit(got[-1][2])
        n = 0
        while tail.log_scalars(keys, tuple([1.0] * 10), n, 0) == 1:
            n += 1
        assert n > 300
    assert tail.write_pos > 5 * tail.capacity
    tail.close()


def test_keys_the_tail_cannot_hold_are_refused(tmp_path: Path) -> None:
    tail = create_tail(tmp_path, 64 << 10, 0)
    assert tail.log_scalars((1,), (1.0,), 0, 0) == -1  # type: ignore[arg-type]
    assert tail.log_scalars(("a\x00b",), (1.0,), 0, 0) == -1
    big = np.zeros(10_000, dtype=np.int64)
    assert tail.log_series("s", big, big * 1.0, 0, max_points=100) == -1  # > one batch
    tail.close()


def test_no_space_for_the_tail_falls_back_to_memory(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(*_a: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", no_space)
    tail = create_tail(tmp_path, 64 << 10, 0)
    monkeypatch.undo()
    assert not tail.persistent and not (tmp_path / TAIL_FILE).exists()
    assert tail.log_scalars(("a",), (1.0,), 0, 0) == 1
    tail.close()


def test_a_closed_run_leaves_no_tail_file(tmp_path: Path) -> None:
    run = tracker_client.init(experiment="tail", mode="offline", options=fast(tmp_path))
    run.log({"a": 1.0})
    run.close(5)
    assert not (run.spool_path / TAIL_FILE).exists()
    assert Spool(run.spool_path).pending_points == 1


def _log_then_die(spool_root: str, steps: int, ready: multiprocessing.synchronize.Event
                  ) -> None:
    import tracker_client as tc

    opts = fast(Path(spool_root), flush_interval_s=30.0, batch_points=10**6)
    run = tc.init(experiment="tail", mode="offline", run_key="killed", options=opts)
    for step in range(steps):
        run.log({"loss": step * 0.5, "acc": -step * 1.0}, step=step)
    ready.set()
    os.kill(os.getpid(), signal.SIGKILL)  # nothing was cut into a batch yet


def test_a_sigkilled_process_loses_nothing_it_logged(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_log_then_die, args=(str(tmp_path), 5000, ready))
    proc.start()
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL and ready.is_set()
    (path,) = [p.parent for p in tmp_path.glob("*/meta.json")]
    assert tail_backlog(path) == 5000
    spool = Spool(path)
    assert spool.tail_recovered_points == 10_000
    got = points_in(spool)
    assert len(got) == 10_000 and len(set(got)) == 10_000
    assert {s for k, s, v in got if k == "loss"} == set(range(5000))
    spool.close()
    assert recover_tail(Spool(path), lambda p, n: None, 10) == 0  # nothing twice


def test_values_round_trip_bit_for_bit(tmp_path: Path) -> None:
    tail = create_tail(tmp_path, 64 << 10, 0)
    nan_payload = struct.unpack("<d", b"\x01\0\0\0\0\0\xf8\x7f")[0]
    odd = (float("nan"), -0.0, float("inf"), 5e-324, nan_payload)
    tail.log_scalars(tuple("abcde"), odd, 2**62, -1)
    ((_kind, (keys, values, step, wall), _end),) = list(tail.read())
    assert keys == tuple("abcde") and step == 2**62 and wall == -1
    assert [struct.pack("<d", v) for v in values] == [struct.pack("<d", v) for v in odd]
    tail.close()


def _expanded(tail: object, blocks: bool) -> list[tuple[object, ...]]:
    """Every record read from ``tail`` as (kind, keys/key, steps, value bits, wall, end)."""
    from tracker_client._tail import KIND_BLOCK, KIND_SCALARS, Tail

    assert isinstance(tail, Tail)
    tail.read_pos = tail.covered
    out: list[tuple[object, ...]] = []
    for kind, rec, end in (tail.read_blocks() if blocks else tail.read()):
        if kind == KIND_BLOCK:
            for i in range(rec.steps.shape[0]):
                out.append((KIND_SCALARS, rec.keys, int(rec.steps[i]),
                            np.asarray(rec.values[i]).view(np.uint64).tolist(),
                            int(rec.wall_ns[i]), rec.start + (i + 1) * rec.length))
        elif kind == KIND_SCALARS:
            keys, values, step, wall = rec
            out.append((kind, keys, step, np.array(values).view(np.uint64).tolist(), wall,
                        end))
        else:
            key, steps, values, wall = rec
            out.append((kind, key, steps.tolist(), values.view(np.uint64).tolist(), wall, end))
    return out


def test_blocks_read_exactly_what_records_do(tmp_path: Path) -> None:
    # Runs long and short, alternating key tuples, series between, NaN payloads, and a
    # ring small enough to wrap (pad entries, runs cut at the ring's end) several times.
    from tracker_client._tail import KIND_BLOCK

    tail = create_tail(tmp_path, 64 << 10, 1)
    rng = np.random.default_rng(3)
    nan_bits = np.array([0x7FF8000000000001], dtype=np.uint64).view(np.float64)[0]
    seen_block = False
    step = 0
    for round_ in range(40):
        run = int(rng.integers(1, 60))
        keys = ("loss", "acc") if round_ % 3 else ("loss", "acc", f"lr{round_ % 2}")
        for _ in range(run):
            values = tuple(float(v) for v in rng.standard_normal(len(keys)))
            if step % 17 == 0:
                values = (nan_bits, *values[1:])
            assert tail.log_scalars(keys, values, step, 10**18 + step * 1000) == 1
            step += 1
        if round_ % 5 == 0:
            s = np.arange(step, step + 3, dtype=np.int64)
            assert tail.log_series("s", s, s * 0.5, 5, max_points=100) == 1
        got_blocks = _expanded(tail, blocks=True)
        assert got_blocks == _expanded(tail, blocks=False)
        tail.read_pos = tail.covered
        seen_block |= any(kind == KIND_BLOCK for kind, _r, _e in tail.read_blocks())
        tail.read_pos = tail.write_pos
        tail.commit(tail.write_pos)  # consumed: the ring's room comes back
    assert seen_block


def test_block_batches_equal_record_batches() -> None:
    # A block added in slices builds the very payload its records would.
    from tracker_client._columns import ColumnBuilder

    keys = ("a", "b", "c")
    steps = np.arange(100, 140, dtype=np.int64)
    values = np.random.default_rng(0).standard_normal((40, 3))
    wall = 10**18 + steps * 7
    one, two = ColumnBuilder(), ColumnBuilder()
    one.add_scalars(("x",), (1.0,), 5, 6)
    two.add_scalars(("x",), (1.0,), 5, 6)
    for i in range(40):
        one.add_scalars(keys, tuple(values[i].tolist()), int(steps[i]), int(wall[i]))
    two.add_block(keys, steps[:15], values[:15], wall[:15])
    two.add_block(keys, steps[15:], values[15:], wall[15:])
    assert one.build() == two.build()


@pytest.mark.parametrize("in_order", [True, False])
def test_a_shared_tail_shows_the_reader_whole_records_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_order: bool) -> None:
    """The sender process's view of a tail another process writes: up to the published
    position (x86-64), and also only entries whose CRC holds elsewhere."""
    import tracker_client._tail as tail_mod

    monkeypatch.setattr(tail_mod, "_IN_ORDER_STORES", in_order)
    reader = create_tail(tmp_path, 64 << 10, 0)
    reader.shared = True
    writer = tail_mod.open_shared_writer(tmp_path / TAIL_FILE)
    for step in range(3):
        assert writer.log_scalars(("loss", "acc"), (step * 1.0, 0.5), step, 7) == 1
    reader.sync()
    assert [rec[2] for _k, rec, _e in reader.read()] == [0, 1, 2]
    # A record whose bytes this core does not see whole yet (simulated: its last value
    # byte differs from what its CRC covers).
    writer.log_scalars(("loss", "acc"), (3.0, 0.5), 3, 7)
    end = writer.write_pos
    mm = writer._mm
    mm[HEADER_BYTES + end - 9] ^= 0xFF
    reader.sync()
    assert (reader.write_pos == end) is in_order
    mm[HEADER_BYTES + end - 9] ^= 0xFF  # the rest of the store arrives
    reader.sync()
    assert reader.write_pos == end
    assert [rec[2] for _k, rec, _e in reader.read()] == [3]
    # The reader commits what it spooled; a full ring then has room again for the writer.
    reader.commit(end)
    while writer.log_scalars(("loss", "acc"), (1.0, 2.0), 9, 7) == 1:
        pass
    reader.sync()
    list(reader.read())
    reader.commit(reader.read_pos)
    assert writer.log_scalars(("loss", "acc"), (1.0, 2.0), 10, 7) == 1
    writer.close()
    reader.close()
