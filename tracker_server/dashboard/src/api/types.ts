// Wire types of the HTTP API (/api/v1), as the JSON looks on the wire: every one is the
// generated type of the server's OpenAPI schema (src/api/generated/, written by
// `python -m tracker_server.http.openapi_export`), under the name the client uses.
// Nothing outside src/api/ imports this file: pages use the decoded models of
// ./model.ts, so a regeneration never ripples further than ./endpoints.ts.
import type * as gen from './generated';

export type {
  Artifact,
  ArtifactList,
  Comparison,
  Experiment,
  ExperimentCreate,
  ExperimentDetail,
  ExperimentList,
  Problem,
  Run,
  RunFinish,
  RunList,
  SeriesList,
  Summary,
} from './generated';

export type ExperimentUpdate = gen.ExperimentPatch;
export type MetricKeyList = gen.MetricKeys;
export type Series = gen.SeriesOut;
export type BestRun = gen.RankedRun;
export type BestRunList = gen.BestRuns;
export type Session = gen.SessionInfo;
export type SessionCreate = gen.SessionLogin;
export type ProblemFieldError = gen.ProblemField;

/** A float as protobuf's JSON mapping writes it: special values are strings. */
export type WireFloat = gen.SeriesOut['values'][number];
/** An int64: a JSON number when |v| <= 2^53, a decimal string otherwise. */
export type WireInt64 = gen.SeriesOut['steps'][number];

export type ExperimentStatus = gen.Experiment['status'];
export type RunStatus = gen.Run['status'];
export type SeriesQuery = NonNullable<gen.GetSeriesData['query']>;
export type SeriesMethod = NonNullable<SeriesQuery['method']>;
export type SeriesAggregate = gen.SeriesOut['aggregate'];
export type BestQuery = gen.BestRunsData['query'];
/** min: the smallest value first; max: the largest. */
export type BestMode = NonNullable<BestQuery['mode']>;
/** request: the mode asked for; runs: the goal the runs defined (define_metric). */
export type BestModeSource = gen.BestRuns['mode_source'];
export type SummaryValue = NonNullable<BestQuery['on']>;
