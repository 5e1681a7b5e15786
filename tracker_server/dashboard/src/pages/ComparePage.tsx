// Compare: one metric overlaid across the chosen runs, their metric summaries (the best
// cell of a metric with a goal marked), and a params table with the params that differ
// highlighted.
import { useCallback, useMemo, useRef } from 'react';
import { compareRuns } from '../api';
import { ChartToolbar } from '../components/ChartToolbar';
import { CompareChart } from '../components/CompareChart';
import { CompareMetricsTable, RunHeads } from '../components/CompareMetricsTable';
import { ErrorBox, Loading, StatusBadge } from '../components/common';
import { colorAt, colorClass } from '../lib/colors';
import { Link, navigate, paths, useLocation } from '../lib/router';
import { useFetch } from '../lib/useFetch';
import { type CompareViewState, compareViewQuery, parseCompareView } from '../lib/urlState';

export function ComparePage() {
  const { search } = useLocation();
  const view = useMemo(() => parseCompareView(search), [search]);
  const runsKey = view.runs.join(',');
  const cmp = useFetch(
    (signal) => (view.runs.length ? compareRuns(view.runs, signal) : Promise.resolve(null)),
    [runsKey],
  );

  const viewRef = useRef(view);
  viewRef.current = view;
  const setView = useCallback(
    (next: Partial<CompareViewState>, replace = false) =>
      navigate(paths.compare(compareViewQuery({ ...viewRef.current, ...next })), { replace }),
    [],
  );
  const onZoom = useCallback((r: [number, number]) => setView({ from: String(r[0]), to: String(r[1]) }), [setView]);
  const onResetZoom = useCallback(() => setView({ from: null, to: null }), [setView]);
  const chartView = useMemo(
    () => ({ x: view.x, log: view.log, smooth: view.smooth, from: view.from, to: view.to }),
    [view.x, view.log, view.smooth, view.from, view.to],
  );

  if (view.runs.length === 0) {
    return (
      <div className="page">
        <h1>Compare</h1>
        <p className="muted">Select runs in an experiment's table and press Compare.</p>
      </div>
    );
  }
  if (cmp.error) return <div className="page"><h1>Compare</h1><ErrorBox error={cmp.error} onRetry={cmp.reload} /></div>;
  if (!cmp.data) return <div className="page"><h1>Compare</h1><Loading /></div>;

  const { runs, params, metrics } = cmp.data;
  const key = view.key && metrics.some((m) => m.key === view.key) ? view.key : (metrics[0]?.key ?? null);
  const shownParams = view.diff ? params.filter((p) => p.differs) : params;
  const remove = (id: string) => setView({ runs: view.runs.filter((r) => r !== id) });

  return (
    <div className="page">
      <h1>Compare {runs.length} runs</h1>
      <ul className="compare-runs">
        {runs.map((r, i) => (
          <li key={r.run_id}>
            <span className={`swatch ${colorClass(colorAt(i))}`} />
            <Link to={paths.run(r.run_id)}>{r.name || r.run_id}</Link> <StatusBadge status={r.status} />
            <button type="button" className="link-button" onClick={() => remove(r.run_id)} title="Remove from comparison">
              remove
            </button>
          </li>
        ))}
      </ul>

      <div className="toolbar">
        <label>
          metric
          <select value={key ?? ''} onChange={(e) => setView({ key: e.target.value, from: null, to: null })} data-testid="compare-metric">
            {metrics.map((m) => (
              <option key={m.key} value={m.key}>
                {m.key}
              </option>
            ))}
          </select>
        </label>
      </div>
      <ChartToolbar view={view} onChange={setView} />
      {key ? (
        <CompareChart runs={runs} metricKey={key} view={chartView} onZoom={onZoom} onResetZoom={onResetZoom} />
      ) : (
        <p className="muted">These runs have logged no metrics.</p>
      )}

      <h2>Metrics</h2>
      <div className="table-wrap">
        <CompareMetricsTable
          runs={runs}
          metrics={metrics}
          current={key}
          onPick={(k) => setView({ key: k, from: null, to: null })}
        />
      </div>

      <h2>
        Params{' '}
        <label className="check small">
          <input type="checkbox" checked={view.diff} onChange={(e) => setView({ diff: e.target.checked }, true)} data-testid="only-differing" />
          only differing ({params.filter((p) => p.differs).length})
        </label>
      </h2>
      <div className="table-wrap">
        <table className="grid compare-table" data-testid="params-diff">
          <thead>
            <tr>
              <th>param</th>
              <RunHeads runs={runs} />
            </tr>
          </thead>
          <tbody>
            {shownParams.map((p) => (
              <tr key={p.key} className={p.differs ? 'differs' : ''} data-differs={p.differs ? 'true' : 'false'}>
                <th scope="row">{p.key}</th>
                {p.values.map((v, i) => (
                  <td key={runs[i]?.run_id ?? i} className="mono">
                    {v === null ? <span className="muted">—</span> : v}
                  </td>
                ))}
              </tr>
            ))}
            {shownParams.length === 0 ? (
              <tr>
                <td colSpan={runs.length + 1} className="muted">
                  {view.diff ? 'No param differs.' : 'No params.'}
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
      </div>
    </div>
  );
}
