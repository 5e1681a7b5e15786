"""Turn the batches of one flush into chunk rows and summary updates (numpy only).

Points of many batches are regrouped by (run, rank, attempt, key) with one stable
argsort, so a chunk keeps the arrival order of its points; no per-point Python loop.
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

IntpArray = npt.NDArray[np.intp]


@dataclass
class ChunkSet:
    """Chunk rows of one flush. Row r holds points ``starts[r]:starts[r]+n[r]``."""

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
    """One summary delta per (run, key) touched by a flush (see run_metric_summary)."""

    run_ids: list[uuid.UUID]
    key_ids: list[int]
    count: list[int]
    first_step: list[int]
    last_step: list[int]
    last_value: list[float]
    last_attempt: list[int]
    last_wall_ns: list[int]
    min_value: list[float | None]
    min_step: list[int | None]
    max_value: list[float | None]
    max_step: list[int | None]


def _concat(batches: list[tuple[WriterInfo, PointBatch]]) -> tuple[
    list[tuple[uuid.UUID, int, int]], Int64Array, Int32Array, Int64Array, Float64Array, Int64Array
]:
    """Concatenate the points; return per-point writer-group ids and columns."""
    groups: dict[tuple[uuid.UUID, int, int], int] = {}
    wg_parts = []
    for info, batch in batches:
        g = groups.setdefault((info.key.run_id, info.rank, info.attempt), len(groups))
        wg_parts.append(np.full(batch.n, g, dtype=np.int64))
    wg = np.concatenate(wg_parts)
    key_ids = np.concatenate([b.key_ids for _, b in batches])
    steps = np.concatenate([b.steps for _, b in batches])
    values = np.concatenate([b.values for _, b in batches])
    wall = np.concatenate([b.wall_ns for _, b in batches])
    return list(groups), wg, key_ids, steps, values, wall


def _group(code: Int64Array) -> tuple[IntpArray, IntpArray, IntpArray]:
    """Stable sort order, group start offsets, and group sizes of ``code``."""
    order = np.argsort(code, kind="stable")
    sorted_code = code[order]
    starts = np.flatnonzero(np.r_[True, sorted_code[1:] != sorted_code[:-1]])
    sizes = np.diff(np.r_[starts, sorted_code.shape[0]])
    return order, starts, sizes


def build_chunks(batches: list[tuple[WriterInfo, PointBatch]]) -> tuple[ChunkSet, SummarySet]:
    """Group the points of ``batches`` (in commit order) into chunks and summaries."""
    wgroups, wg, key_ids, steps, values, wall = _concat(batches)
    key_span = int(key_ids.max()) + 1
    order, starts, sizes = _group(wg * key_span + key_ids.astype(np.int64))
    s_steps, s_values, s_wall = steps[order], values[order], wall[order]
    s_keys = key_ids[order]
    s_wg = wg[order]
    row_wg = s_wg[starts]
    chunks = ChunkSet(
        run_ids=[wgroups[g][0] for g in row_wg.tolist()],
        key_ids=s_keys[starts].astype(np.int32),
        ranks=np.array([wgroups[g][1] for g in row_wg.tolist()], dtype=np.int32),
        attempts=np.array([wgroups[g][2] for g in row_wg.tolist()], dtype=np.int32),
        first_steps=np.minimum.reduceat(s_steps, starts),
        last_steps=np.maximum.reduceat(s_steps, starts),
        n=sizes.astype(np.int64),
        starts=starts.astype(np.int64),
        steps=s_steps,
        values=s_values,
        wall_ns=s_wall,
    )
    return chunks, _summaries(wgroups, wg, key_ids, steps, values, wall)


def _first_per_group(group_of: IntpArray, mask: npt.NDArray[np.bool_], last: bool) -> IntpArray:
    """Index (into the sorted arrays) of the first/last masked element of each group."""
    idx = np.flatnonzero(mask)
    if last:
        idx = idx[::-1]
    _, first = np.unique(group_of[idx], return_index=True)
    return idx[first]


def _summaries(
    wgroups: list[tuple[uuid.UUID, int, int]],
    wg: Int64Array,
    key_ids: Int32Array,
    steps: Int64Array,
    values: Float64Array,
    wall: Int64Array,
) -> SummarySet:
    """Per (run, key) deltas: count, step range, last point, NaN-ignoring min/max."""
    runs: dict[uuid.UUID, int] = {}
    run_of_wg = np.array([runs.setdefault(r, len(runs)) for r, _, _ in wgroups], dtype=np.int64)
    attempt_of_wg = np.array([a for _, _, a in wgroups], dtype=np.int64)
    run_idx = run_of_wg[wg]
    attempts = attempt_of_wg[wg]
    key_span = int(key_ids.max()) + 1
    order, starts, sizes = _group(run_idx * key_span + key_ids.astype(np.int64))
    s_steps, s_values, s_wall, s_att = steps[order], values[order], wall[order], attempts[order]
    group_of = np.repeat(np.arange(starts.shape[0]), sizes)

    # "Last" point: highest (attempt, step); a tie goes to the later write.
    # Steps span int64, so compare attempt first, then step, rather than a combined key.
    max_att = np.maximum.reduceat(s_att, starts)
    in_att = s_att == max_att[group_of]
    masked_steps = np.where(in_att, s_steps, np.iinfo(np.int64).min)
    max_step = np.maximum.reduceat(masked_steps, starts)
    last_idx = _first_per_group(group_of, in_att & (s_steps == max_step[group_of]), last=True)

    finite = ~np.isnan(s_values)
    has_value = np.add.reduceat(finite.astype(np.int64), starts) > 0
    gmin = np.minimum.reduceat(np.where(finite, s_values, np.inf), starts)
    gmax = np.maximum.reduceat(np.where(finite, s_values, -np.inf), starts)
    min_idx = np.full(starts.shape[0], -1, dtype=np.intp)
    max_idx = np.full(starts.shape[0], -1, dtype=np.intp)
    grp_with = np.flatnonzero(has_value)
    if grp_with.size:
        sel = has_value[group_of] & finite
        min_idx[grp_with] = _first_per_group(group_of, sel & (s_values == gmin[group_of]), False)
        max_idx[grp_with] = _first_per_group(group_of, sel & (s_values == gmax[group_of]), False)

    run_list = list(runs)
    s_run = run_idx[order]
    s_key = key_ids[order]

    def opt(arr: npt.NDArray[np.generic], idx: IntpArray) -> list[object]:
        return [None if i < 0 else v for i, v in zip(idx.tolist(), arr[idx].tolist(), strict=True)]

    return SummarySet(
        run_ids=[run_list[r] for r in s_run[starts].tolist()],
        key_ids=s_key[starts].tolist(),
        count=sizes.tolist(),
        first_step=np.minimum.reduceat(s_steps, starts).tolist(),
        last_step=s_steps[last_idx].tolist(),
        last_value=s_values[last_idx].tolist(),
        last_attempt=s_att[last_idx].tolist(),
        last_wall_ns=s_wall[last_idx].tolist(),
        min_value=opt(s_values, min_idx),  # type: ignore[arg-type]
        min_step=opt(s_steps, min_idx),  # type: ignore[arg-type]
        max_value=opt(s_values, max_idx),  # type: ignore[arg-type]
        max_step=opt(s_steps, max_idx),  # type: ignore[arg-type]
    )
