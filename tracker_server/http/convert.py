"""Domain records -> JSON-ready dicts (the shapes of ``schemas.py``), and the few
request conversions (status names -> domain enums, columns -> numpy).

Floats and integers go through ``encoding`` (special floats and int64 beyond 2^53 as
strings); series columns stay numpy arrays for orjson.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from tracker_server.domain.artifacts import Artifact, ArtifactKind
from tracker_server.domain.errors import invalid
from tracker_server.domain.points import RawColumns
from tracker_server.domain.query_service import KeySeries
from tracker_server.domain.runs import Experiment, ExperimentStatus, Run, RunStatus
from tracker_server.domain.summaries import Comparison, KeyInfo, MetricSummary, RankedRun
from tracker_server.http import schemas
from tracker_server.http.encoding import (
    enc_float,
    enc_int,
    float_array,
    float_column,
    int_array,
    int_column,
    plain,
)


def label(status: ExperimentStatus | RunStatus | int, kind: type[RunStatus] |
          type[ExperimentStatus]) -> str:
    """A status as its lower-case REST name."""
    return kind(int(status)).name.lower()


def experiment_status(name: str) -> ExperimentStatus:
    """``created`` / ``active`` / ``archived`` -> the domain enum (names pre-validated)."""
    return ExperimentStatus[name.upper()]


def run_status(name: str) -> RunStatus:
    """``running`` / ``finished`` / ``failed`` / ``killed`` -> the domain enum."""
    return RunStatus[name.upper()]


def experiment(exp: Experiment) -> dict[str, Any]:
    """An experiment."""
    return {
        "experiment_id": str(exp.experiment_id),
        "name": exp.name,
        "owner": exp.owner,
        "description": exp.description,
        "status": label(exp.status, ExperimentStatus),
        "created_at": exp.created_at,
    }


def summary(s: MetricSummary) -> dict[str, Any]:
    """A metric summary."""
    return {
        "key": s.key,
        "count": s.count,
        "first_step": enc_int(s.first_step),
        "last_step": enc_int(s.last_step),
        "last_value": enc_float(s.last_value),
        "last_wall_time_ns": enc_int(s.last_wall_ns),
        "min_value": enc_float(s.min_value),
        "min_step": enc_int(s.min_step),
        "max_value": enc_float(s.max_value),
        "max_step": enc_int(s.max_step),
    }


def run(r: Run, summaries: list[MetricSummary] | None = None) -> dict[str, Any]:
    """A run (with its summaries when given)."""
    out = {
        "run_id": str(r.run_id),
        "experiment_id": str(r.experiment_id),
        "name": r.name,
        "run_key": r.run_key,
        "status": label(r.status, RunStatus),
        "attempt": r.attempt,
        "seed": enc_int(r.seed),
        "slurm_job_id": r.slurm_job_id,
        "metadata": plain(r.metadata),
        "created_at": r.created_at,
        "ended_at": r.ended_at,
        "params": r.params,
        "tags": r.tags,
        "metric_goals": r.metric_goals,
        "user_summary": {k: enc_float(v) for k, v in r.summary.items()},
    }
    if summaries is not None:
        out["summaries"] = [summary(s) for s in summaries]
    return out


def key_info(info: KeyInfo) -> dict[str, Any]:
    """A key of a run."""
    return {"key": info.summary.key, "summary": summary(info.summary), "ranks": info.ranks}


def series(found: KeySeries) -> dict[str, Any]:
    """One series; the columns stay numpy arrays (or lists when some value needs a
    string). ``min_values`` / ``max_values`` only when the series has a band."""
    s = found.series
    out = {
        "rank": s.rank if found.aggregation == "per_rank" else None,
        "aggregate": found.aggregation,
        "steps": int_array(s.steps),
        "values": float_array(s.values),
        "wall_time_ns": int_array(s.wall_ns),
        "downsampled": s.downsampled,
        "total_points": s.total_points,
    }
    if s.low is not None and s.high is not None:
        out["min_values"] = float_array(s.low)
        out["max_values"] = float_array(s.high)
    return out


def ranked(r: RankedRun) -> dict[str, Any]:
    """One entry of a ranking."""
    return {
        "run_id": str(r.run_id),
        "run_name": r.run_name,
        "status": label(r.status, RunStatus),
        "value": enc_float(r.value),
        "step": enc_int(r.step),
    }


def comparison(c: Comparison) -> dict[str, Any]:
    """Runs side by side."""
    return {
        "runs": [run(r) for r in c.runs],
        "params": [{"key": p.key, "values": p.values, "differs": p.differs} for p in c.params],
        "metrics": [
            {"key": m.key, "differs": m.differs,
             "summaries": [summary(s) if s is not None else None for s in m.summaries],
             "goal": m.goal or None, "best_cell": m.best}
            for m in c.metrics
        ],
    }


def columns(body: schemas.MetricsIn) -> RawColumns:
    """The batch of a metrics request as numpy columns (the columnar form without a
    per-point loop; the row form is per point by nature)."""
    columnar = [body.keys, body.key_index, body.steps, body.values]
    if body.points is not None:
        if any(c is not None for c in (*columnar, body.wall_time_ns)):
            raise invalid("send either points or keys/key_index/steps/values, not both",
                          [("points", "mixed with columns")])
        return _rows(body.points)
    if any(c is None for c in columnar):
        missing = [n for n, c in zip(("keys", "key_index", "steps", "values"), columnar,
                                     strict=True) if c is None]
        raise invalid(f"columnar batch without {', '.join(missing)} (or send points)",
                      [(n, "required") for n in missing])
    assert body.keys is not None and body.key_index is not None
    assert body.steps is not None and body.values is not None
    steps = int_column(body.steps, "steps")
    wall = (int_column(body.wall_time_ns, "wall_time_ns") if body.wall_time_ns is not None
            else np.full(steps.shape[0], time.time_ns(), dtype=np.int64))
    return RawColumns(
        keys=body.keys,
        key_index=np.array(body.key_index, dtype=np.uint32),
        steps=steps,
        values=float_column(body.values),
        wall_ns=wall,
    )


def _rows(points: list[schemas.PointIn]) -> RawColumns:
    table: dict[str, int] = {}
    index = [table.setdefault(p.key, len(table)) for p in points]
    now = time.time_ns()
    return RawColumns(
        keys=list(table),
        key_index=np.array(index, dtype=np.uint32),
        steps=int_column([p.step for p in points], "points.step"),
        values=float_column([p.value for p in points]),
        wall_ns=int_column([p.wall_time_ns if p.wall_time_ns is not None else now
                            for p in points], "points.wall_time_ns"),
    )


def artifact(a: Artifact) -> dict[str, Any]:
    """An artifact record."""
    return {
        "run_id": str(a.run_id),
        "uri": a.uri,
        "kind": a.kind.name.lower(),
        "step": enc_int(a.step),
        "size_bytes": enc_int(a.size_bytes),
        "sha256": a.sha256,
        "metadata": a.metadata,
        "rank": a.rank,
        "created_at": a.created_at,
        "verify_state": a.verify_state.name.lower(),
        "verify_detail": a.verify_detail,
        "verified_at": a.verified_at,
    }


def artifact_kind(name: str) -> int:
    """``checkpoint`` / ``model`` / ``dataset`` / ``other`` -> the kind number (names
    pre-validated by the schema)."""
    return int(ArtifactKind[name.upper()])
