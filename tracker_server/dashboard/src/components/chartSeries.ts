// What the chart components share: how much to read, and series -> drawable lines.
import type { Series } from '../api';
import type { DrawSeries } from '../lib/chartData';

/** Points per series on the wire: about one per horizontal pixel of a wide chart. */
export const MAX_POINTS = 2000;

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function seriesLabel(s: Series): string {
  return s.rank === null || s.rank < 0 ? s.aggregate : `rank ${s.rank}`;
}

export function toDrawSeries(list: Series[], label: (s: Series, i: number) => string,
  color: (s: Series, i: number) => string): DrawSeries[] {
  return list.map((s, i) => ({
    label: label(s, i),
    color: color(s, i),
    steps: s.steps,
    wallS: s.wallS,
    values: s.values,
    lo: s.minValues,
    hi: s.maxValues,
  }));
}

/** The zoom as numbers for the x scale; an open end takes the data's end. */
export function zoomRange(
  from: string | null,
  to: string | null,
  extent: [number, number] | null,
): [number, number] | null {
  if (from === null && to === null) return null;
  const lo = from !== null ? Number(from) : (extent?.[0] ?? 0);
  const hi = to !== null ? Number(to) : (extent?.[1] ?? lo);
  return [lo, hi];
}

export function chartId(key: string): string {
  return `chart-${key}`;
}
