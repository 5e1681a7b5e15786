"""``tracker_client.Api``: read experiments, runs and metrics from notebooks and scripts.

>>> api = tracker_client.Api()                       # TRACKER_SERVER, TRACKER_API_KEY
>>> runs = api.runs("mnist", filter="params.lr < 0.01", order_by="metrics.val_acc.max desc")
>>> runs.to_pandas()                                  # params.*, tags.*, summary.* columns
>>> runs[0].history(["loss", "val_acc"])              # every point, as a DataFrame

Pagination is hidden: listings are iterators that fetch pages as they go.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any

from tracker_client import _api_requests as rq
from tracker_client._api_types import (
    Comparison,
    Experiment,
    Goal,
    MetricSummary,
    Ranking,
    RunData,
    SummaryOn,
    experiment_ids,
    frame_of_rows,
    run_ids,
)
from tracker_client._artifact_types import Artifact, list_request, nearest
from tracker_client._env import TlsOption
from tracker_client._history import Aggregation, Columns, key_list, result, series_request
from tracker_client._history import stream_request as _stream_request
from tracker_client._rpc import make_channel
from tracker_proto.v1 import artifacts_pb2_grpc, experiments_pb2_grpc, query_pb2_grpc
from tracker_proto.v1 import experiments_pb2 as ex
from tracker_proto.v1 import query_pb2 as q


class ApiRun(RunData):
    """A run as stored: ``params``, ``tags``, ``metadata``, ``metrics`` (summaries),
    ``summary`` (last values), status and times; :meth:`history` reads its points."""

    _api: Api

    def history(self, keys: str | Sequence[str], start: int | None = None,
                end: int | None = None, max_points: int | None = None,
                rank: int | None = None, aggregation: Aggregation | None = None,
                downsampling: str = "minmax", as_frame: bool | None = None) -> Any:
        """Points of ``keys`` in the step range [``start``, ``end``] (see
        :meth:`Api.history`)."""
        return self._api.history(self.run_id, keys, start=start, end=end,
                                 max_points=max_points, rank=rank, aggregation=aggregation,
                                 downsampling=downsampling, as_frame=as_frame)

    def metric_keys(self) -> list[str]:
        """Metric keys the run logged."""
        return sorted(self.metrics)

    def artifacts(self, kind: str | Sequence[str] | None = None, min_step: int | None = None,
                  max_step: int | None = None) -> list[Artifact]:
        """The run's recorded artifacts (see :meth:`Api.artifacts`)."""
        return self._api.artifacts(self.run_id, kind, min_step, max_step)


class Runs:
    """The runs of a search, fetched page by page as they are iterated (and kept)."""

    def __init__(self, pages: Iterator[list[ApiRun]], limit: int | None) -> None:
        self._pages = pages
        self._limit = limit
        self._seen: list[ApiRun] = []
        self._done = False

    def _more(self) -> bool:
        if self._done:
            return False
        page = next(self._pages, None)
        if page is None:
            self._done = True
            return False
        if self._limit is None:
            self._seen.extend(page)
            return True
        self._seen.extend(page[:self._limit - len(self._seen)])
        self._done = len(self._seen) >= self._limit
        return True

    def __iter__(self) -> Iterator[ApiRun]:
        for i in itertools.count():
            while i >= len(self._seen):
                if not self._more():
                    return
            yield self._seen[i]

    def __getitem__(self, index: int) -> ApiRun:
        if index < 0:
            return self.to_list()[index]
        while index >= len(self._seen) and self._more():
            pass
        return self._seen[index]

    def __len__(self) -> int:
        return len(self.to_list())

    def to_list(self) -> list[ApiRun]:
        """Every run (fetches the remaining pages)."""
        while self._more():
            pass
        return list(self._seen)

    def to_pandas(self) -> Any:
        """One row per run: identity, ``params.*``, ``tags.*``, ``summary.*`` columns."""
        return frame_of_rows([r.row() for r in self.to_list()])


class Api:
    """Synchronous read API over one gRPC channel (thread-safe; close it, or use ``with``).

    ``server``, ``api_key`` and ``tls`` default to the environment like ``init()``
    (``TRACKER_SERVER``, ``TRACKER_API_KEY``, ``TRACKER_TLS_CA`` / ``TRACKER_TLS``);
    ``timeout`` bounds each unary call, in seconds (streams are not bounded).
    """

    def __init__(self, server: str | None = None, api_key: str | None = None,
                 tls: TlsOption = None, timeout: float = 30.0) -> None:
        self._conn = rq.Connection.resolve(server, api_key, tls, timeout)
        self._channel = make_channel(self._conn.address, rq.CHANNEL_OPTIONS, self._conn.tls)
        self._experiments = experiments_pb2_grpc.ExperimentServiceStub(self._channel)
        self._query = query_pb2_grpc.MetricsQueryServiceStub(self._channel)
        self._artifacts = artifacts_pb2_grpc.ArtifactServiceStub(self._channel)

    @property
    def address(self) -> str:
        """The server address."""
        return self._conn.address

    def _call(self, method: Callable[..., Any], request: Any) -> Any:
        return method(request, timeout=self._conn.timeout_s,
                      metadata=self._conn.metadata or None)

    def _pages(self, method: Callable[..., Any], request: Any, field: str
               ) -> Iterator[list[Any]]:
        while True:
            page = self._call(method, request)
            yield list(getattr(page, field))
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    # -- experiments -------------------------------------------------------------------

    def experiments(self, name_prefix: str = "", owner: str = "",
                    include_archived: bool = False) -> Iterator[Experiment]:
        """Experiments, newest first."""
        req = rq.list_experiments(name_prefix, owner, include_archived)
        for page in self._pages(self._experiments.ListExperiments, req, "experiments"):
            yield from (Experiment.from_proto(e) for e in page)

    def experiment(self, id_or_name: str | Experiment) -> Experiment:
        """An experiment by id or exact name (the newest when several owners use it);
        ``LookupError`` when there is none."""
        if isinstance(id_or_name, Experiment):
            return id_or_name
        if rq.is_uuid(id_or_name):
            resp = self._call(self._experiments.GetExperiment,
                              ex.GetExperimentRequest(experiment_id=id_or_name,
                                                      runs_page_size=1))
            return Experiment.from_proto(resp.experiment)
        req = rq.list_experiments(id_or_name, "", include_archived=True)
        for page in self._pages(self._experiments.ListExperiments, req, "experiments"):
            found = rq.experiment_of_name(id_or_name, page)
            if found is not None:
                return found
        raise LookupError(f"no experiment named {id_or_name!r}")

    def _experiment_ids(self, refs: str | Experiment | Sequence[str | Experiment]) -> list[str]:
        return [self.experiment(r).experiment_id for r in experiment_ids(refs)]

    # -- runs --------------------------------------------------------------------------

    def runs(self, experiment: str | Experiment | Sequence[str | Experiment],
             filter: str = "", order_by: str | Sequence[str] | None = None,
             limit: int | None = None, page_size: int = rq.PAGE_SIZE) -> Runs:
        """Runs of one or several experiments (ids, names or :class:`Experiment`),
        matching ``filter`` (the filter language of docs/query.md), sorted by
        ``order_by`` (e.g. ``"metrics.val_acc.max desc"``; default newest first), at most
        ``limit``. Each run comes with its metric summaries."""
        req = rq.search_runs(self._experiment_ids(experiment), filter, order_by,
                             min(page_size, limit) if limit else page_size)

        def pages() -> Iterator[list[ApiRun]]:
            for page in self._pages(self._experiments.SearchRuns, req, "runs"):
                yield self._with_summaries(page)

        return Runs(pages(), limit)

    def run(self, run_id: str) -> ApiRun:
        """One run by id."""
        resp = self._call(self._experiments.GetRun, ex.GetRunRequest(run_id=run_id))
        return self._with_summaries([resp.run])[0]

    def _with_summaries(self, runs: Sequence[ex.Run]) -> list[ApiRun]:
        summaries: dict[str, Any] = {}
        for i in range(0, len(runs), rq.SUMMARY_RUNS_MAX):
            ids = [r.run_id for r in runs[i:i + rq.SUMMARY_RUNS_MAX]]
            resp = self._call(self._query.GetLatestMetrics, q.GetLatestMetricsRequest(run_ids=ids))
            summaries.update({m.run_id: m.metrics for m in resp.runs})
        return [self._bind(ApiRun(**RunData.fields_from_proto(r, summaries.get(r.run_id, ()))))
                for r in runs]

    def _bind(self, run: ApiRun) -> ApiRun:
        object.__setattr__(run, "_api", self)
        return run

    def keys(self, run: str | RunData) -> dict[str, MetricSummary]:
        """Metric keys of a run with their summaries."""
        resp = self._call(self._query.ListMetricKeys,
                          q.ListMetricKeysRequest(run_id=run_ids(run)[0]))
        return {k.summary.key: MetricSummary.from_proto(k.summary) for k in resp.keys}

    # -- points ------------------------------------------------------------------------

    def history(self, run: str | RunData, keys: str | Sequence[str], start: int | None = None,
                end: int | None = None, max_points: int | None = None,
                rank: int | None = None, aggregation: Aggregation | None = None,
                downsampling: str = "minmax", as_frame: bool | None = None) -> Any:
        """Points of ``keys`` of one run in the step range [``start``, ``end``].

        ``max_points=None`` reads every point (``StreamMetricSeries``, full resolution);
        a number reads at most that many per (key, rank), downsampled by the server
        (``downsampling`` ``minmax`` or ``lttb``; first, last, min and max kept).
        ``rank`` keeps one rank; ``aggregation`` (``mean``/``min``/``max``, downsampled
        reads only) merges the ranks into one series (rank -1).

        Returns a pandas DataFrame with columns ``key``, ``rank``, ``step``, ``value``,
        ``wall_time`` when pandas is installed (``as_frame=False``: a dict of numpy
        arrays, see :data:`tracker_client.HistoryArrays`), in (key, rank, step) order.
        """
        run_id = run_ids(run)[0]
        wanted = key_list(keys)
        cols = Columns()
        if max_points is None:
            if aggregation is not None:
                raise ValueError("aggregation needs max_points (full-resolution reads are "
                                 "per rank; group the result by step instead)")
            # The stored counts bound the points to come: columns are filled in place.
            cols.reserve_for(self._call(self._query.ListMetricKeys,
                                            q.ListMetricKeysRequest(run_id=run_id)), wanted)
            for key in wanted:
                call = self._query.StreamMetricSeries(
                    _stream_request(run_id, key, start, end, rank),
                    metadata=self._conn.metadata or None)
                for msg in call:
                    cols.add_stream_message(key, msg)
        else:
            req = series_request([run_id], wanted, start, end, max_points, rank, aggregation,
                                 downsampling)
            cols.add_series(self._call(self._query.GetMetricSeries, req).series)
        return result(cols, as_frame)

    # -- artifacts ---------------------------------------------------------------------

    def artifacts(self, run: str | RunData, kind: str | Sequence[str] | None = None,
                  min_step: int | None = None, max_step: int | None = None,
                  page_size: int = rq.PAGE_SIZE) -> list[Artifact]:
        """Artifacts a run recorded (checkpoints, models, ...: references, never the
        files), by step (none first), then uri; ``kind`` one name or several, steps in
        [``min_step``, ``max_step``]. Each carries the last verification's outcome."""
        req = list_request(run_ids(run)[0], kind, min_step, max_step, page_size)
        return [Artifact.from_proto(a)
                for page in self._pages(self._artifacts.ListArtifacts, req, "artifacts")
                for a in page]

    def checkpoint(self, run: str | RunData, step: int) -> Artifact | None:
        """The run's checkpoint nearest ``step`` (a tie: the later one), None if none."""
        return nearest(self.artifacts(run, "checkpoint"), step)

    # -- rankings ----------------------------------------------------------------------

    def best(self, experiment: str | Experiment | Sequence[str | Experiment], metric: str,
             mode: Goal | None = None, on: SummaryOn = "last", limit: int = 10,
             filter: str = "", with_checkpoint: bool = False) -> Ranking:
        """The best runs of experiments by one summary value (``on``) of ``metric``.

        ``mode`` None ranks by the goal the runs defined with ``run.define_metric``
        (the server refuses with INVALID_ARGUMENT when none or both goals are defined).
        The answer is a list (best first) that also says which goal ranked:
        ``.mode`` (``min`` or ``max``) and ``.mode_source`` (``request`` or ``runs``).
        ``with_checkpoint``: each with ``checkpoint``, the run's checkpoint nearest the
        best step (the one to reload)."""
        req = rq.best_runs(self._experiment_ids(experiment), metric, mode, on, limit, filter)
        ranked = Ranking.from_proto(self._call(self._query.GetBestRuns, req), mode)
        if not with_checkpoint:
            return ranked
        return Ranking([dataclasses.replace(r, checkpoint=self.checkpoint(r.run_id, r.step))
                        for r in ranked], ranked.mode, ranked.mode_source)

    def compare(self, runs: Sequence[str | RunData] | Runs,
                checkpoint_metric: str | None = None, mode: Goal | None = None) -> Comparison:
        """Params and metric summaries of runs side by side (``.to_pandas()``);
        ``checkpoint_metric``: with each run's checkpoint nearest its best step of that
        metric (``mode`` min or max; None: the goal the runs defined for it) in
        ``checkpoints`` and a ``checkpoint`` row."""
        ids = run_ids(list(runs))
        resp = self._call(self._query.CompareRuns, q.CompareRunsRequest(run_ids=ids))
        comparison = Comparison.from_proto(resp)
        if checkpoint_metric is None:
            return comparison
        steps = comparison.best_steps(checkpoint_metric, mode)
        return dataclasses.replace(comparison, checkpoints={
            r: None if step is None else self.checkpoint(r, step) for r, step in steps.items()})

    # -- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


__all__ = ["Api", "ApiRun", "Runs"]
