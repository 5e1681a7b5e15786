// One metric overlaid across several runs: the mean over ranks of each run (with its
// min/max band), read in parallel.
import { memo, useLayoutEffect, useMemo, useState } from 'react';
import { getMetricSeries, isAbort, type Run, type Series } from '../api';
import { type DrawSeries, stepExtent } from '../lib/chartData';
import { colorAt } from '../lib/colors';
import type { ChartViewState } from '../lib/urlState';
import { ChartFrame } from './ChartFrame';
import { chartId, errorText, MAX_POINTS, zoomRange } from './chartSeries';

interface CompareChartProps {
  runs: Run[];
  metricKey: string;
  view: ChartViewState;
  onZoom: (range: [number, number]) => void;
  onResetZoom: () => void;
}

interface Loaded {
  perRun: (Series | null)[];
  loading: boolean;
  error: string | null;
}

export const CompareChart = memo(function CompareChart(p: CompareChartProps) {
  const { runs, metricKey } = p;
  const { from, to } = p.view;
  const [state, setState] = useState<Loaded>({ perRun: [], loading: true, error: null });
  const runIds = runs.map((r) => r.run_id).join(',');

  useLayoutEffect(() => {
    const ctl = new AbortController();
    setState((s) => ({ ...s, loading: true, error: null }));
    Promise.all(
      runs.map((r) =>
        getMetricSeries(
          r.run_id,
          metricKey,
          { start: from ?? undefined, end: to ?? undefined, maxPoints: MAX_POINTS, method: 'minmax', aggregate: 'mean' },
          ctl.signal,
        ).then((list) => list[0] ?? null),
      ),
    ).then(
      (perRun) => setState({ perRun, loading: false, error: null }),
      (err: unknown) => {
        if (!isAbort(err)) setState((s) => ({ ...s, loading: false, error: errorText(err) }));
      },
    );
    return () => ctl.abort();
    // runIds stands for runs: a re-fetched but equal run list reads nothing again.
  }, [runIds, metricKey, from, to]);

  const sources = useMemo(() => {
    const out: DrawSeries[] = [];
    state.perRun.forEach((s, i) => {
      const run = runs[i];
      if (!s || !run) return;
      out.push({
        label: run.name || run.run_id,
        color: colorAt(i),
        steps: s.steps,
        wallS: s.wallS,
        values: s.values,
        lo: s.minValues,
        hi: s.maxValues,
      });
    });
    return out;
  }, [state.perRun, runs]);

  const missing = state.loading
    ? []
    : runs.filter((_r, i) => !state.perRun[i]).map((r) => r.name || r.run_id);
  const opts = useMemo(
    () => ({ xMode: p.view.x, logY: p.view.log, smoothing: p.view.smooth }),
    [p.view.x, p.view.log, p.view.smooth],
  );
  const requested = useMemo<[string | null, string | null]>(() => [from, to], [from, to]);
  const extent = useMemo(() => stepExtent(sources), [sources]);
  const zoom = useMemo(() => zoomRange(from, to, extent), [from, to, extent]);
  const present = state.perRun.filter((s): s is Series => s !== null);

  return (
    <ChartFrame
      id={chartId(metricKey)}
      title={metricKey}
      sources={sources}
      opts={opts}
      zoom={zoom}
      requested={requested}
      loading={state.loading}
      error={state.error}
      downsampled={present.some((s) => s.downsampled)}
      totalPoints={present.reduce((a, s) => a + (Number.isFinite(s.totalPoints) ? s.totalPoints : 0), 0)}
      onZoom={p.onZoom}
      onResetZoom={p.onResetZoom}
      note={missing.length ? `not logged by: ${missing.join(', ')}` : null}
      height={360}
    />
  );
});
