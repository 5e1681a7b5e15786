"""Plain Python views of what the read API returns, converted once from the wire types."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from tracker_client import _enums
from tracker_proto.v1 import experiments_pb2, query_pb2

Goal = Literal["min", "max"]
"""Whether smaller (``min``) or larger (``max``) values are better."""
GOAL_NAME: dict[int, Goal] = {query_pb2.GOAL_MINIMIZE: "min", query_pb2.GOAL_MAXIMIZE: "max"}
SummaryOn = Literal["last", "min", "max"]
"""Which summary value a ranking uses."""


def _when(ts: Timestamp, present: bool = True) -> datetime | None:
    if not present or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return ts.ToDatetime(tzinfo=UTC)


@dataclass(frozen=True)
class Experiment:
    """An experiment."""

    experiment_id: str
    name: str
    owner: str
    description: str
    status: str
    """``created``, ``active`` or ``archived``."""
    created_at: datetime | None

    @classmethod
    def from_proto(cls, e: experiments_pb2.Experiment) -> Experiment:
        """Wire -> view."""
        return cls(experiment_id=e.experiment_id, name=e.name, owner=e.owner,
                   description=e.description,
                   status=_enums.EXPERIMENT_STATUS_NAME.get(e.status, "unspecified"),
                   created_at=_when(e.created_at, e.HasField("created_at")))


@dataclass(frozen=True)
class MetricSummary:
    """One key of one run, from the summary the server keeps at ingest."""

    key: str
    count: int
    """Points stored, every attempt and rank included."""
    first_step: int
    last_step: int
    last: float
    """Value at the last step (highest attempt, then highest step)."""
    last_wall_time_ns: int
    min: float | None
    """Smallest value (NaN ignored); None when every value is NaN."""
    min_step: int | None
    max: float | None
    max_step: int | None
    last_attempt: int

    @classmethod
    def from_proto(cls, s: query_pb2.MetricSummary) -> MetricSummary:
        """Wire -> view."""
        return cls(
            key=s.key, count=s.count, first_step=s.first_step, last_step=s.last_step,
            last=s.last_value, last_wall_time_ns=s.last_wall_time_ns,
            min=s.min_value if s.HasField("min_value") else None,
            min_step=s.min_step if s.HasField("min_step") else None,
            max=s.max_value if s.HasField("max_value") else None,
            max_step=s.max_step if s.HasField("max_step") else None,
            last_attempt=s.last_attempt,
        )


@dataclass(frozen=True)
class RunData:
    """What the server knows of a run (see :class:`tracker_client.ApiRun`)."""

    run_id: str
    experiment_id: str
    name: str
    run_key: str
    status: str
    """``running``, ``finished``, ``failed`` or ``killed``."""
    attempt: int
    seed: int | None
    slurm_job_id: str
    params: dict[str, str]
    tags: dict[str, str]
    metadata: dict[str, Any]
    """Reproducibility metadata recorded at ``init()`` (host, git, packages, ...)."""
    created_at: datetime | None
    ended_at: datetime | None
    metrics: dict[str, MetricSummary] = field(default_factory=dict)
    """Summaries of every key the run logged."""
    user_summary: dict[str, float] = field(default_factory=dict)
    """Values set with ``run.summary[key] = value`` (not from logged points)."""
    goals: dict[str, Goal] = field(default_factory=dict)
    """``min``/``max`` per key, as set with ``run.define_metric(key, goal=...)``."""

    @property
    def summary(self) -> dict[str, float]:
        """Last value of every logged key, with the values the run set itself
        (``run.summary[key] = value``) over them: ``{"loss": 0.12, "test/acc": 0.93}``."""
        out = {k: s.last for k, s in self.metrics.items()}
        out.update(self.user_summary)
        return out

    @staticmethod
    def fields_from_proto(r: experiments_pb2.Run,
                          metrics: Iterable[query_pb2.MetricSummary] = ()) -> dict[str, Any]:
        """Constructor arguments from the wire run (and its summaries)."""
        return dict(
            run_id=r.run_id, experiment_id=r.experiment_id, name=r.name, run_key=r.run_key,
            status=_enums.RUN_STATUS_NAME.get(r.status, "unspecified"), attempt=r.attempt,
            seed=r.seed if r.HasField("seed") else None, slurm_job_id=r.slurm_job_id,
            params=dict(r.params), tags=dict(r.tags),
            metadata=json_format.MessageToDict(r.metadata) if r.HasField("metadata") else {},
            created_at=_when(r.created_at, r.HasField("created_at")),
            ended_at=_when(r.ended_at, r.HasField("ended_at")),
            metrics={s.key: MetricSummary.from_proto(s) for s in metrics},
            user_summary=dict(r.summary),
            goals={k: v for k, v in r.metric_goals.items() if v in ("min", "max")},
        )

    def row(self) -> dict[str, Any]:
        """One flat row: identity columns, then ``params.*``, ``tags.*``, ``summary.*``."""
        out: dict[str, Any] = {
            "run_id": self.run_id, "name": self.name, "experiment_id": self.experiment_id,
            "status": self.status, "run_key": self.run_key, "attempt": self.attempt,
            "created_at": self.created_at, "ended_at": self.ended_at,
        }
        out.update({f"params.{k}": v for k, v in self.params.items()})
        out.update({f"tags.{k}": v for k, v in self.tags.items()})
        out.update({f"summary.{k}": v for k, v in self.summary.items()})
        return out


@dataclass(frozen=True)
class RankedRun:
    """One entry of :meth:`Api.best`."""

    run_id: str
    run_name: str
    status: str
    experiment_id: str
    value: float
    step: int
    summary: MetricSummary
    checkpoint: Any = None
    """With ``best(..., with_checkpoint=True)``: the run's checkpoint
    (:class:`tracker_client.Artifact`) nearest ``step``, None when it recorded none."""

    @classmethod
    def from_proto(cls, r: query_pb2.RankedRun) -> RankedRun:
        """Wire -> view."""
        return cls(run_id=r.run_id, run_name=r.run_name,
                   status=_enums.RUN_STATUS_NAME.get(r.status, "unspecified"),
                   experiment_id=r.experiment_id, value=r.value, step=r.step,
                   summary=MetricSummary.from_proto(r.summary))


GoalSource = Literal["request", "runs"]
"""Where the goal of a ranking came from: the caller's ``mode``, or the goal the runs
defined with ``run.define_metric``."""


class Ranking(list[RankedRun]):
    """What :meth:`Api.best` returns: the ranked runs, best first (a plain ``list`` of
    :class:`RankedRun` in every other respect), and the goal that ranked them.

    ``mode`` and ``mode_source`` survive an empty ranking; a slice or copy of the list
    is a plain ``list`` without them."""

    mode: Goal | None
    """The goal that ranked the runs: ``min`` (smallest first) or ``max``; None when a
    server that predates the answer's goal ranked by a goal the runs defined."""
    mode_source: GoalSource | None
    """``request``: the ``mode`` passed to ``best``; ``runs``: the goal the runs defined
    for the metric (``mode=None``); None when the server did not say."""

    def __init__(self, runs: Iterable[RankedRun] = (), mode: Goal | None = None,
                 mode_source: GoalSource | None = None) -> None:
        super().__init__(runs)
        self.mode = mode
        self.mode_source = mode_source

    def __repr__(self) -> str:
        return (f"Ranking({list.__repr__(self)}, mode={self.mode!r}, "
                f"mode_source={self.mode_source!r})")

    @classmethod
    def from_proto(cls, resp: query_pb2.GetBestRunsResponse,
                   asked: Goal | None) -> Ranking:
        """Wire -> view; ``asked``: the mode the request gave (what ranked when the
        server leaves the answer's goal unset)."""
        runs = [RankedRun.from_proto(r) for r in resp.runs]
        if resp.goal in GOAL_NAME:
            return cls(runs, GOAL_NAME[resp.goal],
                       "runs" if resp.goal_defined_by_runs else "request")
        return cls(runs, asked, None if asked is None else "request")


@dataclass(frozen=True)
class Comparison:
    """Runs side by side (:meth:`Api.compare`): one row per param and per metric key."""

    run_ids: list[str]
    run_names: list[str]
    params: dict[str, list[str | None]]
    """Param -> one value per run (None where the run lacks it)."""
    metrics: dict[str, list[MetricSummary | None]]
    """Metric key -> one summary per run (None where the run never logged it)."""
    differs: dict[str, bool]
    """``params.<name>`` / ``metrics.<key>`` -> whether the runs disagree."""
    goals: dict[str, Goal] = field(default_factory=dict)
    """Metric key -> the goal the runs defined for it (keys without one are absent)."""
    best: dict[str, str] = field(default_factory=dict)
    """Metric key -> id of the run whose last value is best by its goal."""
    summary: dict[str, list[float | None]] = field(default_factory=dict)
    """User summary key -> one value per run (``run.summary[key] = value``)."""
    checkpoints: dict[str, Any] = field(default_factory=dict)
    """With ``compare(..., checkpoint_metric=KEY)``: run id -> the run's checkpoint
    (:class:`tracker_client.Artifact`) nearest its best step of KEY, None when it has
    none (or never logged KEY)."""

    def best_steps(self, metric: str, mode: Goal | None = None) -> dict[str, int | None]:
        """Run id -> the step of the run's best value of ``metric`` (its ``min_step``
        or ``max_step``), None where the run lacks it. ``mode`` None: the goal the runs
        defined for ``metric`` (ValueError when they logged it but define none)."""
        if mode is None and metric in self.metrics:
            if metric not in self.goals:
                raise ValueError(f"the runs define no goal for {metric!r}: pass mode='min' "
                                 "or 'max', or call run.define_metric")
            mode = self.goals[metric]
        cells = self.metrics.get(metric, [None] * len(self.run_ids))
        return {r: (None if s is None else s.min_step if mode == "min" else s.max_step)
                for r, s in zip(self.run_ids, cells, strict=True)}

    @classmethod
    def from_proto(cls, resp: query_pb2.CompareRunsResponse) -> Comparison:
        """Wire -> view."""
        differs: dict[str, bool] = {}
        params: dict[str, list[str | None]] = {}
        for p in resp.params:
            params[p.key] = [c.value if c.present else None for c in p.cells]
            differs[f"params.{p.key}"] = p.differs
        metrics: dict[str, list[MetricSummary | None]] = {}
        goals: dict[str, Goal] = {}
        best: dict[str, str] = {}
        for m in resp.metrics:
            metrics[m.key] = [MetricSummary.from_proto(c.summary) if c.present else None
                              for c in m.cells]
            differs[f"metrics.{m.key}"] = m.differs
            if m.goal in GOAL_NAME:
                goals[m.key] = GOAL_NAME[m.goal]
            if m.HasField("best_cell"):
                best[m.key] = resp.runs[m.best_cell].run_id
        keys = sorted({k for r in resp.runs for k in r.summary})
        summary = {k: [r.summary.get(k) for r in resp.runs]
                   for k in keys}
        for k, cells in summary.items():
            present = [c for c in cells if c is not None]
            differs[f"summary.{k}"] = len(present) < len(cells) or len(
                {"nan" if math.isnan(c) else c for c in present}) > 1
        return cls(run_ids=[r.run_id for r in resp.runs],
                   run_names=[r.name for r in resp.runs], params=params, metrics=metrics,
                   differs=differs, goals=goals, best=best, summary=summary)

    def rows(self, only_differences: bool = False) -> list[dict[str, Any]]:
        """``{"field": "params.lr", "differs": True, <run id>: value, ...}`` rows."""
        out: list[dict[str, Any]] = []
        for key, cells in self.params.items():
            name = f"params.{key}"
            if not only_differences or self.differs[name]:
                out.append({"field": name, "differs": self.differs[name],
                            **dict(zip(self.run_ids, cells, strict=True))})
        for key, summaries in self.metrics.items():
            name = f"metrics.{key}"
            if not only_differences or self.differs[name]:
                out.append({"field": name, "differs": self.differs[name],
                            **{r: (s.last if s is not None else math.nan)
                               for r, s in zip(self.run_ids, summaries, strict=True)}})
        for key, values in self.summary.items():
            name = f"summary.{key}"
            if not only_differences or self.differs[name]:
                out.append({"field": name, "differs": self.differs[name],
                            **{r: (v if v is not None else math.nan)
                               for r, v in zip(self.run_ids, values, strict=True)}})
        if self.checkpoints:
            out.append({"field": "checkpoint", "differs": True,
                        **{r: getattr(self.checkpoints.get(r), "uri", None)
                           for r in self.run_ids}})
        return out

    def to_pandas(self, only_differences: bool = False) -> Any:
        """A DataFrame indexed by field, one column per run (needs pandas)."""
        pd = require_pandas()
        frame = pd.DataFrame(self.rows(only_differences))
        return frame.set_index("field") if len(frame) else frame


def experiment_ids(refs: str | Experiment | Sequence[str | Experiment]) -> list[str | Experiment]:
    """One or several experiment references as a list."""
    if isinstance(refs, str | Experiment):
        return [refs]
    return list(refs)


def run_ids(runs: Iterable[str | RunData] | str | RunData) -> list[str]:
    """Run references (ids or run objects) as ids."""
    if isinstance(runs, str | RunData):
        runs = [runs]
    return [r if isinstance(r, str) else r.run_id for r in runs]


def require_pandas() -> Any:
    """The pandas module, or ImportError naming the extra."""
    try:
        import pandas
    except ImportError as exc:
        raise ImportError("this needs pandas: pip install 'tracker[pandas]'") from exc
    return pandas


def frame_of_rows(rows: Sequence[Mapping[str, Any]]) -> Any:
    """A DataFrame of run rows (needs pandas)."""
    pd = require_pandas()
    return pd.DataFrame(list(rows))
