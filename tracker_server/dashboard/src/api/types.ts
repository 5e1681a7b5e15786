// Wire types of the HTTP API (/api/v1), as the JSON looks on the wire.
//
// These mirror the REST contract by hand until the server publishes its OpenAPI schema;
// `npm run gen:api` then writes src/api/generated/types.gen.ts and this file becomes a
// list of re-exports from there (the names below are the schema names to give the
// FastAPI models). Nothing outside src/api/ imports this file: pages use the parsed
// models of ./model.ts, so regenerating never ripples further than ./endpoints.ts.

/** A float as protobuf's JSON mapping writes it: special values are strings. */
export type WireFloat = number | 'NaN' | 'Infinity' | '-Infinity';

/** An int64: a JSON number when |v| <= 2^53, a decimal string otherwise. */
export type WireInt64 = number | string;

export type ExperimentStatus = 'created' | 'active' | 'archived';
export type RunStatus = 'running' | 'finished' | 'failed' | 'killed';
export type SeriesMethod = 'minmax' | 'lttb';
export type SeriesAggregate = 'per_rank' | 'mean' | 'min' | 'max';
export type BestMode = 'min' | 'max';
export type SummaryValue = 'last' | 'min' | 'max';

export interface Experiment {
  experiment_id: string;
  name: string;
  owner: string;
  description: string;
  status: ExperimentStatus;
  created_at: string;
}

export interface ExperimentList {
  experiments: Experiment[];
  next_page_token: string;
}

export interface ExperimentCreate {
  name: string;
  owner: string;
  description: string;
}

export interface ExperimentUpdate {
  description?: string;
  status?: ExperimentStatus;
}

export interface ExperimentDetail {
  experiment: Experiment;
  runs: Run[];
  next_runs_page_token: string;
}

export interface Summary {
  key: string;
  count: WireInt64;
  first_step: WireInt64;
  last_step: WireInt64;
  last_value: WireFloat;
  last_wall_time_ns: WireInt64;
  min_value: WireFloat;
  min_step: WireInt64;
  max_value: WireFloat;
  max_step: WireInt64;
}

export interface GitInfo {
  commit?: string;
  branch?: string;
  dirty?: boolean;
}

/** Reproducibility metadata the client records; every field may be missing. */
export interface RunMetadata {
  git?: GitInfo;
  host?: string;
  gpus?: unknown;
  command?: unknown;
  python?: string;
  packages?: unknown;
  [other: string]: unknown;
}

export interface Run {
  run_id: string;
  experiment_id: string;
  name: string;
  run_key: string;
  status: RunStatus;
  attempt: number;
  seed: WireInt64 | null;
  slurm_job_id: string;
  metadata: RunMetadata;
  created_at: string;
  ended_at: string | null;
  params: Record<string, string>;
  tags: Record<string, string>;
  summaries?: Summary[];
}

export interface RunList {
  runs: Run[];
  next_page_token: string;
}

export interface RunFinish {
  status: RunStatus;
}

export interface MetricKey {
  key: string;
  summary: Summary;
  ranks: number[];
}

export interface MetricKeyList {
  keys: MetricKey[];
}

export interface Series {
  rank: number | null;
  aggregate: SeriesAggregate;
  steps: WireInt64[];
  values: WireFloat[];
  wall_time_ns: WireInt64[];
  min_values?: WireFloat[];
  max_values?: WireFloat[];
  downsampled: boolean;
  total_points: WireInt64;
}

export interface SeriesList {
  series: Series[];
}

export interface BestRun {
  run_id: string;
  run_name: string;
  status: RunStatus;
  value: WireFloat;
  step: WireInt64;
}

export interface BestRunList {
  runs: BestRun[];
}

export interface CompareParam {
  key: string;
  values: (string | null)[];
  differs: boolean;
}

export interface CompareMetric {
  key: string;
  summaries: (Summary | null)[];
}

export interface Comparison {
  runs: Run[];
  params: CompareParam[];
  metrics: CompareMetric[];
}

export interface SessionCreate {
  api_key: string;
}

export interface Session {
  role: string;
  key_id: string | null;
  csrf_token: string;
  auth?: boolean;
}

export interface ProblemFieldError {
  field: string;
  message: string;
  position?: number;
}

/** RFC 9457 problem details. */
export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  instance?: string;
  errors?: ProblemFieldError[];
}
