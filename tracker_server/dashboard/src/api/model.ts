// What the pages work with: the wire types with every number decoded.
import type * as wire from './types';
import {
  floatColumn,
  int64Column,
  int64Text,
  parseFloatWire,
  parseInt64,
  wallSecondsColumn,
} from './wire';

export type {
  BestMode,
  BestModeSource,
  Experiment,
  ExperimentCreate,
  ExperimentList,
  ExperimentStatus,
  ExperimentUpdate,
  RunStatus,
  SeriesAggregate,
  SeriesMethod,
  Session,
} from './types';

export interface Summary {
  key: string;
  count: number;
  firstStep: number;
  lastStep: number;
  lastValue: number;
  lastWallTimeS: number;
  minValue: number;
  minStep: number;
  maxValue: number;
  maxStep: number;
}

export interface GitInfo {
  commit?: string;
  branch?: string;
  dirty?: boolean;
}

/** The reproducibility metadata the client records (free-form JSON on the wire, so
 * every field may be missing or of another type; the view checks before it shows). */
export interface RunMetadata {
  git?: GitInfo;
  host?: string;
  gpus?: unknown;
  command?: unknown;
  python?: string;
  packages?: unknown;
  [other: string]: unknown;
}

export interface Run extends Omit<wire.Run, 'seed' | 'summaries' | 'metadata' | 'user_summary'> {
  metadata: RunMetadata;
  /** User summary values (run.summary[key] = value), by key; NaN and infinities as numbers. */
  user_summary: Record<string, number>;
  /** Exact decimal text of the seed, or null when none was given. */
  seed: string | null;
  /** Present when the server sent summaries with the run. */
  summaries: Summary[] | null;
}

export interface ExperimentDetail {
  experiment: wire.Experiment;
  runs: Run[];
  nextRunsPageToken: string;
}

export interface RunList {
  runs: Run[];
  nextPageToken: string;
}

export interface MetricKey {
  key: string;
  summary: Summary;
  ranks: number[];
}

/** One series in columns; steps and wall times are numbers for drawing. */
export interface Series {
  rank: number | null;
  aggregate: wire.SeriesAggregate;
  steps: Float64Array;
  values: Float64Array;
  wallS: Float64Array;
  minValues: Float64Array | null;
  maxValues: Float64Array | null;
  downsampled: boolean;
  totalPoints: number;
  /** Exact decimal text of the last step (what a live poll continues after). */
  lastStep: string | null;
}

/** A recorded artifact: a reference to a file on shared storage (never the file). */
export interface Artifact {
  runId: string;
  uri: string;
  kind: wire.Artifact['kind'];
  /** Exact decimal text of the step, null for an artifact without one. */
  step: string | null;
  /** Size when written (rounded beyond 2^53), null when unknown. */
  sizeBytes: number | null;
  sha256: string;
  metadata: Record<string, string>;
  rank: number;
  createdAt: string;
  verifyState: wire.Artifact['verify_state'];
  verifyDetail: string;
  verifiedAt: string | null;
}

export interface BestRun {
  runId: string;
  runName: string;
  status: wire.RunStatus;
  value: number;
  step: number;
}

/** The best runs and the goal that ranked them. */
export interface BestRanking {
  /** Best first. */
  runs: BestRun[];
  /** The goal in effect. */
  mode: wire.BestMode;
  /** Where it came from: the request's mode, or the goal the runs defined. */
  modeSource: wire.BestModeSource;
}

export interface CompareParam {
  key: string;
  values: (string | null)[];
  differs: boolean;
}

export interface CompareMetric {
  key: string;
  summaries: (Summary | null)[];
  /** The goal the compared runs agree on (define_metric); null when none defined one or
   * they disagree. */
  goal: wire.BestMode | null;
  /** With a goal: the index (in summaries and runs) of the run whose last value is best;
   * null without a goal or a comparable value. */
  bestCell: number | null;
}

export interface Comparison {
  runs: Run[];
  params: CompareParam[];
  metrics: CompareMetric[];
}

export function toSummary(s: wire.Summary): Summary {
  return {
    key: s.key,
    count: parseInt64(s.count),
    firstStep: parseInt64(s.first_step),
    lastStep: parseInt64(s.last_step),
    lastValue: parseFloatWire(s.last_value),
    lastWallTimeS: parseInt64(s.last_wall_time_ns) / 1e9,
    minValue: parseFloatWire(s.min_value),
    minStep: parseInt64(s.min_step),
    maxValue: parseFloatWire(s.max_value),
    maxStep: parseInt64(s.max_step),
  };
}

export function toRun(r: wire.Run): Run {
  const { seed, summaries, user_summary, ...rest } = r;
  return {
    ...rest,
    user_summary: Object.fromEntries(
      Object.entries(user_summary ?? {}).map(([k, v]) => [k, parseFloatWire(v)]),
    ),
    metadata: r.metadata ?? {},
    params: r.params ?? {},
    tags: r.tags ?? {},
    seed: seed === null || seed === undefined ? null : int64Text(seed),
    summaries: summaries ? summaries.map(toSummary) : null,
  };
}

function optionalColumn(values: wire.WireFloat[] | null | undefined, n: number): Float64Array | null {
  if (!values || values.length !== n) return null;
  return floatColumn(values);
}

export function toSeries(s: wire.Series): Series {
  const steps = int64Column(s.steps);
  const n = steps.length;
  const last = s.steps[n - 1];
  return {
    rank: s.rank ?? null,
    aggregate: s.aggregate,
    steps,
    values: floatColumn(s.values),
    wallS: s.wall_time_ns && s.wall_time_ns.length === n
      ? wallSecondsColumn(s.wall_time_ns)
      : new Float64Array(n).fill(NaN),
    minValues: optionalColumn(s.min_values, n),
    maxValues: optionalColumn(s.max_values, n),
    downsampled: Boolean(s.downsampled),
    totalPoints: parseInt64(s.total_points),
    lastStep: last === undefined ? null : int64Text(last),
  };
}

/** `asked`: the mode sent, for a server that does not say which one ranked. */
export function toBestRanking(d: wire.BestRunList, asked: wire.BestMode | null): BestRanking {
  const mode = d.mode ?? asked ?? 'min';
  return { runs: (d.runs ?? []).map(toBestRun), mode, modeSource: d.mode_source ?? 'request' };
}

export function toBestRun(b: wire.BestRun): BestRun {
  return {
    runId: b.run_id,
    runName: b.run_name,
    status: b.status,
    value: parseFloatWire(b.value),
    step: parseInt64(b.step),
  };
}

export function toComparison(c: wire.Comparison): Comparison {
  return {
    runs: c.runs.map(toRun),
    params: c.params.map((p) => ({ key: p.key, values: p.values, differs: p.differs })),
    metrics: c.metrics.map((m) => ({
      key: m.key,
      summaries: m.summaries.map((s) => (s ? toSummary(s) : null)),
      // An older server sends neither: no goal, nothing marked.
      goal: m.goal ?? null,
      bestCell: m.best_cell ?? null,
    })),
  };
}

export function toArtifact(a: wire.Artifact): Artifact {
  return {
    runId: a.run_id,
    uri: a.uri,
    kind: a.kind,
    step: a.step === null || a.step === undefined ? null : int64Text(a.step),
    sizeBytes: a.size_bytes === null || a.size_bytes === undefined ? null : parseInt64(a.size_bytes),
    sha256: a.sha256,
    metadata: a.metadata ?? {},
    rank: a.rank,
    createdAt: a.created_at,
    verifyState: a.verify_state,
    verifyDetail: a.verify_detail,
    verifiedAt: a.verified_at ?? null,
  };
}
