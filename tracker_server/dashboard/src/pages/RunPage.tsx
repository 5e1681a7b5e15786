// One run: what it is (status, attempts, SLURM job, params, tags, metadata) and a grid
// with a chart of every metric, live while the run is running.
import { type ReactNode, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import {
  type Artifact,
  finishRun,
  getExperiment,
  getRun,
  isAbort,
  listArtifacts,
  listMetricKeys,
  type MetricKey,
  type Run,
  type RunStatus,
} from '../api';
import { ArtifactsTable } from '../components/ArtifactsTable';
import { ErrorBox, KeyValueTable, Loading, sortedEntries, StatusBadge } from '../components/common';
import { MetricChart } from '../components/MetricChart';
import { RunMetadataView } from '../components/RunMetadata';
import { ChartToolbar } from '../components/ChartToolbar';
import { formatStep, formatTime, formatValue, runDuration } from '../lib/format';
import { Link, navigate, paths, useLocation } from '../lib/router';
import { useFetch } from '../lib/useFetch';
import { parseRunView, type RunViewState, runViewQuery } from '../lib/urlState';
import { canWrite, useSession } from '../session';

const RUN_POLL_MS = 2000;
const KEYS_POLL_MS = 5000;
const ARTIFACTS_POLL_MS = 5000;

function sameRun(a: Run, b: Run): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function sameArtifacts(a: Artifact[], b: Artifact[]): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function sameKeys(a: MetricKey[], b: MetricKey[]): boolean {
  return a.length === b.length && a.every((k, i) => k.key === b[i]?.key);
}

/** Calls `tick` every `ms` while `active`, skipping a tick while the last one runs. */
function usePolling(active: boolean, ms: number, tick: (signal: AbortSignal) => Promise<void>): void {
  const tickRef = useRef(tick);
  tickRef.current = tick;
  useEffect(() => {
    if (!active) return undefined;
    let busy = false;
    const ctl = new AbortController();
    const timer = window.setInterval(() => {
      if (busy) return;
      busy = true;
      tickRef.current(ctl.signal).catch(() => undefined).finally(() => {
        busy = false;
      });
    }, ms);
    return () => {
      window.clearInterval(timer);
      ctl.abort();
    };
  }, [active, ms]);
}

function FinishControl({ run, onFinished }: { run: Run; onFinished: (r: Run) => void }) {
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const finish = async (status: RunStatus) => {
    setBusy(true);
    setError(null);
    try {
      onFinished(await finishRun(run.run_id, status));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="finish-control">
      <span className="muted">Mark as</span>
      {(['finished', 'failed', 'killed'] as const).map((s) => (
        <button key={s} type="button" disabled={busy} onClick={() => void finish(s)} data-testid={`finish-${s}`}>
          {s}
        </button>
      ))}
      <ErrorBox error={error} />
    </div>
  );
}

function RunFacts({ run }: { run: Run }) {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (run.status !== 'running') return undefined;
    const t = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(t);
  }, [run.status]);
  const facts: [string, ReactNode][] = [
    ['status', <StatusBadge key="s" status={run.status} />],
    ['attempt', String(run.attempt)],
    ['SLURM job', run.slurm_job_id || <span className="muted">—</span>],
    ['run key', run.run_key ? <span className="mono">{run.run_key}</span> : <span className="muted">—</span>],
    ['seed', run.seed ?? <span className="muted">—</span>],
    ['created', formatTime(run.created_at)],
    ['ended', run.ended_at ? formatTime(run.ended_at) : <span className="muted">—</span>],
    ['duration', runDuration(run.created_at, run.ended_at, now)],
    ['run id', <span key="id" className="mono">{run.run_id}</span>],
  ];
  return <KeyValueTable entries={facts} />;
}

export function RunPage({ runId }: { runId: string }) {
  const { search } = useLocation();
  const view = useMemo(() => parseRunView(search), [search]);
  const session = useSession();

  const loaded = useFetch((signal) => getRun(runId, signal), [runId]);
  const [run, setRun] = useState<Run | null>(null);
  useEffect(() => {
    if (loaded.data) setRun(loaded.data);
  }, [loaded.data]);
  const live = run?.status === 'running';

  usePolling(live, RUN_POLL_MS, async (signal) => {
    const fresh = await getRun(runId, signal);
    setRun((old) => (old && sameRun(old, fresh) ? old : fresh));
  });

  const experimentId = run?.experiment_id;
  const exp = useFetch(
    (signal) => (experimentId ? getExperiment(experimentId, { runsPageSize: 1 }, signal) : Promise.resolve(null)),
    [experimentId],
  );

  const keysLoad = useFetch((signal) => listMetricKeys(runId, signal), [runId]);
  const [keys, setKeys] = useState<MetricKey[] | null>(null);
  useEffect(() => {
    if (keysLoad.data) setKeys(keysLoad.data);
  }, [keysLoad.data]);
  usePolling(live, KEYS_POLL_MS, async (signal) => {
    try {
      const fresh = await listMetricKeys(runId, signal);
      setKeys((old) => (old && sameKeys(old, fresh) ? old : fresh));
    } catch (err) {
      if (!isAbort(err)) throw err;
    }
  });

  const artifactsLoad = useFetch((signal) => listArtifacts(runId, signal), [runId]);
  const [artifacts, setArtifacts] = useState<Artifact[] | null>(null);
  useEffect(() => {
    if (artifactsLoad.data) setArtifacts(artifactsLoad.data);
  }, [artifactsLoad.data]);
  usePolling(live, ARTIFACTS_POLL_MS, async (signal) => {
    try {
      const fresh = await listArtifacts(runId, signal);
      setArtifacts((old) => (old && sameArtifacts(old, fresh) ? old : fresh));
    } catch (err) {
      if (!isAbort(err)) throw err;
    }
  });

  // Handlers read the view through a ref so the charts get stable callbacks.
  const viewRef = useRef(view);
  viewRef.current = view;
  const setView = useCallback(
    (next: Partial<RunViewState>, replace = false) =>
      navigate(paths.run(runId, runViewQuery({ ...viewRef.current, ...next })), { replace }),
    [runId],
  );
  const onZoom = useCallback(
    (r: [number, number]) => setView({ from: String(r[0]), to: String(r[1]) }),
    [setView],
  );
  const onResetZoom = useCallback(() => setView({ from: null, to: null }), [setView]);
  const chartView = useMemo(
    () => ({ x: view.x, log: view.log, smooth: view.smooth, from: view.from, to: view.to }),
    [view.x, view.log, view.smooth, view.from, view.to],
  );

  const q = view.q.trim().toLowerCase();
  const shown = (keys ?? []).filter((k) => !q || k.key.toLowerCase().includes(q));
  const maxRanks = Math.max(0, ...(keys ?? []).map((k) => k.ranks.length));

  // The charts do not wait for the run: both are read at once.
  return (
    <div className="page">
      <ErrorBox error={loaded.error} onRetry={loaded.reload} />
      {run ? (
        <>
          <div className="page-head">
            <div>
              <div className="breadcrumbs">
                <Link to={paths.experiments()}>Experiments</Link> /{' '}
                {exp.data ? (
                  <Link to={paths.experiment(exp.data.experiment.experiment_id)}>{exp.data.experiment.name}</Link>
                ) : (
                  <Link to={paths.experiment(run.experiment_id)}>experiment</Link>
                )}{' '}
                /
              </div>
              <h1>
                {run.name || run.run_id} <StatusBadge status={run.status} />
                {live ? <span className="live-dot">live</span> : null}
              </h1>
            </div>
            {live && canWrite(session) ? <FinishControl run={run} onFinished={setRun} /> : null}
          </div>

          <div className="run-info">
            <section className="panel">
              <h2>Run</h2>
              <RunFacts run={run} />
            </section>
            <section className="panel">
              <h2>Params</h2>
              <KeyValueTable entries={sortedEntries(run.params)} empty="no params" />
              <h2>Tags</h2>
              <KeyValueTable entries={sortedEntries(run.tags)} empty="no tags" />
              <h2>Summary</h2>
              <div data-testid="user-summary">
                <KeyValueTable
                  entries={Object.keys(run.user_summary)
                    .sort()
                    .map((k) => [k, formatValue(run.user_summary[k])])}
                  empty="no summary values"
                />
              </div>
            </section>
            <section className="panel metadata">
              <h2>Metadata</h2>
              <RunMetadataView metadata={run.metadata} />
            </section>
          </div>
          <section className="panel artifacts" data-testid="artifacts">
            <h2>Artifacts{artifacts ? ` (${artifacts.length})` : ''}</h2>
            <ErrorBox error={artifactsLoad.error} onRetry={artifactsLoad.reload} />
            {artifacts ? <ArtifactsTable artifacts={artifacts} /> : artifactsLoad.loading ? <Loading what="Loading artifacts" /> : null}
          </section>
        </>
      ) : loaded.loading ? (
        <Loading />
      ) : null}

      <h2 className="charts-title">
        Metrics{keys ? ` (${keys.length})` : ''}
        {view.from !== null || view.to !== null ? (
          <span className="zoom-note">
            {' '}steps {view.from !== null ? formatStep(Number(view.from)) : '…'}–{view.to !== null ? formatStep(Number(view.to)) : '…'}
          </span>
        ) : null}
      </h2>
      <ChartToolbar
        view={view}
        onChange={setView}
        ranks={maxRanks > 1 ? view.agg : null}
        onRanks={(agg) => setView({ agg })}
        query={view.q}
        onQuery={(q2) => setView({ q: q2 }, true)}
      />
      {loaded.error ? null : <ErrorBox error={keysLoad.error} onRetry={keysLoad.reload} />}
      {keys === null && keysLoad.loading ? <Loading what="Loading metrics" /> : null}
      {keys && keys.length === 0 ? <p className="muted">This run has logged no metrics yet.</p> : null}
      <div className="chart-grid" data-testid="chart-grid">
        {shown.map((k) => (
          <MetricChart
            key={k.key}
            runId={runId}
            metricKey={k.key}
            view={chartView}
            agg={view.agg}
            live={live}
            onZoom={onZoom}
            onResetZoom={onResetZoom}
          />
        ))}
      </div>
    </div>
  );
}
