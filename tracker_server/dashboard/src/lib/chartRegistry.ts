// A read-only summary of every chart on the page, for browser tests and debugging:
// window.__trackerCharts["chart-loss"] -> {points, range, loading, ...}.

export interface ChartSummary {
  /** Points drawn per series. */
  points: number[];
  /** Series labels, in the order of `points`. */
  series: string[];
  /** Smallest and largest step drawn. */
  range: [number, number] | null;
  /** The zoom asked for (inclusive step range), or nulls for everything. */
  requested: [string | null, string | null];
  loading: boolean;
  downsampled: boolean;
  totalPoints: number;
  /** performance.now() of the first draw of the data shown now (null until drawn). */
  drawnAt: number | null;
  error: string | null;
}

const charts = new Map<string, ChartSummary>();

export function reportChart(id: string, summary: ChartSummary): void {
  charts.set(id, Object.freeze({ ...summary }));
}

/** Records the first draw after new data was reported (resizes and hovers redraw too). */
export function markDrawn(id: string, at: number): void {
  const c = charts.get(id);
  if (c && !c.loading && c.drawnAt === null) charts.set(id, Object.freeze({ ...c, drawnAt: at }));
}

export function removeChart(id: string): void {
  charts.delete(id);
}

declare global {
  interface Window {
    readonly __trackerCharts: Readonly<Record<string, ChartSummary>>;
  }
}

Object.defineProperty(window, '__trackerCharts', {
  configurable: true,
  get: () => Object.freeze(Object.fromEntries(charts)),
});
