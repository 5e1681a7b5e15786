// Choosing which params and which metric summaries (last / min / max) are table columns.
import { useState } from 'react';
import type { MetricAgg, MetricColumn } from '../lib/urlState';

interface ColumnPickerProps {
  paramKeys: string[];
  metricKeys: string[];
  params: string[];
  metrics: MetricColumn[];
  onChange: (params: string[], metrics: MetricColumn[]) => void;
}

const AGGS: MetricAgg[] = ['last', 'min', 'max'];

export function ColumnPicker(p: ColumnPickerProps) {
  const [query, setQuery] = useState('');
  const q = query.trim().toLowerCase();
  const match = (k: string) => !q || k.toLowerCase().includes(q);
  // Chosen columns stay listed even when this page's runs lack them.
  const paramKeys = [...new Set([...p.params, ...p.paramKeys])].sort();
  const metricKeys = [...new Set([...p.metrics.map((m) => m.key), ...p.metricKeys])].sort();

  const toggleParam = (k: string) =>
    p.onChange(p.params.includes(k) ? p.params.filter((x) => x !== k) : [...p.params, k], p.metrics);
  const has = (key: string, agg: MetricAgg) => p.metrics.some((m) => m.key === key && m.agg === agg);
  const toggleMetric = (key: string, agg: MetricAgg) =>
    p.onChange(
      p.params,
      has(key, agg) ? p.metrics.filter((m) => !(m.key === key && m.agg === agg)) : [...p.metrics, { key, agg }],
    );

  return (
    <details className="column-picker" data-testid="column-picker">
      <summary>Columns ({p.params.length + p.metrics.length})</summary>
      <div className="column-picker-body">
        <input
          className="column-search"
          placeholder="find a param or metric"
          value={query}
          onChange={(e) => setQuery(e.target.value)}
        />
        <div className="column-lists">
          <fieldset>
            <legend>Params</legend>
            {paramKeys.filter(match).map((k) => (
              <label key={k} className="check">
                <input type="checkbox" checked={p.params.includes(k)} onChange={() => toggleParam(k)} />
                {k}
              </label>
            ))}
            {paramKeys.length === 0 ? <span className="muted">none on this page</span> : null}
          </fieldset>
          <fieldset>
            <legend>Metrics</legend>
            {metricKeys.filter(match).map((k) => (
              <div key={k} className="metric-choice">
                <span className="metric-choice-key">{k}</span>
                {AGGS.map((agg) => (
                  <label key={agg} className="check">
                    <input type="checkbox" checked={has(k, agg)} onChange={() => toggleMetric(k, agg)} />
                    {agg}
                  </label>
                ))}
              </div>
            ))}
            {metricKeys.length === 0 ? <span className="muted">none on this page</span> : null}
          </fieldset>
        </div>
      </div>
    </details>
  );
}
