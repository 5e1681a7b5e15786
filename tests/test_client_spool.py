"""The on-disk spool: records, torn tails, corruption, bounds and full policies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracker_client._spool import HEADER_BYTES, Spool, SpoolLocked, encode_record

pytestmark = pytest.mark.timeout(30)


def payload(i: int, size: int = 100) -> bytes:
    return bytes([i % 251]) * size


def fill(spool: Spool, n: int, size: int = 100) -> list[int]:
    seqs = []
    for i in range(n):
        seq = spool.append(payload(i, size), points=10)
        assert seq is not None
        seqs.append(seq)
    return seqs


def test_seqs_are_contiguous_and_survive_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "w")
    assert fill(spool, 5) == [1, 2, 3, 4, 5]
    spool.close()
    again = Spool(tmp_path / "w")
    assert again.last_seq == 5 and again.pending_batches == 5 and again.pending_points == 50
    rec = again.get(3)
    assert rec is not None and rec.payload == payload(2) and rec.points == 10
    assert again.append(b"x", 1) == 6  # seqs continue after a restart
    again.close()


def test_trim_acknowledges_and_deletes_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "w", max_bytes=8 << 20, segment_bytes=64 << 10)
    fill(spool, 300, size=1000)  # ~300 KB: several 64 KiB segments
    files_before = len(list((tmp_path / "w").glob("*.seg")))
    assert files_before > 3
    assert spool.trim(200) == 2000
    assert spool.get(150) is None and spool.get(201) is not None
    assert len(list((tmp_path / "w").glob("*.seg"))) < files_before
    assert spool.trim(300) == 1000
    assert spool.pending_batches == 0 and spool.bytes <= 64 << 10
    spool.close()
    # The acknowledged position is remembered, and new seqs continue after it.
    again = Spool(tmp_path / "w")
    assert again.pending_batches == 0 and again.append(b"y", 1) == 301
    again.close()


def test_torn_tail_is_truncated_and_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "w")
    fill(spool, 3)
    spool.close()
    seg = next((tmp_path / "w").glob("*.seg"))
    whole = encode_record(4, payload(3), 10, 123)
    with open(seg, "ab") as f:  # the writer died in the middle of record 4
        f.write(whole[: HEADER_BYTES + 40])
    again = Spool(tmp_path / "w")
    assert again.last_seq == 3 and again.pending_points == 30
    assert again.counters.torn_bytes == HEADER_BYTES + 40
    assert again.append(payload(9), 10) == 4  # appends continue on a clean boundary
    again.close()
    third = Spool(tmp_path / "w")
    rec = third.get(4)
    assert rec is not None and rec.payload == payload(9)
    third.close()


def test_corrupt_record_in_the_middle_becomes_a_placeholder(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "w")
    fill(spool, 5)
    spool.close()
    seg = next((tmp_path / "w").glob("*.seg"))
    data = bytearray(seg.read_bytes())
    record_len = HEADER_BYTES + 100
    data[2 * record_len + HEADER_BYTES + 5] ^= 0xFF  # flip a payload bit of seq 3
    seg.write_bytes(bytes(data))
    again = Spool(tmp_path / "w")
    assert again.counters.corrupt_records == 1
    assert again.last_seq == 5 and again.pending_points == 40
    rec = again.get(3)
    assert rec is not None and rec.placeholder  # sent empty: the seq stays contiguous
    assert again.get(4) is not None and again.get(4).payload == payload(3)  # type: ignore[union-attr]
    again.close()


def test_full_drop_new_keeps_oldest(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "w", max_bytes=512 << 10, policy="drop_new")
    stored = 0
    for i in range(1000):
        if spool.append(payload(i, 1000), 10) is not None:
            stored += 1
    assert 400 < stored < 520
    assert spool.counters.dropped_batches == 1000 - stored
    assert spool.counters.dropped_points == 10 * (1000 - stored)
    assert spool.bytes <= 512 << 10
    assert spool.get(1) is not None and spool.last_seq == stored
    spool.close()


def test_full_drop_oldest_keeps_newest(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "w", max_bytes=512 << 10, policy="drop_oldest")
    for i in range(1000):
        assert spool.append(payload(i, 1000), 10) is not None
    assert spool.bytes <= 512 << 10
    assert spool.last_seq == 1000
    assert spool.counters.dropped_batches > 0
    assert spool.pending_points + spool.counters.dropped_points == 10_000
    first = spool.get(1)
    assert first is not None and first.placeholder  # evicted: delivered as an empty seq
    last = spool.get(1000)
    assert last is not None and last.payload == payload(999, 1000)
    spool.close()


def test_a_live_spool_cannot_be_opened_twice(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "w")
    with pytest.raises(SpoolLocked):
        Spool(tmp_path / "w")
    spool.close()
    Spool(tmp_path / "w").close()


def test_reads_beyond_the_memory_cache_come_from_disk(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "w", cache_bytes=0)
    fill(spool, 3)
    rec = spool.get(2)
    assert rec is not None and rec.payload == payload(1)
    spool.close()
    assert os.path.exists(tmp_path / "w" / "meta.json")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=10 * (HEADER_BYTES + 50)),
       flip=st.one_of(st.none(), st.integers(min_value=0, max_value=10 * (HEADER_BYTES + 50) - 1)))
def test_recovery_never_returns_garbage(tmp_path_factory: pytest.TempPathFactory, cut: int,
                                        flip: int | None) -> None:
    path = tmp_path_factory.mktemp("prop") / "w"
    spool = Spool(path)
    originals = {spool.append(payload(i, 50), 10): payload(i, 50) for i in range(10)}
    spool.close()
    seg = next(path.glob("*.seg"))
    data = bytearray(seg.read_bytes())
    if flip is not None:
        data[flip] ^= 0x5A
    seg.write_bytes(bytes(data[:cut]))
    again = Spool(path)
    for seq in range(1, again.last_seq + 1):
        rec = again.get(seq)
        assert rec is not None
        assert rec.placeholder or rec.payload == originals[seq]
    intact = cut // (HEADER_BYTES + 50)
    damaged = None if flip is None else flip // (HEADER_BYTES + 50)
    assert again.last_seq >= (intact if damaged is None else min(intact, damaged))
    assert again.append(b"next", 1) == again.last_seq  # appends continue contiguously
    again.close()
