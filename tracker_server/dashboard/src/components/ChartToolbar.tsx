// Chart settings shared by every chart of a page: x axis, log scale, smoothing, ranks,
// zoom reset, and a filter on metric names.
import type { ChartViewState, RankView } from '../lib/urlState';

interface ChartToolbarProps {
  view: ChartViewState;
  onChange: (next: Partial<ChartViewState>, replace?: boolean) => void;
  /** Current rank view, or null to hide the control (single-rank runs, compare). */
  ranks?: RankView | null;
  onRanks?: (agg: RankView) => void;
  query?: string;
  onQuery?: (q: string) => void;
}

export function ChartToolbar(p: ChartToolbarProps) {
  const { view } = p;
  const zoomed = view.from !== null || view.to !== null;
  return (
    <div className="toolbar chart-toolbar" data-testid="chart-toolbar">
      <div className="segmented" role="group" aria-label="x axis">
        <button type="button" className={view.x === 'step' ? 'on' : ''} aria-pressed={view.x === 'step'} onClick={() => p.onChange({ x: 'step' })}>
          step
        </button>
        <button type="button" className={view.x === 'wall' ? 'on' : ''} aria-pressed={view.x === 'wall'} onClick={() => p.onChange({ x: 'wall' })}>
          wall time
        </button>
      </div>
      <label className="check">
        <input type="checkbox" checked={view.log} onChange={(e) => p.onChange({ log: e.target.checked })} data-testid="log-scale" />
        log scale
      </label>
      <label className="smoothing">
        smoothing
        <input
          type="range"
          min={0}
          max={0.99}
          step={0.01}
          value={view.smooth}
          data-testid="smoothing"
          onChange={(e) => p.onChange({ smooth: Number(e.target.value) }, true)}
        />
        <span className="mono smoothing-value">{view.smooth.toFixed(2)}</span>
      </label>
      {p.ranks && p.onRanks ? (
        <label>
          ranks
          <select value={p.ranks} onChange={(e) => p.onRanks?.(e.target.value as RankView)} data-testid="rank-view">
            <option value="per_rank">per rank</option>
            <option value="mean">mean, min–max band</option>
          </select>
        </label>
      ) : null}
      <button type="button" disabled={!zoomed} onClick={() => p.onChange({ from: null, to: null })} data-testid="reset-zoom">
        Reset zoom
      </button>
      {p.onQuery ? (
        <input
          className="chart-filter"
          placeholder="filter metrics"
          value={p.query ?? ''}
          onChange={(e) => p.onQuery?.(e.target.value)}
          aria-label="Filter metrics by name"
        />
      ) : null}
      <span className="muted small">drag across a chart to zoom · double-click resets</span>
    </div>
  );
}
