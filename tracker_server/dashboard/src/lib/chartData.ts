// Turning decoded series into uPlot's columnar data: one shared x column, a line per
// series (plus its unsmoothed line when smoothing), and min/max bands.
import { emaSmooth } from './smoothing';

export type XMode = 'step' | 'wall';

/** One line to draw, with an optional band (min/max across ranks, or per-bucket envelope). */
export interface DrawSeries {
  label: string;
  color: string;
  steps: Float64Array;
  wallS: Float64Array;
  values: Float64Array;
  lo: Float64Array | null;
  hi: Float64Array | null;
}

export interface ChartOptions {
  xMode: XMode;
  logY: boolean;
  /** EMA weight in [0, 1); 0 draws the values as they are. */
  smoothing: number;
}

export type Column = (number | null | undefined)[];

/** What one uPlot series (data column 1..n) shows. */
export interface PlotSeries {
  kind: 'line' | 'raw' | 'hi' | 'lo';
  /** Index of the DrawSeries it comes from. */
  source: number;
  label: string;
  color: string;
}

export interface ChartLayout {
  /** [x, ...y columns], uPlot's AlignedData. */
  data: [Float64Array, ...Column[]];
  series: PlotSeries[];
  /** Band edges as uPlot series indices (1-based, data column indices): [hi, lo]. */
  bands: [number, number][];
  /** Points of each DrawSeries that are drawn (finite x). */
  points: number[];
  /** Values of each DrawSeries that are NaN or infinite (drawn as gaps). */
  nonFinite: number[];
}

/** A y value uPlot can draw, or null (a gap) for NaN, ±Inf and, on a log axis, v <= 0. */
export function plotValue(v: number, logY: boolean): number | null {
  return Number.isFinite(v) && (!logY || v > 0) ? v : null;
}

interface Prepared {
  x: Float64Array;
  cols: Float64Array[];
}

/** The x column of one series and its value columns in x order (drops points with no x). */
function prepare(x: Float64Array, cols: Float64Array[]): Prepared {
  const n = x.length;
  let sorted = true;
  let finite = true;
  for (let i = 0; i < n; i++) {
    const v = x[i] as number;
    if (!Number.isFinite(v)) finite = false;
    else if (i > 0 && v < (x[i - 1] as number)) sorted = false;
  }
  if (sorted && finite) return { x, cols };
  const idx: number[] = [];
  for (let i = 0; i < n; i++) if (Number.isFinite(x[i] as number)) idx.push(i);
  // A stable sort keeps equal wall times in step order.
  idx.sort((a, b) => (x[a] as number) - (x[b] as number) || a - b);
  const pick = (c: Float64Array): Float64Array => Float64Array.from(idx, (i) => c[i] as number);
  return { x: pick(x), cols: cols.map(pick) };
}

function sameColumn(a: Float64Array, b: Float64Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The sorted union of several sorted x columns. */
export function unionX(xs: Float64Array[]): Float64Array {
  let total = 0;
  for (const x of xs) total += x.length;
  const all = new Float64Array(total);
  let o = 0;
  for (const x of xs) {
    all.set(x, o);
    o += x.length;
  }
  all.sort();
  let w = 0;
  for (let i = 0; i < all.length; i++) {
    if (i === 0 || all[i] !== all[w - 1]) all[w++] = all[i] as number;
  }
  return all.slice(0, w);
}

/**
 * Spreads a series' column over the shared x column. Where the series has no point the
 * cell is `undefined` (uPlot draws the line through it); where its value is not
 * drawable the cell is `null` (a gap).
 */
function align(
  shared: Float64Array,
  x: Float64Array,
  col: Float64Array,
  logY: boolean,
  identical: boolean,
): Column {
  const out: Column = new Array<number | null | undefined>(shared.length).fill(undefined);
  if (identical) {
    for (let i = 0; i < col.length; i++) out[i] = plotValue(col[i] as number, logY);
    return out;
  }
  let j = 0;
  for (let i = 0; i < x.length; i++) {
    const xv = x[i] as number;
    while (j < shared.length && (shared[j] as number) < xv) j++;
    if (j < shared.length) out[j] = plotValue(col[i] as number, logY);
  }
  return out;
}

export function buildChart(sources: DrawSeries[], opts: ChartOptions): ChartLayout {
  const smoothing = opts.smoothing > 0 && opts.smoothing < 1 ? opts.smoothing : 0;
  const prepared = sources.map((s) => {
    const cols = [s.values];
    if (smoothing) cols.push(emaSmooth(s.values, smoothing));
    const band = s.lo && s.hi && s.lo.length === s.values.length && s.hi.length === s.values.length;
    if (band) cols.push(s.hi as Float64Array, s.lo as Float64Array);
    return { p: prepare(opts.xMode === 'wall' ? s.wallS : s.steps, cols), band };
  });

  const first = prepared[0]?.p.x;
  const identical = first !== undefined && prepared.every((q) => sameColumn(q.p.x, first));
  const shared = identical ? first : unionX(prepared.map((q) => q.p.x));

  const bandCols: Column[] = [];
  const bandSeries: PlotSeries[] = [];
  const rawCols: Column[] = [];
  const rawSeries: PlotSeries[] = [];
  const lineCols: Column[] = [];
  const lineSeries: PlotSeries[] = [];
  const bandPairs: [number, number][] = [];
  const points: number[] = [];
  const nonFinite: number[] = [];

  prepared.forEach(({ p, band }, i) => {
    const s = sources[i] as DrawSeries;
    const col = (k: number): Column => align(shared, p.x, p.cols[k] as Float64Array, opts.logY, identical);
    const base = { source: i, label: s.label, color: s.color };
    points.push(p.x.length);
    let bad = 0;
    const values = p.cols[0] as Float64Array;
    for (let k = 0; k < values.length; k++) if (!Number.isFinite(values[k] as number)) bad++;
    nonFinite.push(bad);
    if (smoothing) {
      rawCols.push(col(0));
      rawSeries.push({ ...base, kind: 'raw' });
      lineCols.push(col(1));
    } else {
      lineCols.push(col(0));
    }
    lineSeries.push({ ...base, kind: 'line' });
    if (band) {
      const k = smoothing ? 2 : 1;
      bandCols.push(col(k), col(k + 1));
      bandSeries.push({ ...base, kind: 'hi' }, { ...base, kind: 'lo' });
      // Data column indices are 1-based (column 0 is x); bands come first.
      bandPairs.push([bandCols.length - 1, bandCols.length]);
    }
  });

  return {
    data: [shared, ...bandCols, ...rawCols, ...lineCols],
    series: [...bandSeries, ...rawSeries, ...lineSeries],
    bands: bandPairs,
    points,
    nonFinite,
  };
}

/** Smallest and largest step of all series, or null when nothing is drawn. */
export function stepExtent(sources: DrawSeries[]): [number, number] | null {
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of sources) {
    const n = s.steps.length;
    if (n === 0) continue;
    // Steps arrive strictly increasing per series.
    lo = Math.min(lo, s.steps[0] as number);
    hi = Math.max(hi, s.steps[n - 1] as number);
  }
  return lo <= hi ? [lo, hi] : null;
}

/**
 * The step range a drag over [x0, x1] (in x-axis units) selects: the whole steps inside
 * it on a step axis; on a wall-time axis, the steps of the points drawn inside it.
 */
export function selectionToSteps(
  sources: DrawSeries[],
  xMode: XMode,
  x0: number,
  x1: number,
): [number, number] | null {
  const a = Math.min(x0, x1);
  const b = Math.max(x0, x1);
  if (!Number.isFinite(a) || !Number.isFinite(b)) return null;
  if (xMode === 'step') {
    const from = Math.ceil(a);
    const to = Math.floor(b);
    return from <= to ? [from, to] : null;
  }
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of sources) {
    for (let i = 0; i < s.wallS.length; i++) {
      const w = s.wallS[i] as number;
      if (w >= a && w <= b) {
        const st = s.steps[i] as number;
        if (st < lo) lo = st;
        if (st > hi) hi = st;
      }
    }
  }
  return lo <= hi ? [lo, hi] : null;
}
