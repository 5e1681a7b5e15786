"""Runs from an MLflow tracking server (or any tracking URI ``MlflowClient`` takes).

Each MLflow experiment becomes the tracker experiment of the same name; each active
(not deleted) run becomes a run keyed ``mlflow:<MLflow run id>`` with its name, params,
tags, status, end time and every metric history (steps and timestamps). Points are
sent in (timestamp, key, step, value) order, so a run still logging sends only its new
points on the next import. Artifacts, models, datasets and traces are not imported.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from tracker_client.importers._sink import Points, SourceRun
from tracker_client.integrations._params import MAX_KEY_CHARS, MAX_VALUE_CHARS

try:
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError("importing from MLflow needs its client: "
                      "pip install 'tracker[mlflow]'") from exc

STATUS = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed"}
"""MLflow run statuses with a tracker counterpart; RUNNING/SCHEDULED stay running."""
PAGE = 1000


class UnknownExperiment(LookupError):
    """An experiment asked for by name does not exist in MLflow."""


def _bounded(values: dict[str, str]) -> dict[str, str]:
    # MLflow allows longer tag values (8,000 characters) than tracker does.
    return {k: (v if len(v) <= MAX_VALUE_CHARS else v[:MAX_VALUE_CHARS - 3] + "...")
            for k, v in values.items() if 0 < len(k) <= MAX_KEY_CHARS}


class MlflowSource:
    """Reads experiments and runs through ``MlflowClient``."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._client = MlflowClient(tracking_uri=tracking_uri)

    def experiments(self, names: Sequence[str] = ()) -> list[Any]:
        """The experiments named (all active ones when none are)."""
        if names:
            found = []
            for name in names:
                exp = self._client.get_experiment_by_name(name)
                if exp is None:
                    raise UnknownExperiment(f"no MLflow experiment named {name!r}")
                found.append(exp)
            return found
        out: list[Any] = []
        token = None
        while True:
            page = self._client.search_experiments(view_type=ViewType.ACTIVE_ONLY,
                                                   max_results=PAGE, page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return out

    def runs(self, experiment: Any) -> Iterator[Any]:
        """Active runs of one experiment, oldest first."""
        token = None
        while True:
            page = self._client.search_runs(
                [experiment.experiment_id], run_view_type=ViewType.ACTIVE_ONLY,
                max_results=PAGE, order_by=["attributes.start_time ASC"], page_token=token)
            yield from page
            token = page.token
            if not token:
                return

    def points(self, run: Any) -> Points:
        """Every metric point of a run, in (timestamp, key, step, value) order."""
        keys = sorted(run.data.metrics)
        index: list[int] = []
        steps: list[int] = []
        values: list[float] = []
        stamps: list[int] = []
        for i, key in enumerate(keys):
            for m in self._client.get_metric_history(run.info.run_id, key):
                index.append(i)
                steps.append(int(m.step))
                values.append(float(m.value))
                stamps.append(int(m.timestamp))
        key_index = np.array(index, dtype=np.uint32)
        step = np.array(steps, dtype=np.int64)
        value = np.array(values, dtype=np.float64)
        wall_ms = np.array(stamps, dtype=np.int64)
        order = np.lexsort((value, step, key_index, wall_ms))
        return Points(keys=keys, key_index=key_index[order], steps=step[order],
                      values=value[order], wall_ns=wall_ms[order] * 1_000_000)

    def source_run(self, experiment: Any, run: Any) -> SourceRun:
        """One MLflow run as a :class:`SourceRun`."""
        info = run.info
        return SourceRun(
            experiment=experiment.name, run_key=f"mlflow:{info.run_id}",
            name=info.run_name or "", params=_bounded(dict(run.data.params)),
            tags=_bounded(dict(run.data.tags)),
            metadata={"source": "mlflow", "mlflow.run_id": info.run_id,
                      "mlflow.experiment_id": experiment.experiment_id,
                      "mlflow.start_time_ms": info.start_time or 0,
                      "mlflow.user_id": info.user_id or ""},
            status=STATUS.get(info.status),
            ended_at_ns=(info.end_time or 0) * 1_000_000 or None,
            points=self.points(run),
        )


def read(tracking_uri: str, experiments: Sequence[str] = ()) -> Iterator[SourceRun]:
    """Every run of the chosen experiments, read lazily (one run's history at a time)."""
    source = MlflowSource(tracking_uri)
    for exp in source.experiments(experiments):
        for run in source.runs(exp):
            yield source.source_run(exp, run)
