// One metric of one run: reads the series (zoomed range at full resolution, up to
// MAX_POINTS per series), follows a running run by polling, and draws it.
import { memo, useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState } from 'react';
import { getMetricSeries, isAbort, type Series } from '../api';
import { stepExtent } from '../lib/chartData';
import { colorAt } from '../lib/colors';
import { mergeSeriesLists, nextPollStart } from '../lib/seriesMerge';
import type { ChartViewState, RankView } from '../lib/urlState';
import { ChartFrame } from './ChartFrame';
import { chartId, errorText, MAX_POINTS, seriesLabel, toDrawSeries, zoomRange } from './chartSeries';

export const POLL_MS = 1000;
/** A live series that grew past this many points is read again, downsampled. */
const REREAD_POINTS = 3 * MAX_POINTS;

interface MetricChartProps {
  runId: string;
  metricKey: string;
  /** Memoised by the page: a new object means new settings. */
  view: ChartViewState;
  agg: RankView;
  live: boolean;
  onZoom: (range: [number, number]) => void;
  onResetZoom: () => void;
}

interface Loaded {
  series: Series[];
  loading: boolean;
  error: string | null;
}

export const MetricChart = memo(function MetricChart(p: MetricChartProps) {
  const { runId, metricKey, agg, live } = p;
  const { from, to } = p.view;
  const [state, setState] = useState<Loaded>({ series: [], loading: true, error: null });
  const [generation, setGeneration] = useState(0);
  // The series drawn now (null while a full read is pending), read by the poller.
  const current = useRef<Series[] | null>(null);
  const zoomed = from !== null || to !== null;

  // Started before the first paint: on a page of 20 charts that is a frame earlier.
  useLayoutEffect(() => {
    const ctl = new AbortController();
    current.current = null;
    setState((s) => ({ ...s, loading: true, error: null }));
    getMetricSeries(
      runId,
      metricKey,
      { start: from ?? undefined, end: to ?? undefined, maxPoints: MAX_POINTS, method: 'minmax', aggregate: agg },
      ctl.signal,
    ).then(
      (series) => {
        current.current = series;
        setState({ series, loading: false, error: null });
      },
      (err: unknown) => {
        if (isAbort(err)) return;
        setState((s) => ({ ...s, loading: false, error: errorText(err) }));
      },
    );
    return () => ctl.abort();
  }, [runId, metricKey, agg, from, to, generation]);

  const inflight = useRef<AbortController | null>(null);
  const poll = useCallback(async () => {
    const drawn = current.current;
    if (inflight.current || drawn === null) return;
    const start = nextPollStart(drawn);
    const ctl = new AbortController();
    inflight.current = ctl;
    try {
      const fresh = await getMetricSeries(
        runId,
        metricKey,
        { start: start ?? undefined, maxPoints: MAX_POINTS, method: 'minmax', aggregate: agg },
        ctl.signal,
      );
      // A full read replaced what this poll continued from: drop the poll.
      if (current.current !== drawn) return;
      if (!fresh.some((s) => s.steps.length > 0)) return;
      const merged = start === null ? fresh : mergeSeriesLists(drawn, fresh);
      if (merged.some((s) => s.steps.length > REREAD_POINTS)) {
        setGeneration((g) => g + 1);
        return;
      }
      current.current = merged;
      setState({ series: merged, loading: false, error: null });
    } catch (err) {
      if (!isAbort(err)) setState((s) => ({ ...s, error: errorText(err) }));
    } finally {
      if (inflight.current === ctl) inflight.current = null;
    }
  }, [runId, metricKey, agg]);

  useEffect(() => {
    if (!live || zoomed) return undefined;
    const timer = window.setInterval(() => void poll(), POLL_MS);
    return () => {
      window.clearInterval(timer);
      inflight.current?.abort();
      inflight.current = null;
    };
  }, [live, zoomed, poll]);

  // The run just ended: one last read picks up its final points.
  const wasLive = useRef(live);
  useEffect(() => {
    if (wasLive.current && !live && !zoomed) void poll();
    wasLive.current = live;
  }, [live, zoomed, poll]);

  const sources = useMemo(
    () => toDrawSeries(state.series, seriesLabel, (s, i) => colorAt(s.rank ?? i)),
    [state.series],
  );
  const opts = useMemo(
    () => ({ xMode: p.view.x, logY: p.view.log, smoothing: p.view.smooth }),
    [p.view.x, p.view.log, p.view.smooth],
  );
  const requested = useMemo<[string | null, string | null]>(() => [from, to], [from, to]);
  const extent = useMemo(() => stepExtent(sources), [sources]);
  const zoom = useMemo(() => zoomRange(from, to, extent), [from, to, extent]);
  const downsampled = state.series.some((s) => s.downsampled);
  const totalPoints = state.series.reduce((a, s) => a + (Number.isFinite(s.totalPoints) ? s.totalPoints : 0), 0);

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
      downsampled={downsampled}
      totalPoints={totalPoints}
      onZoom={p.onZoom}
      onResetZoom={p.onResetZoom}
      note={live && !zoomed ? <span className="live-dot">live</span> : null}
    />
  );
});
