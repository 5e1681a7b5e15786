// One experiment: its runs, filtered with the filter language and ordered by the server,
// with chosen param and metric columns, best runs marked, and runs picked for Compare.
import { useMemo } from 'react';
import {
  ApiError,
  type BestMode,
  type BestRun,
  compareRuns,
  getBestRuns,
  getExperiment,
  searchRuns,
  type Summary,
} from '../api';
import { ColumnPicker } from '../components/ColumnPicker';
import { ErrorBox, Loading, Pager } from '../components/common';
import { ExperimentHeader } from '../components/ExperimentHeader';
import { FilterBox, type FilterProblem } from '../components/FilterBox';
import { RunsTable } from '../components/RunsTable';
import { formatStep, formatValue } from '../lib/format';
import { Link, navigate, paths, useLocation } from '../lib/router';
import { useFetch } from '../lib/useFetch';
import {
  type BestMark,
  compareViewQuery,
  type ExperimentViewState,
  experimentViewQuery,
  type MetricColumn,
  parseExperimentView,
  sameColumn,
  toggleOrder,
} from '../lib/urlState';
import { canWrite, useSession } from '../session';

const PAGE_SIZE = 50;

/** The direction a column ranks in when the runs define no goal: max for .max, min otherwise. */
function naturalMode(agg: MetricColumn['agg']): BestMode {
  return agg === 'max' ? 'max' : 'min';
}

/** How the goal of a best mark was settled: chosen here (request), defined by the runs,
 * or the column's natural direction because the runs define none (unset) or both. */
type GoalSource = 'request' | 'runs' | 'unset' | 'ambiguous';

interface BestResult {
  run: BestRun | null;
  /** The goal in effect. */
  mode: BestMode;
  source: GoalSource;
}

/** The best run by one mark. Mode "goal" asks the server for the goal the runs defined;
 * when they define none or disagree (a 400 naming mode) the column's natural direction
 * ranks instead: that is a normal state of an experiment, not an error to show. */
async function bestOf(experimentId: string, b: BestMark, signal: AbortSignal): Promise<BestResult> {
  if (b.mode !== 'goal') {
    const r = await getBestRuns(experimentId, b.key, b.mode, b.agg, signal);
    return { run: r.runs[0] ?? null, mode: r.mode, source: 'request' };
  }
  try {
    const r = await getBestRuns(experimentId, b.key, null, b.agg, signal);
    return { run: r.runs[0] ?? null, mode: r.mode, source: r.modeSource };
  } catch (err) {
    const why = err instanceof ApiError && err.status === 400 ? err.fieldError('mode') : undefined;
    if (!why) throw err;
    const r = await getBestRuns(experimentId, b.key, naturalMode(b.agg), b.agg, signal);
    return { run: r.runs[0] ?? null, mode: r.mode, source: why.message === 'ambiguous' ? 'ambiguous' : 'unset' };
  }
}

/** Which goal ranks, and why: "max (defined by the runs)". */
function goalText(r: BestResult): string {
  const why = {
    request: 'chosen here',
    runs: 'defined by the runs',
    unset: 'no goal defined by the runs',
    ambiguous: 'the runs define both min and max',
  }[r.source];
  return `${r.mode} (${why})`;
}

function markId(c: MetricColumn): string {
  return `${c.agg}:${c.key}`;
}

function filterProblem(error: unknown): FilterProblem | null {
  if (!(error instanceof ApiError) || error.status !== 400) return null;
  const e = error.fieldError('filter');
  if (!e) return null;
  return { message: e.message, position: typeof e.position === 'number' ? e.position : null };
}

export function ExperimentPage({ experimentId }: { experimentId: string }) {
  const { search } = useLocation();
  const view = useMemo(() => parseExperimentView(search), [search]);
  const session = useSession();
  const writable = canWrite(session);
  const token = view.tok[view.tok.length - 1];

  const go = (next: Partial<ExperimentViewState>, replace = false) =>
    navigate(paths.experiment(experimentId, experimentViewQuery({ ...view, ...next })), { replace });

  const exp = useFetch((signal) => getExperiment(experimentId, { runsPageSize: 1 }, signal), [experimentId]);
  const orderKey = view.order.join('\n');
  const runs = useFetch(
    (signal) =>
      searchRuns(
        { experimentIds: [experimentId], filter: view.filter, orderBy: view.order, pageSize: PAGE_SIZE, pageToken: token },
        signal,
      ),
    [experimentId, view.filter, orderKey, token],
  );
  const problem = filterProblem(runs.error);
  const pageRuns = runs.error ? [] : (runs.data?.runs ?? []);

  // Summaries come with the runs; a server that leaves them out is asked once per page.
  const missingSummaries = pageRuns.some((r) => r.summaries === null);
  const runIdsKey = pageRuns.map((r) => r.run_id).join(',');
  const compared = useFetch(
    (signal) =>
      missingSummaries && pageRuns.length > 0
        ? compareRuns(pageRuns.map((r) => r.run_id), signal)
        : Promise.resolve(null),
    [missingSummaries, runIdsKey],
  );
  const summaries = useMemo(() => {
    const out = new Map<string, Map<string, Summary>>();
    for (const r of pageRuns) {
      if (r.summaries) out.set(r.run_id, new Map(r.summaries.map((s) => [s.key, s])));
    }
    const c = compared.data;
    if (c) {
      c.runs.forEach((r, i) => {
        const m = out.get(r.run_id) ?? new Map<string, Summary>();
        for (const metric of c.metrics) {
          const s = metric.summaries[i];
          if (s) m.set(metric.key, s);
        }
        out.set(r.run_id, m);
      });
    }
    return out;
  }, [runs.data, runs.error, compared.data]);

  const bestKey = view.best.map((b) => `${b.mode}:${markId(b)}`).join('\n');
  const best = useFetch(
    async (signal) => {
      const results = await Promise.all(
        view.best.map((b) =>
          bestOf(experimentId, b, signal).then(
            (result) => [markId(b), result] as const,
            (err: unknown) => [markId(b), err instanceof Error ? err : new Error(String(err))] as const,
          ),
        ),
      );
      return new Map<string, BestResult | Error>(results);
    },
    [experimentId, bestKey],
  );

  const paramKeys = useMemo(() => {
    const keys = new Set<string>();
    for (const r of pageRuns) for (const k of Object.keys(r.params)) keys.add(k);
    return [...keys];
  }, [runs.data, runs.error]);
  const metricKeys = useMemo(() => {
    const keys = new Set<string>();
    for (const m of summaries.values()) for (const k of m.keys()) keys.add(k);
    return [...keys];
  }, [summaries]);

  const sort = (field: string, descFirst = false) =>
    go({ order: toggleOrder(view.order, field, descFirst), tok: [] });

  const selected = new Set(view.sel);
  const toggleRun = (id: string) =>
    go({ sel: selected.has(id) ? view.sel.filter((x) => x !== id) : [...view.sel, id] }, true);
  const allOnPage = pageRuns.length > 0 && pageRuns.every((r) => selected.has(r.run_id));
  const toggleAll = () =>
    go(
      {
        sel: allOnPage
          ? view.sel.filter((id) => !pageRuns.some((r) => r.run_id === id))
          : [...new Set([...view.sel, ...pageRuns.map((r) => r.run_id)])],
      },
      true,
    );
  const compare = () =>
    navigate(paths.compare(compareViewQuery({
      runs: view.sel, key: view.metrics[0]?.key ?? null, diff: false,
      x: 'step', log: false, smooth: 0, from: null, to: null,
    })));

  // The star turns a mark on (ranked by the runs' goal) and off; the list below it
  // chooses min or max explicitly.
  const toggleBest = (c: MetricColumn) => {
    const marked = view.best.some((b) => sameColumn(b, c));
    const rest = view.best.filter((b) => !sameColumn(b, c));
    go({ best: marked ? rest : [...rest, { key: c.key, agg: c.agg, mode: 'goal' }] }, true);
  };
  const setBestMode = (c: MetricColumn, mode: BestMark['mode']) =>
    go({ best: view.best.map((b) => (sameColumn(b, c) ? { ...b, mode } : b)) }, true);
  const bestRunId = (c: MetricColumn): string | null => {
    const b = best.data?.get(markId(c));
    return b && !(b instanceof Error) ? (b.run?.runId ?? null) : null;
  };

  const next = runs.data?.nextPageToken ?? '';

  return (
    <div className="page">
      <ErrorBox error={exp.error} onRetry={exp.reload} />
      {exp.data ? (
        <ExperimentHeader experiment={exp.data.experiment} writable={writable} onChanged={exp.reload} />
      ) : exp.loading ? (
        <Loading />
      ) : null}

      <FilterBox value={view.filter} problem={problem} onApply={(filter) => go({ filter, tok: [] })} />

      <div className="toolbar">
        <ColumnPicker
          paramKeys={paramKeys}
          metricKeys={metricKeys}
          params={view.params}
          metrics={view.metrics}
          onChange={(params, metrics) =>
            go({ params, metrics, best: view.best.filter((b) => metrics.some((m) => sameColumn(m, b))) }, true)
          }
        />
        <span className="spacer" />
        {view.sel.length > 0 ? (
          <>
            <span className="muted">{view.sel.length} selected</span>
            <button type="button" onClick={() => go({ sel: [] }, true)}>
              Clear
            </button>
          </>
        ) : null}
        <button type="button" className="primary" disabled={view.sel.length < 2} onClick={compare} data-testid="compare-button">
          Compare{view.sel.length ? ` (${view.sel.length})` : ''}
        </button>
      </div>

      {view.best.length > 0 ? (
        <ul className="best-list" data-testid="best-list">
          {view.best.map((b) => {
            const r = best.data?.get(markId(b));
            const column = `${b.key}.${b.agg}`;
            return (
              <li key={markId(b)} data-testid={`best-${column}`}>
                <span className="best-star">★</span> best {column}{' '}
                <select
                  className="best-mode"
                  aria-label={`Goal of ${column}`}
                  value={b.mode}
                  onChange={(e) => setBestMode(b, e.target.value as BestMark['mode'])}
                >
                  <option value="goal">runs' goal</option>
                  <option value="min">min</option>
                  <option value="max">max</option>
                </select>{' '}
                {best.loading && !best.data ? (
                  'loading…'
                ) : r instanceof Error ? (
                  <span className="error-text">{r.message}</span>
                ) : r ? (
                  <>
                    <span className="best-goal muted" data-testid="best-goal" data-mode={r.mode} data-source={r.source}>
                      {goalText(r)}
                    </span>
                    :{' '}
                    {r.run ? (
                      <>
                        <Link to={paths.run(r.run.runId)}>{r.run.runName || r.run.runId}</Link>{' '}
                        {formatValue(r.run.value)} at step {formatStep(r.run.step)}
                      </>
                    ) : (
                      <span className="muted">no run logged it</span>
                    )}
                  </>
                ) : null}
              </li>
            );
          })}
        </ul>
      ) : null}

      {runs.error && !problem ? <ErrorBox error={runs.error} onRetry={runs.reload} /> : null}
      {runs.loading && !runs.data ? <Loading what="Loading runs" /> : null}
      {runs.data || problem ? (
        <RunsTable
          runs={pageRuns}
          summaries={summaries}
          view={view}
          stale={runs.loading}
          emptyText={problem ? 'Fix the filter to see runs.' : view.filter ? 'No run matches this filter.' : 'No runs yet.'}
          onSort={sort}
          selected={selected}
          onToggleRun={toggleRun}
          onToggleAll={toggleAll}
          bestRunId={bestRunId}
          onToggleBest={toggleBest}
        />
      ) : null}
      {runs.data && !runs.error ? (
        <Pager
          page={view.tok.length + 1}
          hasPrev={view.tok.length > 0}
          hasNext={Boolean(next)}
          onPrev={() => go({ tok: view.tok.slice(0, -1) })}
          onNext={() => go({ tok: [...view.tok, next] })}
        />
      ) : null}
    </div>
  );
}
