// One uPlot chart: built once per shape (series, axes), fed new columns with setData,
// zoomed by dragging (the parent re-queries that step range), state exposed for tests.
import { memo, type ReactNode, useEffect, useLayoutEffect, useMemo, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import {
  buildChart,
  type ChartLayout,
  type ChartOptions,
  type DrawSeries,
  selectionToSteps,
  stepExtent,
} from '../lib/chartData';
import { markDrawn, removeChart, reportChart } from '../lib/chartRegistry';
import { colorClass, withAlpha } from '../lib/colors';
import { formatCompact, formatDate, formatStep, formatValue } from '../lib/format';

export interface ChartFrameProps {
  /** data-testid of the container, e.g. "chart-loss". */
  id: string;
  title: string;
  sources: DrawSeries[];
  opts: ChartOptions;
  /** Step range to show (a zoom), or null to fit the data. */
  zoom: [number, number] | null;
  /** The zoom as requested (exact text), for the exposed state. */
  requested: [string | null, string | null];
  loading: boolean;
  error: string | null;
  downsampled: boolean;
  totalPoints: number;
  onZoom?: (range: [number, number]) => void;
  onResetZoom?: () => void;
  /** Extra text under the title (e.g. "live"). */
  note?: ReactNode;
  height?: number;
}

const EMPTY_SELECT = { left: 0, top: 0, width: 0, height: 0 };

function sharedPointer(type: string): boolean {
  return type === 'mousemove' || type === 'mouseleave';
}

/** What decides the uPlot instance's configuration; data changes reuse the instance. */
function shapeKey(layout: ChartLayout, opts: ChartOptions, height: number): string {
  return JSON.stringify([
    layout.series.map((s) => [s.kind, s.color, s.label]),
    layout.bands,
    opts.xMode,
    opts.logY,
    height,
  ]);
}

function uplotOptions(
  layout: ChartLayout,
  opts: ChartOptions,
  width: number,
  height: number,
  hooks: uPlot.Hooks.Arrays,
): uPlot.Options {
  const series: uPlot.Series[] = [{}];
  for (const s of layout.series) {
    if (s.kind === 'hi' || s.kind === 'lo') {
      series.push({ label: `${s.label} ${s.kind === 'hi' ? 'max' : 'min'}`, stroke: 'transparent', width: 0, points: { show: false } });
    } else if (s.kind === 'raw') {
      series.push({ label: `${s.label} (raw)`, stroke: withAlpha(s.color, 0.3), width: 1, points: { show: false } });
    } else {
      series.push({ label: s.label, stroke: s.color, width: 1.5, points: { show: false } });
    }
  }
  const bands: uPlot.Band[] = layout.bands.map(([hi, lo]) => {
    const src = layout.series[hi - 1];
    return { series: [hi, lo], fill: withAlpha(src?.color ?? '#888888', 0.16) };
  });
  const axisFont = '11px system-ui, sans-serif';
  return {
    width,
    height,
    series,
    bands,
    legend: { show: false },
    cursor: {
      drag: { x: true, y: false, setScale: false },
      points: { show: false },
      // Hovering one chart shows the same step on every chart of the page. Only the
      // pointer position is shared: a drag or double-click acts on its own chart.
      sync: { key: 'tracker-page', scales: ['x', null], filters: { pub: sharedPointer } },
    },
    scales: {
      x: { time: opts.xMode === 'wall' },
      y: opts.logY ? { distr: 3, log: 10 } : {},
    },
    axes: [
      {
        font: axisFont,
        size: 30,
        ...(opts.xMode === 'step'
          ? { values: (_u: uPlot, splits: number[]) => splits.map(tickLabel) }
          : {}),
      },
      {
        font: axisFont,
        size: 56,
        values: (_u: uPlot, splits: number[]) => splits.map(tickLabel),
      },
    ],
    hooks,
  };
}

/** Axis label; log axes leave their minor ticks unlabelled (null). */
function tickLabel(v: number | null): string {
  return v === null || v === undefined ? '' : formatCompact(v);
}

/** A zoom on a step axis is shown at once, before the re-read range arrives. */
function applyZoom(u: uPlot, zoom: [number, number] | null, xMode: ChartOptions['xMode']): void {
  if (zoom && xMode === 'step') u.setScale('x', { min: zoom[0], max: zoom[1] });
}

/** The value of a column at `idx`, or at the nearest index where that series has a point. */
function nearestValue(col: ArrayLike<number | null | undefined>, idx: number): number | null | undefined {
  for (let d = 0; d < 64; d++) {
    const left = col[idx - d];
    if (left !== undefined) return left;
    const right = col[idx + d];
    if (right !== undefined) return right;
  }
  return undefined;
}

function readoutText(u: uPlot, layout: ChartLayout, xMode: ChartOptions['xMode']): string {
  const idx = u.cursor.idx;
  if (idx === null || idx === undefined) return '';
  const x = layout.data[0][idx];
  if (x === undefined) return '';
  const head = xMode === 'wall' ? formatDate(new Date(x * 1000)) : `step ${formatStep(x)}`;
  const parts: string[] = [];
  layout.series.forEach((s, i) => {
    if (s.kind !== 'line') return;
    const col = layout.data[i + 1];
    const v = col ? nearestValue(col, idx) : undefined;
    if (v !== undefined) parts.push(`${s.label} ${v === null ? 'gap' : formatValue(v)}`);
  });
  return parts.length ? `${head} · ${parts.join(' · ')}` : head;
}

export const ChartFrame = memo(function ChartFrame(props: ChartFrameProps) {
  const { id, sources, opts, zoom, loading, height = 200 } = props;
  const plotRef = useRef<HTMLDivElement>(null);
  const readoutRef = useRef<HTMLDivElement>(null);
  const plotInstance = useRef<uPlot | null>(null);
  const layoutRef = useRef<ChartLayout | null>(null);
  // Hooks read the latest props through refs, so the instance never goes stale.
  const latest = useRef(props);
  latest.current = props;

  const layout = useMemo(
    () => buildChart(sources, opts),
    [sources, opts.xMode, opts.logY, opts.smoothing],
  );
  layoutRef.current = layout;
  const extent = useMemo(() => stepExtent(sources), [sources]);
  const shape = shapeKey(layout, opts, height);
  const hasData = layout.series.length > 0;

  // Reported before uPlot is built or fed, so the draw that follows is recorded.
  useLayoutEffect(() => {
    reportChart(id, {
      points: layout.points,
      series: layout.series.filter((s) => s.kind === 'line').map((s) => s.label),
      range: extent,
      requested: props.requested,
      loading,
      downsampled: props.downsampled,
      totalPoints: props.totalPoints,
      drawnAt: null,
      error: props.error,
    });
  }, [id, layout, extent, props.requested, loading, props.downsampled, props.totalPoints, props.error, hasData]);

  useLayoutEffect(() => {
    const el = plotRef.current;
    if (!el || !hasData) return undefined;
    const hooks: uPlot.Hooks.Arrays = {
      setSelect: [
        (u) => {
          const { left, width } = u.select;
          if (width >= 3) {
            const p = latest.current;
            const range = selectionToSteps(
              p.sources,
              p.opts.xMode,
              u.posToVal(left, 'x'),
              u.posToVal(left + width, 'x'),
            );
            if (range) p.onZoom?.(range);
          }
          u.setSelect(EMPTY_SELECT, false);
        },
      ],
      setCursor: [
        (u) => {
          const current = layoutRef.current;
          if (readoutRef.current && current) {
            readoutRef.current.textContent = readoutText(u, current, latest.current.opts.xMode);
          }
        },
      ],
      draw: [() => markDrawn(latest.current.id, performance.now())],
    };
    const onDblClick = () => latest.current.onResetZoom?.();
    let u: uPlot | null = null;
    // Built on the first resize callback: it comes after layout, once for all charts,
    // so reading a width never forces a layout per chart.
    const ro = new ResizeObserver((entries) => {
      const rect = entries[entries.length - 1]?.contentRect;
      const width = Math.max(Math.floor(rect?.width ?? el.clientWidth), 200);
      if (u) {
        if (Math.abs(width - u.width) >= 1) u.setSize({ width, height });
        return;
      }
      const now = layoutRef.current ?? layout;
      const p = latest.current;
      u = new uPlot(uplotOptions(now, p.opts, width, height, hooks), now.data as uPlot.AlignedData, el);
      plotInstance.current = u;
      applyZoom(u, p.zoom, p.opts.xMode);
      u.over.addEventListener('dblclick', onDblClick);
    });
    ro.observe(el);
    return () => {
      ro.disconnect();
      if (u) {
        u.over.removeEventListener('dblclick', onDblClick);
        u.destroy();
      }
      plotInstance.current = null;
    };
    // The instance depends on the shape only; data goes in through setData below.
  }, [shape, hasData]);

  useLayoutEffect(() => {
    const u = plotInstance.current;
    if (!u) return;
    if (u.data !== (layout.data as unknown)) u.setData(layout.data as uPlot.AlignedData);
    applyZoom(u, zoom, opts.xMode);
  }, [layout, zoom, opts.xMode, shape]);

  useEffect(() => () => removeChart(id), [id]);

  const nonFinite = layout.nonFinite.reduce((a, b) => a + b, 0);
  return (
    <div
      className="chart"
      data-testid={id}
      data-points={layout.points.join(',')}
      data-range={extent ? `${extent[0]}-${extent[1]}` : ''}
      data-requested-range={
        props.requested[0] !== null || props.requested[1] !== null
          ? `${props.requested[0] ?? ''}-${props.requested[1] ?? ''}`
          : ''
      }
      data-loading={loading ? 'true' : 'false'}
      data-downsampled={props.downsampled ? 'true' : 'false'}
      data-total-points={props.totalPoints}
    >
      <div className="chart-head">
        <h3 className="chart-title" title={props.title}>
          {props.title}
        </h3>
        <span className="chart-note">
          {loading ? 'loading… ' : ''}
          {props.note}
          {props.downsampled ? ` ${formatStep(props.totalPoints)} points, downsampled` : ''}
          {nonFinite > 0 ? ` · ${nonFinite} NaN/Inf` : ''}
        </span>
      </div>
      {props.error ? <div className="chart-error">{props.error}</div> : null}
      <div className={`chart-plot h${height}`} ref={plotRef}>
        {!hasData && !loading && !props.error ? <div className="chart-empty">no points</div> : null}
      </div>
      <div className="chart-foot">
        <div className="chart-legend">
          {layout.series
            .filter((s) => s.kind === 'line')
            .map((s) => (
              <span key={`${s.source}`} className="legend-item">
                <span className={`swatch ${colorClass(s.color)}`} />
                {s.label}
              </span>
            ))}
        </div>
        <div className="chart-readout" ref={readoutRef} />
      </div>
    </div>
  );
});
