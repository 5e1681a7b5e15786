"""Series reads: version check, read cache, duplicate resolution, ranks, downsampling.

The storage side is behind the ``ports.SeriesReader`` protocol; this module decides what to
fetch. A fully resolved series is cached per (run, key) in memory, keyed by its
version (per rank and attempt: chunk count, newest chunk id, first step). The version
query reads only chunk metadata, so a cache hit skips the expensive part (detoasting
and sending the arrays: ~80 ms per million points) while every read still sees every
committed chunk: a new flush changes the version and the entry is rebuilt.

A downsampled read of a range holding far more points than requested (see
``domain.sketch_plan``) does not read every raw point: it takes the chunks' min/max
sketches (about 2/64 of the points) where that keeps the first, last, minimum and
maximum point and the duplicate rule exact, and raw arrays elsewhere. That choice
depends only on the stored chunks and the request, never on the cache, so a request
gets the same answer whether or not the full series happens to be cached.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from tracker_server.domain.errors import invalid
from tracker_server.domain.ports import SeriesReader
from tracker_server.domain.series import (
    STEP_MAX,
    STEP_MIN,
    AttemptInfo,
    Chunks,
    Series,
    aggregate,
    attempt_starts,
    reduce_points,
    resolve,
)
from tracker_server.domain.sketch import SKETCH_BUCKET_POINTS
from tracker_server.domain.sketch_plan import plan_reads, sketch_worthwhile

DEFAULT_CACHE_BYTES = 256 * 1024 * 1024
DEFAULT_CACHE_ENTRY_POINTS = 4_000_000
EXPORT_WINDOW_POINTS = 200_000
ZOOM_FILL_POINTS = 200_000
"""Largest series a zoomed (partial-range) read loads whole into the cache."""
_BYTES_PER_POINT = 24

DOWNSAMPLING_METHODS = ("minmax", "lttb", "none")
"""``SeriesRequest.method`` values: min/max per bucket, LTTB, or every point."""
AGGREGATIONS = ("per_rank", "mean", "min", "max")
"""``SeriesRequest.aggregation`` values: one series per rank, or one across ranks."""


@dataclass(frozen=True)
class SeriesRequest:
    """What to return for each (run, key)."""

    start_step: int = STEP_MIN
    end_step: int = STEP_MAX
    max_points: int = 1000
    method: str = "minmax"  # minmax, lttb or none
    aggregation: str = "per_rank"  # per_rank, mean, min or max
    rank: int | None = None


class SeriesCache:
    """LRU of resolved full series with a byte budget."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[
            tuple[uuid.UUID, int], tuple[tuple[AttemptInfo, ...], list[Series], int]
        ] = OrderedDict()

    def get(self, key: tuple[uuid.UUID, int], version: tuple[AttemptInfo, ...]
            ) -> list[Series] | None:
        """The cached series when its version matches, else None."""
        entry = self._entries.get(key)
        if entry is None or entry[0] != version:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def has(self, key: tuple[uuid.UUID, int]) -> bool:
        """Whether an entry (current or stale) exists for ``key``."""
        return key in self._entries

    def put(self, key: tuple[uuid.UUID, int], version: tuple[AttemptInfo, ...],
            series: list[Series]) -> None:
        """Store, evicting least recently used entries beyond the budget."""
        size = sum(s.steps.shape[0] for s in series) * _BYTES_PER_POINT
        if size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old[2]
        self._entries[key] = (version, series, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (_, _, evicted) = self._entries.popitem(last=False)
            self.bytes -= evicted


def _cut(series: Series, start: int, end: int) -> Series | None:
    lo = int(np.searchsorted(series.steps, start, side="left"))
    hi = int(np.searchsorted(series.steps, end, side="right"))
    if hi <= lo:
        return None
    if lo == 0 and hi == series.steps.shape[0]:
        return series
    return Series(series.rank, series.steps[lo:hi], series.values[lo:hi],
                  series.wall_ns[lo:hi])


def _finish(per_rank: list[Series], req: SeriesRequest) -> list[Series]:
    """Aggregate across ranks if asked, then downsample (CPU work, runs in a thread)."""
    if req.aggregation != "per_rank":
        agg = aggregate(per_rank, req.aggregation)
        per_rank = [agg] if agg is not None else []
    if req.method == "none":
        for s in per_rank:
            if s.steps.shape[0] > req.max_points:
                raise invalid(
                    f"the range holds {s.steps.shape[0]} points, more than max_points="
                    f"{req.max_points}; narrow the range, raise max_points, downsample, or "
                    "use StreamMetricSeries",
                    [("max_points", "too small for downsampling=NONE")],
                )
        return per_rank
    return [reduce_points(s, req.max_points, req.method) for s in per_rank]


def _may_sketch(infos: list[AttemptInfo], req: SeriesRequest, bucket: int) -> bool:
    """Could sketches serve ``req``? A cheap test on the series totals, before any
    chunk metadata is read: a downsampling method, per-rank output (aggregating ranks
    needs every rank's value at every step), and some rank with enough points."""
    if req.method == "none":
        return False
    ranks = {i.rank for i in infos if req.rank is None or i.rank == req.rank}
    if req.aggregation != "per_rank" and len(ranks) != 1:
        return False
    return any(
        sketch_worthwhile(sum(i.points for i in infos if i.rank == r), req.max_points, bucket)
        for r in ranks
    )


def _finish_planned(chunks: Chunks, infos: list[AttemptInfo], req: SeriesRequest
                    ) -> list[Series]:
    """Resolve and downsample a read that took some chunks as sketches. The points the
    sketches leave out still count in ``total_points``, and such a series is marked
    downsampled whatever its length. Aggregation only gets here with a single rank,
    where mean, min and max over one value are that value (NaN and -0.0 included), and
    so is the mean's band across ranks."""
    out = []
    for s in resolve(chunks, attempt_starts(infos), req.start_step, req.end_step):
        hidden = chunks.hidden_by_sketch(s.rank)
        rank = s.rank if req.aggregation == "per_rank" else -1
        band = s.values if req.aggregation == "mean" else None
        out.append(Series(rank, s.steps, s.values, s.wall_ns,
                          int(s.steps.shape[0]) + hidden, downsampled=hidden > 0,
                          low=band, high=band))
    return [reduce_points(s, req.max_points, req.method) for s in out]


class SeriesQuery:
    """Reads series through a cache."""

    def __init__(
        self,
        reader: SeriesReader,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        cache_entry_points: int = DEFAULT_CACHE_ENTRY_POINTS,
        sketch_bucket: int = SKETCH_BUCKET_POINTS,
    ) -> None:
        self._reader = reader
        self._sketch_bucket = sketch_bucket  # B of the stored sketches (tests use small B)
        self.sketch_reads = 0
        self.cache = SeriesCache(cache_bytes)
        self._entry_points = cache_entry_points if cache_bytes > 0 else 0

    async def series(self, run_id: uuid.UUID, key_id: int, req: SeriesRequest) -> list[Series]:
        """Resolved, optionally aggregated and downsampled series of one (run, key)."""
        infos = await self._reader.attempts(run_id, key_id)
        if not infos:
            return []
        if _may_sketch(infos, req, self._sketch_bucket):
            planner = functools.partial(plan_reads, start_step=req.start_step,
                                        end_step=req.end_step, max_points=req.max_points,
                                        bucket=self._sketch_bucket)
            planned = await self._reader.planned_chunks(
                run_id, key_id, req.start_step, req.end_step, req.rank, planner)
            if planned is not None:
                self.sketch_reads += 1
                snap_infos, chunks = planned
                return await asyncio.to_thread(_finish_planned, chunks, snap_infos, req)
        version = tuple(infos)
        full = self.cache.get((run_id, key_id), version)
        total = sum(i.points for i in infos)
        whole = req.start_step == STEP_MIN and req.end_step == STEP_MAX
        # A zoomed read of a small series fills the cache the first time (repeated zooms
        # of a finished run are then memory reads). A large one reads only the chunks in
        # range: a whole 1M-point series took ~120 ms to re-read, and a page zooming 20
        # such charts at once would re-read (and, past the budget, evict) all of them.
        # Once the cached entry went stale the run is live (every flush changes the
        # version), so its zooms read the range too.
        live = full is None and self.cache.has((run_id, key_id))
        fill = whole or (not live and total <= ZOOM_FILL_POINTS)
        if full is None and fill and total <= self._entry_points:
            chunks = await self._reader.chunks(run_id, key_id, STEP_MIN, STEP_MAX, None)
            full = await asyncio.to_thread(resolve, chunks, attempt_starts(infos))
            self.cache.put((run_id, key_id), version, full)
        if full is not None:
            per_rank = [
                c for s in full if req.rank is None or s.rank == req.rank
                if (c := _cut(s, req.start_step, req.end_step)) is not None
            ]
        else:
            chunks = await self._reader.chunks(
                run_id, key_id, req.start_step, req.end_step, req.rank
            )
            per_rank = await asyncio.to_thread(
                resolve, chunks, attempt_starts(infos), req.start_step, req.end_step
            )
        return await asyncio.to_thread(_finish, per_rank, req)

    async def export(
        self,
        run_id: uuid.UUID,
        key_id: int,
        start_step: int,
        end_step: int,
        rank: int | None,
        points_per_message: int,
    ) -> AsyncIterator[Series]:
        """Full-resolution slices in (rank, step) order, one step window at a time."""
        infos = await self._reader.attempts(run_id, key_id)
        starts = attempt_starts(infos)
        ranks = sorted({i.rank for i in infos if rank is None or i.rank == rank})
        for r in ranks:
            bounds = await self._reader.chunk_bounds(run_id, key_id, start_step, end_step, r)
            for lo, hi in plan_windows(bounds, start_step, end_step, EXPORT_WINDOW_POINTS):
                chunks = await self._reader.chunks(run_id, key_id, lo, hi, r)
                for s in await asyncio.to_thread(resolve, chunks, starts, lo, hi):
                    for i in range(0, s.steps.shape[0], points_per_message):
                        j = i + points_per_message
                        yield Series(r, s.steps[i:j], s.values[i:j], s.wall_ns[i:j])


def plan_windows(
    bounds: list[tuple[int, int]], start_step: int, end_step: int, window_points: int
) -> list[tuple[int, int]]:
    """Consecutive step windows [lo, hi] covering [start_step, end_step]; a new window
    starts at a chunk's first step once the previous one holds ``window_points``
    points, so an export keeps about one window in memory."""
    if not bounds:
        return []
    windows = []
    lo, acc = start_step, 0
    for first, n in bounds:
        if acc >= window_points and first > lo:
            windows.append((lo, first - 1))
            lo, acc = first, 0
        acc += n
    windows.append((lo, end_step))
    return windows
