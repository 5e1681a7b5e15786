"""Unit tests of the numpy regrouping and summary deltas against a naive model."""

from __future__ import annotations

import math
import uuid

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker_server.domain.chunking import build_chunks
from tracker_server.domain.points import PointBatch, WriterInfo, WriterKey

RUNS = [uuid.UUID(int=1), uuid.UUID(int=2)]


def _batch(seq: int, keys: list[int], steps: list[int], values: list[float]) -> PointBatch:
    """A batch whose key table maps local index i to global key id 10 + i."""
    n = len(keys)
    table = np.array(sorted(set(keys)), np.int32) + 10
    local = np.searchsorted(table, np.array(keys, np.int32) + 10).astype(np.uint32)
    return PointBatch(
        seq, [str(k) for k in table.tolist()], local, np.array(steps, np.int64),
        np.array(values, np.float64), np.arange(n, dtype=np.int64) + seq * 1000, table,
    )


point = st.tuples(st.integers(0, 3), st.integers(-5, 50),
                  st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(math.nan)))
batch_spec = st.tuples(st.integers(0, 1), st.integers(0, 2), st.integers(0, 2),
                       st.lists(point, min_size=1, max_size=30))


@settings(max_examples=200, deadline=None)
@given(st.lists(batch_spec, min_size=1, max_size=6))
def test_chunks_and_summaries_match_naive_model(specs: list) -> None:
    rows = []
    flat = []  # (run, rank, attempt, key, step, value, order)
    for seq, (run, rank, attempt, pts) in enumerate(specs, start=1):
        info = WriterInfo(WriterKey(RUNS[run], f"w{run}{rank}{attempt}"), rank, attempt)
        b = _batch(seq, [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts])
        rows.append((info, b))
        flat += [(RUNS[run], rank, attempt, k + 10, s, v, len(flat) + i)
                 for i, (k, s, v) in enumerate(pts)]
    chunks, summaries = build_chunks(rows)

    # Chunks: every point once, grouped by (run, rank, attempt, key), arrival order kept.
    assert chunks.points == len(flat)
    expected: dict[tuple, list] = {}
    for run, rank, attempt, k, s, v, _ in flat:
        expected.setdefault((run, rank, attempt, k), []).append((s, v))
    got = {}
    for r in range(chunks.rows):
        lo, n = int(chunks.starts[r]), int(chunks.n[r])
        key = (chunks.run_ids[r], int(chunks.ranks[r]), int(chunks.attempts[r]),
               int(chunks.key_ids[r]))
        pts = list(zip(chunks.steps[lo:lo + n].tolist(), chunks.values[lo:lo + n].tolist(),
                       strict=True))
        assert chunks.first_steps[r] == min(s for s, _ in pts)
        assert chunks.last_steps[r] == max(s for s, _ in pts)
        got[key] = pts
    assert got.keys() == expected.keys()
    for key, pts in expected.items():
        assert [(s, np.float64(v).tobytes()) for s, v in got[key]] == [
            (s, np.float64(v).tobytes()) for s, v in pts]

    # Summaries per (run, key). Ties go by write order, the order of the stored points:
    # chunk rows as they are copied (chunk_id order), then position within a row.
    row_of = {k: i for i, k in enumerate(got)}
    seen: dict[tuple, int] = {}
    written = []
    for run, rank, attempt, k, s, v, _ in flat:
        group = (run, rank, attempt, k)
        written.append((run, rank, attempt, k, s, v, (row_of[group], seen.get(group, 0))))
        seen[group] = seen.get(group, 0) + 1
    for i in range(len(summaries.run_ids)):
        run, key = summaries.run_ids[i], summaries.key_ids[i]
        pts = [p for p in written if p[0] == run and p[3] == key]
        assert summaries.count[i] == len(pts)
        assert summaries.first_step[i] == min(p[4] for p in pts)
        # last: highest (attempt, step), later write wins a tie
        last = max(pts, key=lambda p: (p[2], p[4], p[6]))
        assert (summaries.last_attempt[i], summaries.last_step[i]) == (last[2], last[4])
        assert np.float64(summaries.last_value[i]).tobytes() == np.float64(last[5]).tobytes()
        finite = [p for p in pts if not math.isnan(p[5])]
        assert bool(summaries.has_value[i]) == bool(finite)
        if not finite:
            continue
        lo = min(finite, key=lambda p: (p[5], p[6]))
        hi = min(finite, key=lambda p: (-p[5], p[6]))
        assert (summaries.min_value[i], summaries.min_step[i]) == (lo[5], lo[4])
        assert (summaries.max_value[i], summaries.max_step[i]) == (hi[5], hi[4])
    assert len(summaries.run_ids) == len({(p[0], p[3]) for p in flat})


def test_long_groups_are_cut_into_chunks_of_at_most_max_points() -> None:
    from tracker_server.domain.chunking import MAX_CHUNK_POINTS

    n = 2 * MAX_CHUNK_POINTS + 5
    info = WriterInfo(WriterKey(RUNS[0], "w"), 0, 0)
    keys = [0] * n + [1] * 3
    steps = [*range(n), 0, 1, 2]
    batch = _batch(1, keys, steps, [float(s) for s in steps])
    chunks, summaries = build_chunks([(info, batch)])
    assert chunks.n.tolist() == [MAX_CHUNK_POINTS, MAX_CHUNK_POINTS, 5, 3]
    assert chunks.first_steps.tolist() == [0, MAX_CHUNK_POINTS, 2 * MAX_CHUNK_POINTS, 0]
    assert chunks.last_steps.tolist() == [MAX_CHUNK_POINTS - 1, 2 * MAX_CHUNK_POINTS - 1,
                                          n - 1, 2]
    # One summary per (run, key) whatever the number of chunk rows.
    assert summaries.count.tolist() == [n, 3]
    assert summaries.last_step.tolist() == [n - 1, 2]
