"""Min/max chunk sketches: the numpy sketch against a naive model, the read planner, and
downsampled reads through sketches against reads of every raw point (in-memory reader,
then a real server)."""

from __future__ import annotations

import asyncio
import itertools
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.query_support import log_points, new_experiment, new_run, query_stub, resume, series
from tests.support import Api, ServerThread
from tracker_proto.v1 import query_pb2 as q
from tracker_server.domain import codec
from tracker_server.domain.chunking import MAX_CHUNK_POINTS, build_chunks
from tracker_server.domain.downsample import extremes
from tracker_server.domain.points import PointBatch, WriterInfo, WriterKey
from tracker_server.domain.series import (
    STEP_MAX,
    STEP_MIN,
    AttemptInfo,
    Chunks,
    Series,
    attempt_starts,
    resolve,
)
from tracker_server.domain.series_query import SeriesQuery, SeriesRequest
from tracker_server.domain.sketch import (
    SKETCH_BUCKET_POINTS,
    SKETCH_MIN_POINTS,
    build_sketches,
)
from tracker_server.domain.sketch_plan import ChunkMeta, ChunkRead, plan_reads

# --- the sketch against a naive model ------------------------------------------------


def naive_sketch(steps: list[int], values: list[float], bucket: int, min_points: int
                 ) -> list[int] | None:
    """Positions kept by the sketch of one chunk, straight from the definition."""
    n = len(steps)
    if n < min_points or any(b <= a for a, b in itertools.pairwise(steps)):
        return None
    keep = {0, n - 1}
    for lo in range(0, n, bucket):
        seg = range(lo, min(lo + bucket, n))
        low = [math.inf if math.isnan(values[i]) else values[i] for i in seg]
        high = [-math.inf if math.isnan(values[i]) else values[i] for i in seg]
        keep.add(lo + low.index(min(low)))  # index(): the first occurrence
        keep.add(lo + high.index(max(high)))
    return sorted(keep)


values_st = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0]),
)
chunk_st = st.tuples(
    st.lists(values_st, min_size=1, max_size=60),
    st.sampled_from(["increasing", "gaps", "repeat", "shuffled"]),
)


def _steps(kind: str, n: int, draw_seed: int) -> list[int]:
    rng = np.random.default_rng(draw_seed)
    if kind == "increasing":
        return list(range(n))
    if kind == "gaps":
        return np.cumsum(rng.integers(1, 5, n)).tolist()
    if kind == "repeat":  # one step logged twice in the same flush
        s = list(range(n))
        if n > 1:
            s[n // 2] = s[n // 2 - 1]
        return s
    return rng.permutation(n).tolist()


@settings(max_examples=300, deadline=None)
@given(st.lists(chunk_st, min_size=1, max_size=6), st.sampled_from([1, 2, 3, 4, 7]),
       st.integers(1, 12), st.integers(0, 1000))
def test_sketch_matches_naive_model(chunks: list[Any], bucket: int, min_points: int,
                                    seed: int) -> None:
    steps, values, sizes = [], [], []
    for i, (vals, kind) in enumerate(chunks):
        steps += _steps(kind, len(vals), seed + i)
        values += vals
        sizes.append(len(vals))
    sizes_a = np.array(sizes, dtype=np.int64)
    starts = np.r_[0, np.cumsum(sizes_a)[:-1]].astype(np.int64)
    steps_a = np.array(steps, dtype=np.int64)
    values_a = np.array(values, dtype=np.float64)
    wall_a = np.arange(len(steps), dtype=np.int64) * 10
    sk = build_sketches(steps_a, values_a, wall_a, starts, sizes_a, bucket, min_points)
    for r, (lo, n) in enumerate(zip(starts.tolist(), sizes, strict=True)):
        want = naive_sketch(steps[lo:lo + n], values[lo:lo + n], bucket, min_points)
        if want is None:
            assert sk.n[r] == -1
            continue
        a, m = int(sk.starts[r]), int(sk.n[r])
        assert m == len(want)
        got = slice(a, a + m)
        pos = [lo + p for p in want]
        assert sk.steps[got].tolist() == steps_a[pos].tolist()
        assert sk.values[got].tobytes() == values_a[pos].tobytes()  # NaN, -0.0 exact
        assert sk.wall_ns[got].tolist() == wall_a[pos].tolist()
    assert sk.points == int(np.maximum(sk.n, 0).sum())


def _batch(seq: int, steps: np.ndarray, values: np.ndarray) -> PointBatch:
    n = steps.shape[0]
    table = np.array([10], np.int32)
    local = np.zeros(n, np.uint32)
    return PointBatch(seq, ["10"], local, steps.astype(np.int64), values.astype(np.float64),
                      np.arange(n, dtype=np.int64), table)


def test_build_chunks_sketches_big_increasing_chunks_only() -> None:
    rng = np.random.default_rng(3)
    rows = []
    specs = [  # (rank, steps)
        (0, np.arange(5000)),  # big, increasing: sketched
        (1, np.arange(SKETCH_MIN_POINTS - 1)),  # too small
        (2, np.r_[np.arange(1000), 500]),  # repeats a step: no sketch
        (3, np.arange(0, 3 * SKETCH_MIN_POINTS, 3)),  # exactly the minimum size
    ]
    for seq, (rank, steps) in enumerate(specs, start=1):
        info = WriterInfo(WriterKey(uuid.UUID(int=1), f"w{rank}"), rank, 0)
        rows.append((info, _batch(seq, steps, rng.normal(size=steps.shape[0]))))
    chunks, _ = build_chunks(rows)
    by_rank = {int(chunks.ranks[r]): r for r in range(chunks.rows)}
    assert chunks.sketch.n[by_rank[1]] == -1 and chunks.sketch.n[by_rank[2]] == -1
    for rank in (0, 3):
        r = by_rank[rank]
        lo, n = int(chunks.starts[r]), int(chunks.n[r])
        want = naive_sketch(chunks.steps[lo:lo + n].tolist(), chunks.values[lo:lo + n].tolist(),
                            SKETCH_BUCKET_POINTS, SKETCH_MIN_POINTS)
        assert want is not None and int(chunks.sketch.n[r]) == len(want)
        a = int(chunks.sketch.starts[r])
        assert chunks.sketch.steps[a:a + len(want)].tolist() == \
            chunks.steps[lo:lo + n][want].tolist()
        # About 2/B of the points (plus first and last).
        assert len(want) <= 2 * math.ceil(n / SKETCH_BUCKET_POINTS) + 2


# --- the read planner ------------------------------------------------------------------


def _meta(chunk_id: int, first: int, last: int, n: int, attempt: int = 0, rank: int = 0,
          sketch: bool = True) -> ChunkMeta:
    return ChunkMeta(rank, attempt, chunk_id, first, last, n, sketch)


def _info(metas: list[ChunkMeta]) -> list[AttemptInfo]:
    out: dict[tuple[int, int], list[ChunkMeta]] = {}
    for m in metas:
        out.setdefault((m.rank, m.attempt), []).append(m)
    return [AttemptInfo(r, a, min(m.first_step for m in ms), len(ms),
                        max(m.chunk_id for m in ms), sum(m.n for m in ms))
            for (r, a), ms in sorted(out.items())]


def _sketched(plan: list[ChunkRead] | None) -> set[int]:
    return set() if plan is None else {r.chunk_id for r in plan if r.sketch}


def test_plan_reads_rules() -> None:
    big = 100_000
    metas = [_meta(1, 0, big - 1, big), _meta(2, big, 2 * big - 1, big),
             _meta(3, 2 * big, 2 * big + 9, 10, sketch=False)]
    infos = _info(metas)
    # Full range, 1000 points out of 200k: both big chunks from sketches.
    assert _sketched(plan_reads(infos, metas, STEP_MIN, STEP_MAX, 1000)) == {1, 2}
    # Too few points per output point (200k < 2 * 64 * 2000): raw.
    assert plan_reads(infos, metas, STEP_MIN, STEP_MAX, 2000) is None
    # A range cutting chunk 1: chunk 1 is raw, chunk 2 still sketched.
    assert _sketched(plan_reads(infos, metas, 10, STEP_MAX, 500)) == {2}
    # A chunk of the same rank overlapping chunk 2 (a rewrite): both raw.
    over = [*metas, _meta(4, 150_000, 150_100, 101, sketch=False)]
    assert _sketched(plan_reads(_info(over), over, STEP_MIN, STEP_MAX, 500)) == {1}
    # Another rank overlapping is no conflict.
    other = [*metas, _meta(5, 0, 2 * big, 100, rank=1, sketch=False)]
    assert _sketched(plan_reads(_info(other), other, STEP_MIN, STEP_MAX, 500)) == {1, 2}
    # Attempt 1 resumes at step 150,000: chunk 2 is partly superseded (raw), chunk 3 wholly
    # (left out), chunk 1 untouched (sketched).
    resumed = [*metas, _meta(6, 150_000, 250_000, big, attempt=1)]
    plan = plan_reads(_info(resumed), resumed, STEP_MIN, STEP_MAX, 500)
    assert _sketched(plan) == {1, 6}
    assert plan is not None and {r.chunk_id for r in plan} == {1, 2, 6}


# --- reads through sketches against reads of every raw point (in memory) --------------


@dataclass
class _Stored:
    rank: int
    attempt: int
    chunk_id: int
    steps: np.ndarray
    values: np.ndarray
    wall: np.ndarray
    sketch: tuple[np.ndarray, np.ndarray, np.ndarray] | None


def _chunks(rows: list[tuple[_Stored, bool]]) -> Chunks:
    if not rows:
        return Chunks.empty()
    rows = sorted(rows, key=lambda x: (x[0].rank, x[0].attempt, x[0].chunk_id))
    arrays = [(c.sketch if use and c.sketch else (c.steps, c.values, c.wall)) for c, use in rows]
    return Chunks(
        np.array([c.rank for c, _ in rows]), np.array([c.attempt for c, _ in rows]),
        np.array([c.chunk_id for c, _ in rows]), np.array([len(a[0]) for a in arrays]),
        np.concatenate([a[0] for a in arrays]), np.concatenate([a[1] for a in arrays]),
        np.concatenate([a[2] for a in arrays]),
        stored_n=np.array([len(c.steps) for c, _ in rows]),
    )


class FakeReader:
    """``SeriesReader`` over chunks in memory (pure unit tests of the read path)."""

    def __init__(self, stored: list[_Stored], sketches: bool) -> None:
        self.stored = stored
        self.sketches = sketches

    def _range(self, start: int, end: int, rank: int | None) -> list[_Stored]:
        return [c for c in self.stored if c.steps.min() <= end and c.steps.max() >= start
                and (rank is None or c.rank == rank)]

    async def attempts(self, run_id: uuid.UUID, key_id: int) -> list[AttemptInfo]:
        metas = [_meta(c.chunk_id, int(c.steps.min()), int(c.steps.max()), len(c.steps),
                       c.attempt, c.rank) for c in self.stored]
        return _info(metas)

    async def chunks(self, run_id: uuid.UUID, key_id: int, start_step: int, end_step: int,
                     rank: int | None) -> Chunks:
        return _chunks([(c, False) for c in self._range(start_step, end_step, rank)])

    async def chunk_bounds(self, run_id: uuid.UUID, key_id: int, start_step: int,
                           end_step: int, rank: int | None) -> list[tuple[int, int]]:
        return sorted((int(c.steps.min()), len(c.steps))
                      for c in self._range(start_step, end_step, rank))

    async def planned_chunks(
        self, run_id: uuid.UUID, key_id: int, start_step: int, end_step: int,
        rank: int | None,
        planner: Callable[[list[AttemptInfo], list[ChunkMeta]], list[ChunkRead] | None],
    ) -> tuple[list[AttemptInfo], Chunks] | None:
        infos = await self.attempts(run_id, key_id)
        live = self._range(start_step, end_step, rank)
        metas = [_meta(c.chunk_id, int(c.steps.min()), int(c.steps.max()), len(c.steps),
                       c.attempt, c.rank, self.sketches and c.sketch is not None)
                 for c in live]
        plan = planner(infos, metas)
        if plan is None:
            return None
        by_id = {c.chunk_id: c for c in live}
        return infos, _chunks([(by_id[r.chunk_id], r.sketch) for r in plan])


B_SMALL, MIN_SMALL = 4, 8

write_st = st.tuples(
    st.integers(0, 1),  # rank
    st.integers(0, 2),  # attempt (writes are applied in attempt order)
    st.integers(0, 400),  # first step
    st.integers(1, 300),  # points
    st.sampled_from(["increasing", "gaps", "repeat"]),
)


def _store(writes: list[Any], seed: int) -> list[_Stored]:
    rng = np.random.default_rng(seed)
    stored = []
    for cid, (rank, attempt, first, n, kind) in enumerate(
            sorted(writes, key=lambda w: w[1]), start=1):
        steps = np.array(_steps(kind, n, seed + cid), dtype=np.int64) + first
        values = rng.normal(size=n)
        values[rng.random(n) < 0.05] = np.nan
        values[rng.random(n) < 0.02] = np.inf
        wall = np.arange(n, dtype=np.int64) + cid * 1_000_000
        sk = build_sketches(steps, values, wall, np.zeros(1, np.int64),
                            np.array([n], np.int64), B_SMALL, MIN_SMALL)
        sketch = None if sk.n[0] < 0 else (sk.steps, sk.values, sk.wall_ns)
        stored.append(_Stored(rank, attempt, cid, steps, values, wall, sketch))
    return stored


def _points(s: Series) -> dict[int, tuple[bytes, int]]:
    return {st_: (v.tobytes(), w) for st_, v, w in
            zip(s.steps.tolist(), s.values, s.wall_ns.tolist(), strict=True)}


def assert_keeps_guarantees(got: Series, raw: Series, max_points: int) -> None:
    """``got`` (possibly from sketches) keeps what downsampling promises about ``raw``
    (every resolved point of the range): same total, at most max_points points, every
    point a real resolved point, and the first, last, min and max points."""
    assert got.rank == raw.rank and got.total_points == raw.total_points
    assert got.steps.shape[0] <= max(max_points, 0) or got.steps.shape[0] == raw.total_points
    assert np.all(np.diff(got.steps) > 0)
    truth = _points(raw)
    for step, point in _points(got).items():
        assert truth[step] == point, step
    i_min, i_max = extremes(raw.values)
    for i in (0, raw.steps.shape[0] - 1, i_min, i_max):
        assert int(raw.steps[i]) in set(got.steps.tolist()), (i, raw.steps[i])


@settings(max_examples=150, deadline=None)
@given(st.lists(write_st, min_size=1, max_size=8), st.integers(4, 12),
       st.sampled_from(["minmax", "lttb"]),
       st.one_of(st.none(), st.tuples(st.integers(-10, 500), st.integers(0, 700))),
       st.integers(0, 10_000))
def test_sketch_reads_keep_guarantees(writes: list[Any], max_points: int, method: str,
                                      rng: tuple[int, int] | None, seed: int) -> None:
    stored = _store(writes, seed)
    start, end = (STEP_MIN, STEP_MAX) if rng is None else (min(rng), max(rng))
    req = SeriesRequest(start, end, max_points, method)
    with_sk = SeriesQuery(FakeReader(stored, sketches=True), sketch_bucket=B_SMALL)
    without = SeriesQuery(FakeReader(stored, sketches=False), sketch_bucket=B_SMALL)
    got = asyncio.run(with_sk.series(uuid.UUID(int=1), 1, req))
    plain = asyncio.run(without.series(uuid.UUID(int=1), 1, req))
    reader = FakeReader(stored, sketches=False)
    infos = asyncio.run(reader.attempts(uuid.UUID(int=1), 1))
    raw = resolve(asyncio.run(reader.chunks(uuid.UUID(int=1), 1, start, end, None)),
                  attempt_starts(infos), start, end)
    assert [s.rank for s in got] == [s.rank for s in raw] == [s.rank for s in plain]
    for g, r in zip(got, raw, strict=True):
        assert_keeps_guarantees(g, r, max_points)
    if with_sk.sketch_reads == 0:  # nothing qualified: exactly the raw answer
        for g, p in zip(got, plain, strict=True):
            assert _points(g) == _points(p)
    # Deterministic.
    again = asyncio.run(with_sk.series(uuid.UUID(int=1), 1, req))
    assert [_points(s) for s in again] == [_points(s) for s in got]


def test_sketch_reads_single_rank_aggregate_and_zoom() -> None:
    # One long increasing series in 3 chunks plus a resumed attempt: sketches are used.
    writes = [(0, 0, 0, 300, "increasing"), (0, 0, 300, 300, "increasing"),
              (0, 0, 600, 300, "gaps"), (0, 1, 700, 300, "increasing")]
    stored = _store(writes, 5)
    query = SeriesQuery(FakeReader(stored, sketches=True), sketch_bucket=B_SMALL)
    raw = resolve(_chunks([(c, False) for c in stored]),
                  attempt_starts(asyncio.run(FakeReader(stored, False).attempts(
                      uuid.UUID(int=1), 1))))
    [s] = asyncio.run(query.series(uuid.UUID(int=1), 1, SeriesRequest(max_points=20)))
    assert query.sketch_reads == 1 and s.downsampled
    assert_keeps_guarantees(s, raw[0], 20)
    [m] = asyncio.run(query.series(uuid.UUID(int=1), 1,
                                   SeriesRequest(max_points=20, aggregation="mean")))
    assert m.rank == -1 and _points(m) == _points(s) and m.total_points == s.total_points


# --- through a real server ----------------------------------------------------------


def _sql(server: ServerThread, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(server.running.conninfo, autocommit=True) as conn:
        cur = conn.execute(query, args)
        return cur.fetchall() if cur.description else []


def _raw(stub: Any, run: str, key: str, start: int | None = None, end: int | None = None
         ) -> Series:
    """Every resolved point of the range, through StreamMetricSeries (always raw)."""
    kw = {} if start is None else {"start_step": start, "end_step": end}
    msgs = list(stub.StreamMetricSeries(q.StreamMetricSeriesRequest(run_id=run, key=key, **kw)))
    return Series(0, np.concatenate([np.array(m.steps, np.int64) for m in msgs]),
                  np.concatenate([np.array(m.values, np.float64) for m in msgs]),
                  np.concatenate([np.array(m.wall_time_ns, np.int64) for m in msgs]))


def _as_series(s: q.MetricSeries) -> Series:
    return Series(s.rank, np.array(s.steps, np.int64), np.array(s.values, np.float64),
                  np.array(s.wall_time_ns, np.int64), s.total_points, s.downsampled)


def test_server_sketch_reads_keep_guarantees(api: Api, server: ServerThread) -> None:
    stub = query_stub(api)
    exp = new_experiment(api)
    run = new_run(api, exp, run_key="sk")
    rng = np.random.default_rng(11)
    n = 60_000
    values = np.cumsum(rng.normal(size=3 * n))
    values[rng.random(3 * n) < 0.001] = np.nan
    values[77_777] = -1e9  # spikes the downsampler must keep
    values[123_456] = 1e9
    for i in range(3):  # three flushes: three sketched chunks
        sl = slice(i * n, (i + 1) * n)
        log_points(api, run, "x", np.arange(3 * n)[sl], values[sl], writer=f"w{i}")
    # A rewrite of a few steps in the same attempt and a resume from step 150,000.
    log_points(api, run, "x", [10, 11, 12], [5.0, 6.0, 7.0], writer="fix")
    assert resume(api, exp, "sk") == 1
    log_points(api, run, "x", np.arange(150_000, 160_000), np.arange(10_000.0), attempt=1)
    stored = _sql(server, "SELECT n, sketch_payload FROM metric_chunks "
                  "WHERE run_id = %s ORDER BY chunk_id", run)
    # Flushes longer than MAX_CHUNK_POINTS are cut into consecutive chunk rows.
    pieces = [MAX_CHUNK_POINTS] * (n // MAX_CHUNK_POINTS) + [n % MAX_CHUNK_POINTS]
    assert [r[0] for r in stored] == pieces * 3 + [3, 10_000]
    assert all(r[1] is not None for r in stored if r[0] >= SKETCH_MIN_POINTS)

    raw = _raw(stub, run, "x")
    for method in (q.DOWNSAMPLING_MINMAX, q.DOWNSAMPLING_LTTB):
        for start, end in ((None, None), (5, 170_000), (20_000, 140_000)):
            kw = {} if start is None else {"start_step": start, "end_step": end}
            [got] = series(stub, [run], ["x"], max_points=100, downsampling=method, **kw)
            want = raw if start is None else _raw(stub, run, "x", start, end)
            assert got.downsampled
            assert_keeps_guarantees(_as_series(got), want, 100)
            [again] = series(stub, [run], ["x"], max_points=100, downsampling=method, **kw)
            assert list(again.steps) == list(got.steps)

    # Without sketches (as for chunks written before migration 0007) the same request is
    # answered from raw points, with the same guarantees and the same total.
    [with_sketch] = series(stub, [run], ["x"], max_points=100)
    _sql(server, "UPDATE metric_chunks SET sketch_payload = NULL WHERE run_id = %s", run)
    [plain] = series(stub, [run], ["x"], max_points=100)
    assert plain.total_points == with_sketch.total_points == raw.total_points
    assert_keeps_guarantees(_as_series(plain), raw, 100)
    assert {plain.steps[0], plain.steps[-1]} == {with_sketch.steps[0], with_sketch.steps[-1]}


def test_server_reads_sketch_columns_only_inside_the_range(api: Api,
                                                         server: ServerThread) -> None:
    """Mark every sketch point (wall time + 1 in the sketch columns only): a zoomed read
    takes interior chunks from sketches and the edge chunks raw."""
    stub = query_stub(api)
    run = new_run(api, new_experiment(api))
    n = 40_000
    for i in range(4):
        steps = np.arange(i * n, (i + 1) * n)
        log_points(api, run, "y", steps, np.sin(steps / 1000.0), writer=f"w{i}")
    for chunk_id, payload in _sql(server, "SELECT chunk_id, sketch_payload FROM metric_chunks "
                                  "WHERE run_id = %s AND sketch_payload IS NOT NULL", run):
        sk = codec.decode(payload)
        _sql(server, "UPDATE metric_chunks SET sketch_payload = %s WHERE run_id = %s AND "
             "chunk_id = %s", codec.encode(sk.steps, sk.values, sk.wall_ns + 1), run, chunk_id)
    start, end = n // 2, 3 * n + n // 2  # cuts two chunks; the ones between lie inside
    [got] = series(stub, [run], ["y"], max_points=50, start_step=start, end_step=end)
    steps, wall = np.array(got.steps), np.array(got.wall_time_ns)
    marked = wall != steps * 1000  # log_points writes wall = step * 1000
    bounds = _sql(server, "SELECT first_step, last_step FROM metric_chunks WHERE run_id = %s",
                  run)
    inside = np.zeros(steps.shape[0], dtype=bool)
    for first, last in bounds:
        if first >= start and last <= end:
            inside |= (steps >= first) & (steps <= last)
    assert inside.any() and not inside.all()
    assert steps[0] == start and steps[-1] == end and got.total_points == end - start + 1
    assert marked[inside].all() and not marked[~inside].any()
    # Few points per output point: no sketches at all.
    [zoom] = series(stub, [run], ["y"], max_points=50, start_step=n, end_step=n + 5000)
    assert (np.array(zoom.wall_time_ns) == np.array(zoom.steps) * 1000).all()


def test_compactor_sketches_merged_chunks_like_the_flusher(api: Api,
                                                          server: ServerThread) -> None:
    """Small chunks merged into one of >= 512 points get the flusher's sketch; a merged
    chunk whose steps repeat gets none."""
    from psycopg_pool import AsyncConnectionPool

    from tracker_server.storage.compactor import compact_all

    run = new_run(api, new_experiment(api))
    rng = np.random.default_rng(2)
    values = rng.normal(size=1200)
    values[rng.random(1200) < 0.05] = np.nan
    values[100:170] = np.nan  # a whole sub-bucket of NaN
    values[[5, 300, 301]] = [np.inf, -np.inf, -0.0]
    values[400:410] = 1.0  # ties: the first one wins
    for i in range(0, 1200, 300):  # four flushes of 300 points: small chunks
        log_points(api, run, "m", np.arange(i, i + 300), values[i:i + 300], writer=f"w{i}")
    for i in range(2):  # "r": the second write repeats step 299
        log_points(api, run, "r", np.arange(299 * i, 299 * i + 300), np.ones(300),
                   writer=f"r{i}")

    async def compact() -> None:
        pool = AsyncConnectionPool(server.running.conninfo, min_size=1, max_size=1, open=False)
        await pool.open()
        try:
            await compact_all(pool)
        finally:
            await pool.close()

    server.call(compact())
    rows = [(name, codec.decode(p), None if sp is None else codec.decode(sp)) for name, p, sp
            in _sql(server, "SELECT k.name, c.payload, c.sketch_payload FROM metric_chunks c "
                    "JOIN metric_keys k USING (key_id) WHERE c.run_id = %s ORDER BY 1", run)]
    assert [r[0] for r in rows] == ["m", "r"]
    (_, points, sketch), repeated = rows
    assert repeated[2] is None and sketch is not None
    steps, vals, wall = points.steps.tolist(), points.values.tolist(), points.wall_ns.tolist()
    sk_steps, sk_vals = sketch.steps.tolist(), sketch.values.tolist()
    sk_wall = sketch.wall_ns.tolist()
    want = naive_sketch(steps, vals, SKETCH_BUCKET_POINTS, SKETCH_MIN_POINTS)
    assert want is not None and len(steps) == 1200
    assert sk_steps == [steps[i] for i in want]
    assert np.array(sk_vals).tobytes() == np.array([vals[i] for i in want]).tobytes()
    assert sk_wall == [wall[i] for i in want]
    # The flusher's numpy sketch of the same points is the same.
    sk = build_sketches(np.array(steps), np.array(vals), np.array(wall), np.zeros(1, np.int64),
                        np.array([1200]))
    assert sk.steps.tolist() == sk_steps
