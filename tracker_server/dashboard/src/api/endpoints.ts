// One function per endpoint of /api/v1: send the request, decode the answer.
import { request } from './client';
import * as m from './model';
import type * as wire from './types';

const enc = encodeURIComponent;

export interface ListExperimentsParams {
  owner?: string;
  /** Any of these statuses; none: the server's default (created and active). */
  status?: wire.ExperimentStatus[];
  namePrefix?: string;
  pageSize?: number;
  pageToken?: string;
}

export function listExperiments(
  p: ListExperimentsParams,
  signal?: AbortSignal,
): Promise<wire.ExperimentList> {
  return request<wire.ExperimentList>('GET', '/experiments', {
    query: {
      owner: p.owner,
      status: p.status,
      name_prefix: p.namePrefix,
      page_size: p.pageSize,
      page_token: p.pageToken,
    },
    signal,
  });
}

export function createExperiment(body: wire.ExperimentCreate): Promise<wire.Experiment> {
  return request<wire.Experiment>('POST', '/experiments', { body });
}

export function updateExperiment(
  experimentId: string,
  body: wire.ExperimentUpdate,
): Promise<wire.Experiment> {
  return request<wire.Experiment>('PATCH', `/experiments/${enc(experimentId)}`, { body });
}

export async function getExperiment(
  experimentId: string,
  p: { runsPageSize?: number; runsPageToken?: string } = {},
  signal?: AbortSignal,
): Promise<m.ExperimentDetail> {
  const d = await request<wire.ExperimentDetail>('GET', `/experiments/${enc(experimentId)}`, {
    query: { runs_page_size: p.runsPageSize, runs_page_token: p.runsPageToken },
    signal,
  });
  return {
    experiment: d.experiment,
    runs: (d.runs ?? []).map(m.toRun),
    nextRunsPageToken: d.next_runs_page_token ?? '',
  };
}

export interface SearchRunsParams {
  experimentIds: string[];
  filter?: string;
  orderBy?: string[];
  pageSize?: number;
  pageToken?: string;
}

export async function searchRuns(p: SearchRunsParams, signal?: AbortSignal): Promise<m.RunList> {
  const d = await request<wire.RunList>('GET', '/runs', {
    query: {
      experiment_id: p.experimentIds,
      filter: p.filter,
      order_by: p.orderBy,
      page_size: p.pageSize,
      page_token: p.pageToken,
    },
    signal,
  });
  return { runs: (d.runs ?? []).map(m.toRun), nextPageToken: d.next_page_token ?? '' };
}

export async function getRun(runId: string, signal?: AbortSignal): Promise<m.Run> {
  return m.toRun(await request<wire.Run>('GET', `/runs/${enc(runId)}`, { signal }));
}

export async function finishRun(runId: string, status: wire.RunStatus): Promise<m.Run> {
  const body: wire.RunFinish = { status };
  return m.toRun(await request<wire.Run>('POST', `/runs/${enc(runId)}/finish`, { body }));
}

export async function listMetricKeys(runId: string, signal?: AbortSignal): Promise<m.MetricKey[]> {
  const d = await request<wire.MetricKeyList>('GET', `/runs/${enc(runId)}/metrics`, { signal });
  return (d.keys ?? []).map((k) => ({
    key: k.key,
    summary: m.toSummary(k.summary),
    ranks: k.ranks ?? [],
  }));
}

/** Every artifact of a run (all pages), by step (none first), then uri. */
export async function listArtifacts(runId: string, signal?: AbortSignal): Promise<m.Artifact[]> {
  const out: m.Artifact[] = [];
  let token = '';
  do {
    const d = await request<wire.ArtifactList>('GET', `/runs/${enc(runId)}/artifacts`, {
      query: { page_size: 1000, page_token: token || undefined },
      signal,
    });
    out.push(...(d.artifacts ?? []).map(m.toArtifact));
    token = d.next_page_token ?? '';
  } while (token);
  return out;
}

export interface SeriesParams {
  /** First step, inclusive (exact decimal text). */
  start?: string;
  /** Last step, inclusive. */
  end?: string;
  maxPoints?: number;
  method?: wire.SeriesMethod;
  aggregate?: wire.SeriesAggregate;
}

export async function getMetricSeries(
  runId: string,
  key: string,
  p: SeriesParams,
  signal?: AbortSignal,
): Promise<m.Series[]> {
  const d = await request<wire.SeriesList>(
    'GET',
    `/runs/${enc(runId)}/metrics/${enc(key)}`,
    {
      query: {
        start: p.start,
        end: p.end,
        max_points: p.maxPoints,
        method: p.method,
        aggregate: p.aggregate,
      },
      signal,
    },
  );
  return (d.series ?? []).map(m.toSeries);
}

export async function getBestRuns(
  experimentId: string,
  metric: string,
  /** null: the goal the runs defined for the metric (a 400 naming `mode` when none did or
   * they disagree). */
  mode: wire.BestMode | null,
  /** Which summary value ranks the runs (see API_NEEDS.md); the server's default is last. */
  on: wire.SummaryValue,
  signal?: AbortSignal,
): Promise<m.BestRanking> {
  const d = await request<wire.BestRunList>('GET', `/experiments/${enc(experimentId)}/best`, {
    query: { metric, mode, on },
    signal,
  });
  return m.toBestRanking(d, mode);
}

export async function compareRuns(runIds: string[], signal?: AbortSignal): Promise<m.Comparison> {
  const d = await request<wire.Comparison>('GET', '/compare', {
    query: { run_id: runIds },
    signal,
  });
  return m.toComparison(d);
}

export function getSession(signal?: AbortSignal): Promise<wire.Session> {
  return request<wire.Session>('GET', '/session', { signal, quietUnauthorized: true });
}

export function login(apiKey: string): Promise<wire.Session> {
  const body: wire.SessionCreate = { api_key: apiKey };
  return request<wire.Session>('POST', '/session', { body, quietUnauthorized: true });
}

export function logout(): Promise<void> {
  return request<void>('DELETE', '/session', { quietUnauthorized: true });
}
