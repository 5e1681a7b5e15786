// One experiment: its runs, filtered with the filter language and ordered by the server,
// with chosen param and metric columns, best runs marked, and runs picked for Compare.
import { useMemo, useState } from 'react';
import {
  ApiError,
  type BestRun,
  compareRuns,
  type Experiment,
  type ExperimentStatus,
  getBestRuns,
  getExperiment,
  type Run,
  searchRuns,
  type Summary,
  updateExperiment,
} from '../api';
import { ColumnPicker } from '../components/ColumnPicker';
import { ErrorBox, Loading, Pager, SortHeader, StatusBadge } from '../components/common';
import { FilterBox, type FilterProblem } from '../components/FilterBox';
import { formatStep, formatTime, formatValue, runDuration } from '../lib/format';
import { Link, navigate, paths, useLocation } from '../lib/router';
import { useFetch } from '../lib/useFetch';
import {
  type BestMark,
  compareViewQuery,
  type ExperimentViewState,
  experimentViewQuery,
  type MetricColumn,
  metricField,
  paramField,
  parseExperimentView,
  parseOrder,
  sameColumn,
  toggleOrder,
} from '../lib/urlState';
import { canWrite, useSession } from '../session';

const PAGE_SIZE = 50;

function ExperimentHeader({ experiment, writable, onChanged }: {
  experiment: Experiment;
  writable: boolean;
  onChanged: () => void;
}) {
  const [editing, setEditing] = useState(false);
  const [description, setDescription] = useState(experiment.description);
  const [error, setError] = useState<unknown>(null);

  const patch = async (body: { description?: string; status?: ExperimentStatus }) => {
    setError(null);
    try {
      await updateExperiment(experiment.experiment_id, body);
      setEditing(false);
      onChanged();
    } catch (err) {
      setError(err);
    }
  };

  return (
    <div className="page-head experiment-head">
      <div>
        <div className="breadcrumbs">
          <Link to={paths.experiments()}>Experiments</Link> /
        </div>
        <h1>
          {experiment.name} <StatusBadge status={experiment.status} />
        </h1>
        <div className="muted">
          {experiment.owner ? `owner ${experiment.owner} · ` : ''}created {formatTime(experiment.created_at)}
        </div>
        {editing ? (
          <div className="edit-description">
            <textarea value={description} rows={3} onChange={(e) => setDescription(e.target.value)} />
            <button type="button" className="primary" onClick={() => void patch({ description })}>
              Save
            </button>
            <button type="button" onClick={() => setEditing(false)}>
              Cancel
            </button>
          </div>
        ) : (
          <p className="description">
            {experiment.description || <span className="muted">no description</span>}
            {writable ? (
              <button
                type="button"
                className="link-button"
                onClick={() => {
                  setDescription(experiment.description);
                  setEditing(true);
                }}
              >
                edit
              </button>
            ) : null}
          </p>
        )}
        <ErrorBox error={error} />
      </div>
      {writable ? (
        <label className="status-select">
          Status
          <select
            value={experiment.status}
            onChange={(e) => void patch({ status: e.target.value as ExperimentStatus })}
          >
            <option value="created">created</option>
            <option value="active">active</option>
            <option value="archived">archived</option>
          </select>
        </label>
      ) : null}
    </div>
  );
}

function metricValue(s: Summary | undefined, agg: MetricColumn['agg']): { value: number; step: number } | null {
  if (!s) return null;
  if (agg === 'min') return { value: s.minValue, step: s.minStep };
  if (agg === 'max') return { value: s.maxValue, step: s.maxStep };
  return { value: s.lastValue, step: s.lastStep };
}

/** off -> the natural direction for the column (max for .max, min otherwise) -> the other -> off. */
function nextBest(agg: MetricColumn['agg'], mode: BestMark['mode'] | undefined): BestMark['mode'] | null {
  const first = agg === 'max' ? 'max' : 'min';
  if (mode === undefined) return first;
  return mode === first ? (first === 'min' ? 'max' : 'min') : null;
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

  const bestKey = view.best.map(markId).join('\n');
  const best = useFetch(
    async (signal) => {
      const results = await Promise.all(
        view.best.map((b) =>
          getBestRuns(experimentId, b.key, b.mode, b.agg, signal).then(
            (list) => [markId(b), list[0] ?? null] as const,
            (err: unknown) => [markId(b), err instanceof Error ? err : new Error(String(err))] as const,
          ),
        ),
      );
      return new Map<string, BestRun | Error | null>(results);
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

  const current = view.order[0] ? parseOrder(view.order[0]) : null;
  const dir = (field: string): 'asc' | 'desc' | null =>
    current && current.field === field ? (current.desc ? 'desc' : 'asc') : null;
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

  const bestMode = (c: MetricColumn) => view.best.find((b) => sameColumn(b, c))?.mode;
  const cycleBest = (c: MetricColumn) => {
    const mode = nextBest(c.agg, bestMode(c));
    const rest = view.best.filter((b) => !sameColumn(b, c));
    go({ best: mode ? [...rest, { key: c.key, agg: c.agg, mode }] : rest }, true);
  };
  const bestRunId = (c: MetricColumn): string | null => {
    const b = best.data?.get(markId(c));
    return b && !(b instanceof Error) ? b.runId : null;
  };

  const next = runs.data?.nextPageToken ?? '';
  const columns = 5 + view.params.length + view.metrics.length;

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
            return (
              <li key={markId(b)}>
                <span className="best-star">★</span> best {b.key}.{b.agg} ({b.mode}):{' '}
                {best.loading && !best.data ? (
                  'loading…'
                ) : r instanceof Error ? (
                  <span className="error-text">{r.message}</span>
                ) : r ? (
                  <>
                    <Link to={paths.run(r.runId)}>{r.runName || r.runId}</Link> {formatValue(r.value)} at step{' '}
                    {formatStep(r.step)}
                  </>
                ) : (
                  <span className="muted">no run logged it</span>
                )}
              </li>
            );
          })}
        </ul>
      ) : null}

      {runs.error && !problem ? <ErrorBox error={runs.error} onRetry={runs.reload} /> : null}
      {runs.loading && !runs.data ? <Loading what="Loading runs" /> : null}
      {runs.data || problem ? (
        <div className={`table-wrap${runs.loading ? ' stale' : ''}`}>
          <table className="grid runs-table" data-testid="runs-table">
            <thead>
              <tr>
                <th className="select-col">
                  <input type="checkbox" aria-label="Select all runs on this page" checked={allOnPage} onChange={toggleAll} />
                </th>
                <SortHeader label="Run" dir={dir('name')} onSort={() => sort('name')} />
                <SortHeader label="Status" dir={dir('status')} onSort={() => sort('status')} />
                <SortHeader label="Created" dir={dir('created_at')} onSort={() => sort('created_at', true)} />
                <th>Duration</th>
                {view.params.map((k) => (
                  <SortHeader
                    key={`p:${k}`}
                    className="param-col"
                    label={k}
                    title={`param ${k}`}
                    dir={dir(paramField(k))}
                    onSort={() => sort(paramField(k))}
                  />
                ))}
                {view.metrics.map((m) => {
                  const mode = bestMode(m);
                  return (
                    <SortHeader
                      key={`m:${m.agg}:${m.key}`}
                      className="metric-col"
                      label={`${m.key}.${m.agg}`}
                      title={`metric ${m.key}, ${m.agg} value`}
                      dir={dir(metricField(m))}
                      onSort={() => sort(metricField(m))}
                      extra={
                        <button
                          type="button"
                          className={`best-toggle${mode ? ' on' : ''}`}
                          title="Mark the experiment's best run by this value (lowest, highest, off)"
                          onClick={() => cycleBest(m)}
                        >
                          {mode ? `★${mode}` : '☆'}
                        </button>
                      }
                    />
                  );
                })}
              </tr>
            </thead>
            <tbody>
              {pageRuns.map((r: Run) => {
                const s = summaries.get(r.run_id);
                const isBest = view.best.some((b) => bestRunId(b) === r.run_id);
                return (
                  <tr key={r.run_id} className={`${selected.has(r.run_id) ? 'selected' : ''}${isBest ? ' best-row' : ''}`}>
                    <td className="select-col">
                      <input
                        type="checkbox"
                        aria-label={`Select run ${r.name}`}
                        checked={selected.has(r.run_id)}
                        onChange={() => toggleRun(r.run_id)}
                      />
                    </td>
                    <td>
                      <Link to={paths.run(r.run_id)}>{r.name || r.run_id}</Link>
                    </td>
                    <td>
                      <StatusBadge status={r.status} />
                    </td>
                    <td className="nowrap">{formatTime(r.created_at)}</td>
                    <td className="nowrap">{runDuration(r.created_at, r.ended_at, Date.now())}</td>
                    {view.params.map((k) => (
                      <td key={`p:${k}`} className="mono">
                        {k in r.params ? r.params[k] : <span className="muted">—</span>}
                      </td>
                    ))}
                    {view.metrics.map((m) => {
                      const v = metricValue(s?.get(m.key), m.agg);
                      const star = bestRunId(m) === r.run_id;
                      return (
                        <td
                          key={`m:${m.agg}:${m.key}`}
                          className={`num${star ? ' best' : ''}`}
                          title={v ? `step ${formatStep(v.step)}` : undefined}
                        >
                          {star ? <span className="best-star" title="best run">★ </span> : null}
                          {v ? formatValue(v.value) : <span className="muted">—</span>}
                        </td>
                      );
                    })}
                  </tr>
                );
              })}
              {pageRuns.length === 0 && !runs.loading ? (
                <tr>
                  <td colSpan={columns} className="muted">
                    {problem ? 'Fix the filter to see runs.' : view.filter ? 'No run matches this filter.' : 'No runs yet.'}
                  </td>
                </tr>
              ) : null}
            </tbody>
          </table>
        </div>
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
