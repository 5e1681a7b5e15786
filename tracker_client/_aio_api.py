"""``tracker_client.AsyncApi``: the read API on ``grpc.aio``, for asyncio services.

Same methods and results as :class:`tracker_client.Api`; listings are async iterators
and everything else is awaited:

>>> async with tracker_client.AsyncApi() as api:
...     async for run in api.runs("mnist", filter='status = "finished"'):
...         frame = await run.history("loss")
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any

from grpc import aio, ssl_channel_credentials

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
from tracker_proto.v1 import artifacts_pb2_grpc, experiments_pb2_grpc, query_pb2_grpc
from tracker_proto.v1 import experiments_pb2 as ex
from tracker_proto.v1 import query_pb2 as q


class AsyncApiRun(RunData):
    """A run as stored (like :class:`tracker_client.ApiRun`); ``await run.history(...)``."""

    _api: AsyncApi

    async def history(self, keys: str | Sequence[str], start: int | None = None,
                      end: int | None = None, max_points: int | None = None,
                      rank: int | None = None, aggregation: Aggregation | None = None,
                      downsampling: str = "minmax", as_frame: bool | None = None) -> Any:
        """Points of ``keys`` (see :meth:`tracker_client.Api.history`)."""
        return await self._api.history(self.run_id, keys, start=start, end=end,
                                       max_points=max_points, rank=rank,
                                       aggregation=aggregation, downsampling=downsampling,
                                       as_frame=as_frame)

    def metric_keys(self) -> list[str]:
        """Metric keys the run logged."""
        return sorted(self.metrics)

    async def artifacts(self, kind: str | Sequence[str] | None = None,
                        min_step: int | None = None, max_step: int | None = None
                        ) -> list[Artifact]:
        """The run's recorded artifacts (see :meth:`tracker_client.Api.artifacts`)."""
        return await self._api.artifacts(self.run_id, kind, min_step, max_step)


class AsyncRuns:
    """The runs of a search as an async iterator (pages fetched as it goes)."""

    def __init__(self, pages: AsyncIterator[list[AsyncApiRun]], limit: int | None) -> None:
        self._pages = pages
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[AsyncApiRun]:
        count = 0
        async for page in self._pages:
            for run in page:
                if self._limit is not None and count >= self._limit:
                    return
                count += 1
                yield run

    async def to_list(self) -> list[AsyncApiRun]:
        """Every run."""
        return [r async for r in self]

    async def to_pandas(self) -> Any:
        """One row per run (see :meth:`tracker_client.Runs.to_pandas`)."""
        return frame_of_rows([r.row() for r in await self.to_list()])


class AsyncApi:
    """Asynchronous read API over one ``grpc.aio`` channel (connection settings as
    :class:`tracker_client.Api`). Create and use it inside a running event loop."""

    def __init__(self, server: str | None = None, api_key: str | None = None,
                 tls: TlsOption = None, timeout: float = 30.0) -> None:
        self._conn = rq.Connection.resolve(server, api_key, tls, timeout)
        tls_cfg = self._conn.tls
        if tls_cfg is None:
            self._channel = aio.insecure_channel(self._conn.address,
                                                      options=rq.CHANNEL_OPTIONS)
        else:
            creds = ssl_channel_credentials(
                root_certificates=tls_cfg.root_certificates, private_key=tls_cfg.private_key,
                certificate_chain=tls_cfg.certificate_chain)
            self._channel = aio.secure_channel(self._conn.address, creds,
                                                    options=rq.CHANNEL_OPTIONS)
        self._experiments = experiments_pb2_grpc.ExperimentServiceStub(self._channel)
        self._query = query_pb2_grpc.MetricsQueryServiceStub(self._channel)
        self._artifacts = artifacts_pb2_grpc.ArtifactServiceStub(self._channel)

    @property
    def address(self) -> str:
        """The server address."""
        return self._conn.address

    async def _call(self, method: Any, request: Any) -> Any:
        return await method(request, timeout=self._conn.timeout_s,
                            metadata=self._conn.metadata or None)

    async def _pages(self, method: Any, request: Any, field: str) -> AsyncIterator[list[Any]]:
        while True:
            page = await self._call(method, request)
            yield list(getattr(page, field))
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    async def experiments(self, name_prefix: str = "", owner: str = "",
                          include_archived: bool = False) -> AsyncIterator[Experiment]:
        """Experiments, newest first."""
        req = rq.list_experiments(name_prefix, owner, include_archived)
        async for page in self._pages(self._experiments.ListExperiments, req, "experiments"):
            for e in page:
                yield Experiment.from_proto(e)

    async def experiment(self, id_or_name: str | Experiment) -> Experiment:
        """An experiment by id or exact name; ``LookupError`` when there is none."""
        if isinstance(id_or_name, Experiment):
            return id_or_name
        if rq.is_uuid(id_or_name):
            resp = await self._call(self._experiments.GetExperiment,
                                    ex.GetExperimentRequest(experiment_id=id_or_name,
                                                            runs_page_size=1))
            return Experiment.from_proto(resp.experiment)
        req = rq.list_experiments(id_or_name, "", include_archived=True)
        async for page in self._pages(self._experiments.ListExperiments, req, "experiments"):
            found = rq.experiment_of_name(id_or_name, page)
            if found is not None:
                return found
        raise LookupError(f"no experiment named {id_or_name!r}")

    async def _experiment_ids(self, refs: str | Experiment | Sequence[str | Experiment]
                              ) -> list[str]:
        return [(await self.experiment(r)).experiment_id for r in experiment_ids(refs)]

    def runs(self, experiment: str | Experiment | Sequence[str | Experiment],
             filter: str = "", order_by: str | Sequence[str] | None = None,
             limit: int | None = None, page_size: int = rq.PAGE_SIZE) -> AsyncRuns:
        """Runs of experiments (see :meth:`tracker_client.Api.runs`)."""

        async def pages() -> AsyncIterator[list[AsyncApiRun]]:
            req = rq.search_runs(await self._experiment_ids(experiment), filter, order_by,
                                 min(page_size, limit) if limit else page_size)
            async for page in self._pages(self._experiments.SearchRuns, req, "runs"):
                yield await self._with_summaries(page)

        return AsyncRuns(pages(), limit)

    async def run(self, run_id: str) -> AsyncApiRun:
        """One run by id."""
        resp = await self._call(self._experiments.GetRun, ex.GetRunRequest(run_id=run_id))
        return (await self._with_summaries([resp.run]))[0]

    async def _with_summaries(self, runs: Sequence[ex.Run]) -> list[AsyncApiRun]:
        summaries: dict[str, Any] = {}
        for i in range(0, len(runs), rq.SUMMARY_RUNS_MAX):
            ids = [r.run_id for r in runs[i:i + rq.SUMMARY_RUNS_MAX]]
            resp = await self._call(self._query.GetLatestMetrics,
                                    q.GetLatestMetricsRequest(run_ids=ids))
            summaries.update({m.run_id: m.metrics for m in resp.runs})
        out = []
        for r in runs:
            run = AsyncApiRun(**RunData.fields_from_proto(r, summaries.get(r.run_id, ())))
            object.__setattr__(run, "_api", self)
            out.append(run)
        return out

    async def keys(self, run: str | RunData) -> dict[str, MetricSummary]:
        """Metric keys of a run with their summaries."""
        resp = await self._call(self._query.ListMetricKeys,
                                q.ListMetricKeysRequest(run_id=run_ids(run)[0]))
        return {k.summary.key: MetricSummary.from_proto(k.summary) for k in resp.keys}

    async def history(self, run: str | RunData, keys: str | Sequence[str],
                      start: int | None = None, end: int | None = None,
                      max_points: int | None = None, rank: int | None = None,
                      aggregation: Aggregation | None = None, downsampling: str = "minmax",
                      as_frame: bool | None = None) -> Any:
        """Points of ``keys`` of one run (see :meth:`tracker_client.Api.history`)."""
        run_id = run_ids(run)[0]
        wanted = key_list(keys)
        cols = Columns()
        if max_points is None:
            if aggregation is not None:
                raise ValueError("aggregation needs max_points (full-resolution reads are "
                                 "per rank; group the result by step instead)")
            # The stored counts bound the points to come: columns are filled in place.
            cols.reserve_for(await self._call(self._query.ListMetricKeys,
                                            q.ListMetricKeysRequest(run_id=run_id)), wanted)
            for key in wanted:
                call = self._query.StreamMetricSeries(
                    _stream_request(run_id, key, start, end, rank),
                    metadata=self._conn.metadata or None)
                async for msg in call:
                    cols.add_stream_message(key, msg)
        else:
            req = series_request([run_id], wanted, start, end, max_points, rank, aggregation,
                                 downsampling)
            cols.add_series((await self._call(self._query.GetMetricSeries, req)).series)
        return result(cols, as_frame)

    async def artifacts(self, run: str | RunData, kind: str | Sequence[str] | None = None,
                        min_step: int | None = None, max_step: int | None = None,
                        page_size: int = rq.PAGE_SIZE) -> list[Artifact]:
        """Artifacts a run recorded (see :meth:`tracker_client.Api.artifacts`)."""
        req = list_request(run_ids(run)[0], kind, min_step, max_step, page_size)
        return [Artifact.from_proto(a)
                async for page in self._pages(self._artifacts.ListArtifacts, req, "artifacts")
                for a in page]

    async def checkpoint(self, run: str | RunData, step: int) -> Artifact | None:
        """The run's checkpoint nearest ``step`` (a tie: the later one), None if none."""
        return nearest(await self.artifacts(run, "checkpoint"), step)

    async def best(self, experiment: str | Experiment | Sequence[str | Experiment],
                   metric: str, mode: Goal | None = None, on: SummaryOn = "last",
                   limit: int = 10, filter: str = "",
                   with_checkpoint: bool = False) -> Ranking:
        """The best runs of experiments by one summary value of ``metric`` (``mode``
        None: the goal the runs defined; the answer's ``.mode`` / ``.mode_source`` and
        ``with_checkpoint``: see :meth:`tracker_client.Api.best`)."""
        req = rq.best_runs(await self._experiment_ids(experiment), metric, mode, on, limit,
                           filter)
        ranked = Ranking.from_proto(await self._call(self._query.GetBestRuns, req), mode)
        if not with_checkpoint:
            return ranked
        return Ranking([dataclasses.replace(r, checkpoint=await self.checkpoint(r.run_id, r.step))
                        for r in ranked], ranked.mode, ranked.mode_source)

    async def compare(self, runs: Sequence[str | RunData],
                      checkpoint_metric: str | None = None, mode: Goal | None = None
                      ) -> Comparison:
        """Params and metric summaries of runs side by side (``checkpoint_metric``: see
        :meth:`tracker_client.Api.compare`)."""
        resp = await self._call(self._query.CompareRuns,
                                q.CompareRunsRequest(run_ids=run_ids(list(runs))))
        comparison = Comparison.from_proto(resp)
        if checkpoint_metric is None:
            return comparison
        steps = comparison.best_steps(checkpoint_metric, mode)
        return dataclasses.replace(comparison, checkpoints={
            r: None if step is None else await self.checkpoint(r, step)
            for r, step in steps.items()})

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()

    async def __aenter__(self) -> AsyncApi:
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
