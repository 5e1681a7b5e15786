"""Metric summaries (run_metric_summary rows) and the side-by-side run comparison."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from tracker_server.domain.runs import Run


@dataclass(frozen=True)
class MetricSummary:
    """Summary of one key of one run, maintained at ingest."""

    key: str
    count: int
    first_step: int
    last_step: int
    last_value: float
    last_wall_ns: int
    last_attempt: int
    min_value: float | None
    min_step: int | None
    max_value: float | None
    max_step: int | None


@dataclass(frozen=True)
class KeyInfo:
    """A key of a run: its summary and the ranks that logged it."""

    summary: MetricSummary
    ranks: list[int]


@dataclass(frozen=True)
class RunMetrics:
    """The summaries of one run (GetLatestMetrics), by key name."""

    run_id: uuid.UUID
    metrics: list[MetricSummary]


@dataclass(frozen=True)
class RankedRun:
    """One entry of GetBestRuns."""

    run_id: uuid.UUID
    run_name: str
    status: int
    experiment_id: uuid.UUID
    value: float
    step: int
    summary: MetricSummary


@dataclass(frozen=True)
class ParamRow:
    """One param across runs: a value per run (None when absent)."""

    key: str
    values: list[str | None]
    differs: bool


@dataclass(frozen=True)
class MetricRow:
    """One key across runs: a summary per run (None when absent)."""

    key: str
    summaries: list[MetricSummary | None]
    differs: bool
    goal: str = ""
    """The goal the runs defined for the key ("" when none did or they disagree)."""
    best: int | None = None
    """With a goal: index of the run whose last value is best (None: none comparable)."""


@dataclass(frozen=True)
class Comparison:
    """Runs side by side."""

    runs: list[Run]
    params: list[ParamRow]
    metrics: list[MetricRow]


def shared_goal(goals: Sequence[str | None]) -> str:
    """The goal every run that defines one agrees on ("" when none or they differ)."""
    found = {g for g in goals if g}
    return found.pop() if len(found) == 1 else ""


def best_cell(goal: str, cells: Sequence[MetricSummary | None]) -> int | None:
    """Index of the cell whose last value is best for ``goal`` (first on ties); None
    without a goal or without a comparable (non-NaN) value."""
    if goal not in ("min", "max"):
        return None
    best: int | None = None
    for i, cell in enumerate(cells):
        if cell is None or math.isnan(cell.last_value):
            continue
        if best is None:
            best = i
            continue
        current = cells[best]
        assert current is not None
        better = (cell.last_value > current.last_value if goal == "max"
                  else cell.last_value < current.last_value)
        if better:
            best = i
    return best


def _same_float(a: float, b: float) -> bool:
    # NaN equals NaN here: two runs that both diverged do not "differ" on that metric.
    return a == b or (math.isnan(a) and math.isnan(b))


def compare(runs: list[Run], summaries: dict[uuid.UUID, dict[str, MetricSummary]]) -> Comparison:
    """Params and last metric values side by side; ``differs`` marks rows where the
    runs disagree (a run missing the param or key counts as different)."""
    param_keys = sorted({k for r in runs for k in r.params})
    params = []
    for key in param_keys:
        values = [r.params.get(key) for r in runs]
        params.append(ParamRow(key, values, len(set(values)) > 1))
    metric_keys = sorted({k for r in runs for k in summaries.get(r.run_id, {})})
    metrics = []
    for key in metric_keys:
        cells = [summaries.get(r.run_id, {}).get(key) for r in runs]
        present = [c for c in cells if c is not None]
        differs = len(present) < len(cells) or any(
            not _same_float(c.last_value, present[0].last_value) for c in present
        )
        goal = shared_goal([r.metric_goals.get(key) for r in runs])
        metrics.append(MetricRow(key, cells, differs, goal, best_cell(goal, cells)))
    return Comparison(runs, params, metrics)
