// The runs of an experiment page: fixed columns, chosen param and metric columns, server
// sorting by header, selection for Compare, and the best run per marked metric column.
import type { Run, Summary } from '../api';
import { formatStep, formatTime, formatValue, runDuration } from '../lib/format';
import { Link, paths } from '../lib/router';
import {
  type BestMark,
  type ExperimentViewState,
  type MetricColumn,
  metricField,
  paramField,
  parseOrder,
  sameColumn,
} from '../lib/urlState';
import { SortHeader, StatusBadge } from './common';

interface RunsTableProps {
  runs: Run[];
  /** run id -> metric key -> summary. */
  summaries: Map<string, Map<string, Summary>>;
  view: ExperimentViewState;
  /** A newer page is loading. */
  stale: boolean;
  emptyText: string;
  onSort: (field: string, descFirst?: boolean) => void;
  selected: Set<string>;
  onToggleRun: (runId: string) => void;
  onToggleAll: () => void;
  bestRunId: (c: MetricColumn) => string | null;
  /** Marks the column's best run (by the runs' goal) or unmarks it. */
  onToggleBest: (c: MetricColumn) => void;
}

export function metricValue(
  s: Summary | undefined,
  agg: MetricColumn['agg'],
): { value: number; step: number } | null {
  if (!s) return null;
  if (agg === 'min') return { value: s.minValue, step: s.minStep };
  if (agg === 'max') return { value: s.maxValue, step: s.maxStep };
  return { value: s.lastValue, step: s.lastStep };
}

function bestMode(best: BestMark[], c: MetricColumn): BestMark['mode'] | undefined {
  return best.find((b) => sameColumn(b, c))?.mode;
}

export function RunsTable(p: RunsTableProps) {
  const { view, runs, selected } = p;
  const current = view.order[0] ? parseOrder(view.order[0]) : null;
  const dir = (field: string): 'asc' | 'desc' | null =>
    current && current.field === field ? (current.desc ? 'desc' : 'asc') : null;
  const allOnPage = runs.length > 0 && runs.every((r) => selected.has(r.run_id));
  const columns = 5 + view.params.length + view.metrics.length;

  return (
    <div className={`table-wrap${p.stale ? ' stale' : ''}`}>
      <table className="grid runs-table" data-testid="runs-table">
        <thead>
          <tr>
            <th className="select-col">
              <input
                type="checkbox"
                aria-label="Select all runs on this page"
                checked={allOnPage}
                onChange={p.onToggleAll}
              />
            </th>
            <SortHeader label="Run" dir={dir('name')} onSort={() => p.onSort('name')} />
            <SortHeader label="Status" dir={dir('status')} onSort={() => p.onSort('status')} />
            <SortHeader label="Created" dir={dir('created_at')} onSort={() => p.onSort('created_at', true)} />
            <th>Duration</th>
            {view.params.map((k) => (
              <SortHeader
                key={`p:${k}`}
                className="param-col"
                label={k}
                title={`param ${k}`}
                dir={dir(paramField(k))}
                onSort={() => p.onSort(paramField(k))}
              />
            ))}
            {view.metrics.map((m) => {
              const mode = bestMode(view.best, m);
              return (
                <SortHeader
                  key={`m:${m.agg}:${m.key}`}
                  className="metric-col"
                  label={`${m.key}.${m.agg}`}
                  title={`metric ${m.key}, ${m.agg} value`}
                  dir={dir(metricField(m))}
                  onSort={() => p.onSort(metricField(m))}
                  extra={
                    <button
                      type="button"
                      className={`best-toggle${mode ? ' on' : ''}`}
                      title="Mark the experiment's best run by this value (by the goal the runs defined; min or max in the list above), or unmark it"
                      onClick={() => p.onToggleBest(m)}
                    >
                      {mode ? `★${mode === 'goal' ? '' : mode}` : '☆'}
                    </button>
                  }
                />
              );
            })}
          </tr>
        </thead>
        <tbody>
          {runs.map((r) => {
            const s = p.summaries.get(r.run_id);
            const isBest = view.best.some((b) => p.bestRunId(b) === r.run_id);
            const classes = [selected.has(r.run_id) ? 'selected' : '', isBest ? 'best-row' : ''];
            return (
              <tr key={r.run_id} className={classes.filter(Boolean).join(' ')}>
                <td className="select-col">
                  <input
                    type="checkbox"
                    aria-label={`Select run ${r.name}`}
                    checked={selected.has(r.run_id)}
                    onChange={() => p.onToggleRun(r.run_id)}
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
                  const star = p.bestRunId(m) === r.run_id;
                  return (
                    <td
                      key={`m:${m.agg}:${m.key}`}
                      className={`num${star ? ' best' : ''}`}
                      title={v ? `step ${formatStep(v.step)}` : undefined}
                    >
                      {star ? (
                        <span className="best-star" title="best run">
                          ★{' '}
                        </span>
                      ) : null}
                      {v ? formatValue(v.value) : <span className="muted">—</span>}
                    </td>
                  );
                })}
              </tr>
            );
          })}
          {runs.length === 0 && !p.stale ? (
            <tr>
              <td colSpan={columns} className="muted">
                {p.emptyText}
              </td>
            </tr>
          ) : null}
        </tbody>
      </table>
    </div>
  );
}
