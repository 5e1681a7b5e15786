"""Turn the batches of one flush into chunk rows and summary updates (numpy only).

Points of many batches are regrouped by (run, rank, attempt, key) with one stable
argsort (a radix sort on small dense codes), so a chunk keeps the arrival order of its
points. Summary deltas per (run, key) are computed from per-chunk aggregates, and the
chunks' min/max sketches (``domain.sketch``) over the whole flush at once, so the
per-point work is a handful of vectorised passes; no per-point Python loop.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tracker_server.domain.points import (
    Float64Array,
    Int32Array,
    Int64Array,
    PointBatch,
    WriterInfo,
)
from tracker_server.domain.sketch import Sketches, build_sketches

IntpArray = npt.NDArray[np.intp]


@dataclass
class ChunkSet:
    """Chunk rows of one flush. Row r holds points ``starts[r]:starts[r]+n[r]``;
    ``sketch`` holds their min/max sketches (rows without one are stored as NULL)."""

    run_ids: list[uuid.UUID]
    key_ids: Int32Array
    ranks: Int32Array
    attempts: Int32Array
    first_steps: Int64Array
    last_steps: Int64Array
    n: Int64Array
    starts: Int64Array
    steps: Int64Array
    values: Float64Array
    wall_ns: Int64Array
    sketch: Sketches

    @property
    def rows(self) -> int:
        """Number of chunk rows."""
        return len(self.run_ids)

    @property
    def points(self) -> int:
        """Number of points over all rows."""
        return int(self.steps.shape[0])


@dataclass
class SummarySet:
    """One summary delta per (run, key) touched by a flush (see run_metric_summary).

    Columns are numpy arrays (they go to PostgreSQL as binary array parameters);
    ``min_*``/``max_*`` are meaningful only where ``has_value`` (the key had a non-NaN
    value in this flush).
    """

    run_ids: list[uuid.UUID]
    key_ids: Int32Array
    count: Int64Array
    first_step: Int64Array
    last_step: Int64Array
    last_value: Float64Array
    last_attempt: Int32Array
    last_wall_ns: Int64Array
    has_value: npt.NDArray[np.bool_]
    min_value: Float64Array
    min_step: Int64Array
    max_value: Float64Array
    max_step: Int64Array


def _dense_codes(
    batches: list[tuple[WriterInfo, PointBatch]],
) -> tuple[list[tuple[uuid.UUID, int, int]], list[int], npt.NDArray[np.integer]]:
    """Per-point group code = writer group * keys-in-flush + dense key, as small ints.

    Dense codes come from the batches' small key tables, so no per-point lookup of
    global ids is needed and the codes usually fit 16 bits (numpy radix-sorts those).
    """
    groups: dict[tuple[uuid.UUID, int, int], int] = {}
    dense: dict[int, int] = {}
    batch_meta = []
    for info, batch in batches:
        g = groups.setdefault((info.key.run_id, info.rank, info.attempt), len(groups))
        table = [dense.setdefault(k, len(dense)) for k in batch.table_ids.tolist()]
        batch_meta.append((g, table))
    n_keys = max(len(dense), 1)
    span = len(groups) * n_keys
    dtype: type[np.integer] = np.uint16 if span <= 0xFFFF else np.int64
    parts = []
    for (g, table), (_, batch) in zip(batch_meta, batches, strict=True):
        lut = np.asarray(table, dtype=dtype) + dtype(g * n_keys)
        parts.append(lut[batch.key_index])
    dense_to_global = [0] * len(dense)
    for global_id, d in dense.items():
        dense_to_global[d] = global_id
    return list(groups), dense_to_global, np.concatenate(parts)


MAX_CHUNK_POINTS = 16_384
"""Longest chunk row. A busy series flushed every 100 ms would otherwise make chunks of
hundreds of thousands of points; a zoomed read fetches whole chunks, so it would read
far more than its range (a 100k-step zoom into 333k-point chunks: 68 ms)."""


def _split_long(starts: IntpArray, sizes: IntpArray, cap: int) -> tuple[IntpArray, IntpArray]:
    """Cut groups longer than ``cap`` into consecutive pieces (arrival order kept)."""
    if sizes.shape[0] == 0 or int(sizes.max()) <= cap:
        return starts, sizes
    pieces = (sizes + cap - 1) // cap
    group = np.repeat(np.arange(sizes.shape[0]), pieces)
    k = np.arange(group.shape[0]) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    return starts[group] + k * cap, np.minimum(cap, sizes[group] - k * cap)


def build_chunks(batches: list[tuple[WriterInfo, PointBatch]]) -> tuple[ChunkSet, SummarySet]:
    """Group the points of ``batches`` (in commit order) into chunks and summaries.

    Batches without points are ignored; at least one point is required (a flush with
    nothing to write has no chunks to build).
    """
    batches = [(info, batch) for info, batch in batches if batch.n]
    if not batches:
        raise ValueError("build_chunks needs at least one point")
    wgroups, dense_to_global, code = _dense_codes(batches)
    n_keys = max(len(dense_to_global), 1)
    order = np.argsort(code, kind="stable")
    sorted_code = code[order]
    starts = np.flatnonzero(np.r_[True, sorted_code[1:] != sorted_code[:-1]])
    n = sorted_code.shape[0]
    starts, sizes = _split_long(starts, np.diff(np.r_[starts, n]), MAX_CHUNK_POINTS)
    steps = np.concatenate([b.steps for _, b in batches])[order]
    values = np.concatenate([b.values for _, b in batches])[order]
    wall = np.concatenate([b.wall_ns for _, b in batches])[order]

    row_code = sorted_code[starts].astype(np.int64)
    row_wg = (row_code // n_keys).tolist()
    key_lut = np.asarray(dense_to_global, dtype=np.int32)
    chunk_starts = starts.astype(np.int64)
    chunk_sizes = sizes.astype(np.int64)
    chunks = ChunkSet(
        run_ids=[wgroups[g][0] for g in row_wg],
        key_ids=key_lut[row_code % n_keys],
        ranks=np.array([wgroups[g][1] for g in row_wg], dtype=np.int32),
        attempts=np.array([wgroups[g][2] for g in row_wg], dtype=np.int32),
        first_steps=np.minimum.reduceat(steps, starts),
        last_steps=np.maximum.reduceat(steps, starts),
        n=chunk_sizes,
        starts=chunk_starts,
        steps=steps,
        values=values,
        wall_ns=wall,
        sketch=build_sketches(steps, values, wall, chunk_starts, chunk_sizes),
    )
    return chunks, _summaries(chunks, sizes)


def _summaries(chunks: ChunkSet, sizes: IntpArray) -> SummarySet:
    """Per (run, key) deltas: count, step range, last point, NaN-ignoring min/max.

    First per chunk (vectorised over points), then per (run, key) over the few chunk
    rows. Ties are broken by write order, the order the points get in the table (chunk
    rows in COPY order, so chunk_id order, then position in the chunk) — the order a
    recomputation from the stored chunks sees (``domain.summary_rule``): the later
    write is "last"; the earlier occurrence of an equal min/max is kept.
    """
    starts = chunks.starts
    n = chunks.points
    steps, values = chunks.steps, chunks.values
    pos = np.arange(n)
    group_of = np.repeat(np.arange(starts.shape[0]), sizes)

    # Last point of a chunk: highest step, later arrival on a tie.
    at_max = steps == chunks.last_steps[group_of]
    last_idx = np.maximum.reduceat(np.where(at_max, pos, -1), starts)

    finite = ~np.isnan(values)
    gmin = np.minimum.reduceat(np.where(finite, values, np.inf), starts)
    gmax = np.maximum.reduceat(np.where(finite, values, -np.inf), starts)
    min_idx = np.minimum.reduceat(np.where(finite & (values == gmin[group_of]), pos, n), starts)
    max_idx = np.minimum.reduceat(np.where(finite & (values == gmax[group_of]), pos, n), starts)
    has_value = min_idx < n
    min_idx = np.where(has_value, min_idx, 0)
    max_idx = np.where(has_value, max_idx, 0)

    # Per (run, key) over chunk rows.
    runs: dict[uuid.UUID, int] = {}
    run_idx = np.array([runs.setdefault(r, len(runs)) for r in chunks.run_ids], dtype=np.int64)
    key_span = int(chunks.key_ids.max()) + 1
    skey = run_idx * key_span + chunks.key_ids
    attempts = chunks.attempts.astype(np.int64)
    written_last, written_min, written_max = last_idx, min_idx, max_idx
    row_order = np.argsort(skey, kind="stable")
    s_key = skey[row_order]
    g_starts = np.flatnonzero(np.r_[True, s_key[1:] != s_key[:-1]])
    g_last = np.r_[g_starts[1:], s_key.shape[0]] - 1

    def pick(keys: tuple[npt.NDArray[np.generic], ...], largest: bool) -> IntpArray:
        """Row (index into chunk rows) that sorts last/first by ``keys`` in each group."""
        # np.lexsort sorts by the last key first: group code is the primary key.
        o = np.lexsort((*keys, skey))
        return o[g_last] if largest else o[g_starts]

    last_rows = pick((written_last, steps[last_idx], attempts), largest=True)
    inf_min = np.where(has_value, gmin, np.inf)
    neg_max = np.where(has_value, -gmax, np.inf)
    # Rows with only NaN sort after rows with a value, whatever their placeholder.
    no_value = ~has_value
    min_rows = pick((written_min, inf_min, no_value), largest=False)
    max_rows = pick((written_max, neg_max, no_value), largest=False)
    group_rows = row_order[g_starts]
    counts = np.add.reduceat(chunks.n[row_order], g_starts)
    first = np.minimum.reduceat(chunks.first_steps[row_order], g_starts)

    run_list = list(runs)
    return SummarySet(
        run_ids=[run_list[r] for r in run_idx[group_rows].tolist()],
        key_ids=chunks.key_ids[group_rows],
        count=counts.astype(np.int64),
        first_step=first,
        last_step=steps[last_idx[last_rows]],
        last_value=values[last_idx[last_rows]],
        last_attempt=attempts[last_rows].astype(np.int32),
        last_wall_ns=chunks.wall_ns[last_idx[last_rows]],
        # A (run, key) has a value when its min row (rows with values sort first) has one.
        has_value=has_value[min_rows],
        min_value=values[min_idx[min_rows]],
        min_step=steps[min_idx[min_rows]],
        max_value=values[max_idx[max_rows]],
        max_step=steps[max_idx[max_rows]],
    )
