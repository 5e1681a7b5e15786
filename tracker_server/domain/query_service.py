"""Metric reads: keys, series (downsampled or exported at full resolution), latest
values, best runs and comparisons — with the limits every front door shares (see
``run_service`` for the input conventions)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from tracker_server.domain.errors import invalid
from tracker_server.domain.paging import bounded_count
from tracker_server.domain.ports import MetricReader, RunStore, UserSummaryStore
from tracker_server.domain.run_filter import parse_filter
from tracker_server.domain.runs import check_id_list, check_metric_key, parse_uuid
from tracker_server.domain.series import STEP_MAX, STEP_MIN, Series
from tracker_server.domain.series_query import (
    AGGREGATIONS,
    DOWNSAMPLING_METHODS,
    SeriesQuery,
    SeriesRequest,
)
from tracker_server.domain.summaries import (
    Comparison,
    KeyInfo,
    MetricSummary,
    RankedRun,
    RunMetrics,
    compare,
)
from tracker_server.domain.user_summaries import resolve_goal

MAX_SERIES_RUNS = 100
MAX_SERIES_KEYS = 100
MAX_SERIES = 500
"""Most (run, key) combinations of one series read."""
DEFAULT_MAX_POINTS = 1000
MIN_POINTS = 4
MAX_POINTS = 100_000
"""Bounds of max_points (per series) and of points_per_message (export)."""
DEFAULT_POINTS_PER_MESSAGE = 10_000
MAX_LATEST_RUNS = 1000
MAX_LATEST_KEYS = 1000
MAX_BEST_EXPERIMENTS = 100
DEFAULT_BEST_LIMIT = 10
MAX_BEST_LIMIT = 1000
MAX_COMPARE_RUNS = 100
SUMMARY_FIELDS = ("last", "min", "max")
"""Summary values runs can be ranked by."""


@dataclass(frozen=True)
class Ranking:
    """Runs ranked by a summary value, and the goal that ranked them."""

    runs: list[RankedRun]
    """Best first."""
    maximize: bool
    """Larger values ranked first."""
    goal_defined: bool
    """The goal is the one the runs defined (the caller gave none)."""


@dataclass(frozen=True)
class KeySeries:
    """One series of a read: its run, key, how ranks were aggregated, and the points."""

    run_id: uuid.UUID
    key: str
    aggregation: str
    series: Series


def _keys(values: Sequence[str], what: str, most: int, required: bool) -> list[str]:
    if required and not values:
        raise invalid(f"{what} must not be empty", [(what, "empty")])
    if len(values) > most:
        raise invalid(f"at most {most} {what}", [(what, "too many")])
    for v in values:
        check_metric_key(v, f"{what}[{v[:80]}]")
    return list(dict.fromkeys(values))


def _range(start_step: int | None, end_step: int | None) -> tuple[int, int]:
    start = STEP_MIN if start_step is None else start_step
    end = STEP_MAX if end_step is None else end_step
    if start > end:
        raise invalid("start_step is after end_step", [("start_step", "after end_step")])
    return start, end


def _one_of(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise invalid(f"{what} must be one of {', '.join(allowed)} (got {value!r})",
                      [(what, "unknown value")])
    return value


async def _nothing() -> AsyncIterator[Series]:
    """The export of a key the run never logged."""
    empty: list[Series] = []
    for s in empty:
        yield s


class QueryService:
    """Reads of metric keys, series, latest values, rankings and comparisons."""

    def __init__(self, reader: MetricReader, runs: RunStore, series: SeriesQuery,
                 goals: UserSummaryStore) -> None:
        self._reader = reader
        self._runs = runs
        self._series = series
        self._goals = goals

    async def list_metric_keys(self, run_id: str) -> list[KeyInfo]:
        """Keys a run logged, by name, with their summaries and ranks."""
        return await self._reader.list_keys(parse_uuid(run_id, "run_id"))

    async def get_series(
        self,
        run_ids: Sequence[str],
        keys: Sequence[str],
        *,
        start_step: int | None = None,
        end_step: int | None = None,
        max_points: int = 0,
        downsampling: str = "minmax",
        aggregation: str = "per_rank",
        rank: int | None = None,
    ) -> list[KeySeries]:
        """Series of every (run, key), run-major, in request order; a key a run never
        logged yields nothing. Each series has at most ``max_points`` points (0: the
        default), reduced by ``downsampling`` (minmax, lttb, or none: INVALID_ARGUMENT
        when the range holds more), per rank or aggregated across ranks (``aggregation``
        mean, min, max); ``rank`` picks one rank of a per-rank read."""
        rids = check_id_list(list(run_ids), "run_ids", MAX_SERIES_RUNS)
        names = _keys(keys, "keys", MAX_SERIES_KEYS, required=True)
        if len(rids) * len(names) > MAX_SERIES:
            raise invalid(f"at most {MAX_SERIES} run x key combinations", [("keys", "too many")])
        start, end = _range(start_step, end_step)
        points = bounded_count(max_points, DEFAULT_MAX_POINTS, MAX_POINTS, "max_points")
        if points < MIN_POINTS:
            raise invalid(f"max_points must be at least {MIN_POINTS}",
                          [("max_points", f"< {MIN_POINTS}")])
        method = _one_of(downsampling, DOWNSAMPLING_METHODS, "downsampling")
        agg = _one_of(aggregation, AGGREGATIONS, "aggregation")
        if rank is not None and agg != "per_rank":
            raise invalid("rank applies only to per-rank series", [("rank", "with aggregation")])
        req = SeriesRequest(start, end, points, method, agg, rank)
        await self._runs.require_runs(rids)
        key_ids = await self._reader.key_ids(names)
        out: list[KeySeries] = []
        for run_id in rids:
            for key in names:
                if key in key_ids:
                    for s in await self._series.series(run_id, key_ids[key], req):
                        out.append(KeySeries(run_id, key, agg, s))
        return out

    async def export_series(
        self,
        run_id: str,
        key: str,
        *,
        start_step: int | None = None,
        end_step: int | None = None,
        rank: int | None = None,
        points_per_message: int = 0,
    ) -> AsyncIterator[Series]:
        """Every resolved point of one (run, key) in (rank, step) order, in slices of
        at most ``points_per_message`` (0: the default). Checks everything before it
        returns the iterator, so a streaming response can still fail cleanly."""
        rid = parse_uuid(run_id, "run_id")
        name = check_metric_key(key, "key")
        start, end = _range(start_step, end_step)
        per_message = bounded_count(points_per_message, DEFAULT_POINTS_PER_MESSAGE,
                                    MAX_POINTS, "points_per_message")
        await self._runs.require_runs([rid])
        key_ids = await self._reader.key_ids([name])
        if name not in key_ids:
            return _nothing()
        return self._series.export(rid, key_ids[name], start, end, rank, per_message)

    async def latest_metrics(
        self, run_ids: Sequence[str], keys: Sequence[str] = ()
    ) -> list[RunMetrics]:
        """Summaries of ``keys`` (empty: all) per run, in request order."""
        rids = check_id_list(list(run_ids), "run_ids", MAX_LATEST_RUNS)
        names = _keys(keys, "keys", MAX_LATEST_KEYS, required=False)
        latest = await self._reader.latest(rids, names)
        return [RunMetrics(r, latest[r]) for r in rids]

    async def ranking(
        self,
        experiment_ids: Sequence[str],
        key: str,
        *,
        maximize: bool | None,
        on: str = "last",
        limit: int = 0,
        filter_text: str = "",
    ) -> Ranking:
        """The best ``limit`` (0: 10) runs of the experiments by the summary value
        ``on`` (last, min or max) of ``key``, among runs matching ``filter_text``, and
        the goal that ranked them; ``maximize`` None uses the goal the experiments' runs
        defined for ``key`` (INVALID_ARGUMENT on ``goal`` when none or both are
        defined)."""
        eids = check_id_list(list(experiment_ids), "experiment_ids", MAX_BEST_EXPERIMENTS)
        name = check_metric_key(key, "key")
        field = _one_of(on, SUMMARY_FIELDS, "on")
        count = bounded_count(limit, DEFAULT_BEST_LIMIT, MAX_BEST_LIMIT, "limit")
        where = parse_filter(filter_text)
        defined = maximize is None
        if maximize is None:  # after every check of the request: this one reads
            maximize = resolve_goal(await self._goals.goals_for(eids, name), name)
        runs = await self._reader.best_runs(eids, name, maximize, field, count, where)
        return Ranking(runs, maximize, defined)

    async def compare_runs(self, run_ids: Sequence[str]) -> Comparison:
        """Runs side by side: params and last metric values, rows marked where the
        runs differ."""
        rids = check_id_list(list(run_ids), "run_ids", MAX_COMPARE_RUNS)
        runs = await self._runs.get_runs(rids)
        latest = await self._reader.latest(rids, [])
        summaries: dict[uuid.UUID, dict[str, MetricSummary]] = {
            r: {s.key: s for s in latest[r]} for r in rids
        }
        return compare(runs, summaries)
