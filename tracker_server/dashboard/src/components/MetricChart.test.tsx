// @vitest-environment jsdom
import { act, cleanup, render } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { installResizeObserver } from '../test/dom';
import { type Call, installFetch, json } from '../test/fakeFetch';
import { FakePlot } from '../test/fakeUplot';
import { MetricChart, POLL_MS } from './MetricChart';

vi.mock('uplot', async () => ({ default: (await import('../test/fakeUplot')).FakePlot }));

const view = { x: 'step' as const, log: false, smooth: 0, from: null, to: null };
const noop = () => undefined;

/** A run whose series grows by `perPoll` steps between reads, for ranks 0 and 1. */
function growingSeries(perPoll: number) {
  let last = 9;
  const respond = (c: Call) => {
    const start = Number(c.url.searchParams.get('start') ?? 0);
    const end = Math.min(last, Number(c.url.searchParams.get('end') ?? last));
    const steps: number[] = [];
    for (let s = start; s <= end; s++) steps.push(s);
    last += perPoll;
    return json({
      series: [0, 1].map((rank) => ({
        rank,
        aggregate: 'per_rank',
        steps,
        values: steps.map((s) => s + rank),
        wall_time_ns: steps.map((s) => String(1733000000000000000n + BigInt(s) * 1000000n)),
        downsampled: false,
        total_points: steps.length,
      })),
    });
  };
  return respond;
}

async function flush() {
  await act(async () => {
    for (let i = 0; i < 5; i++) await Promise.resolve();
  });
}

beforeEach(() => {
  installResizeObserver();
  FakePlot.instances = [];
  vi.useFakeTimers();
});
afterEach(() => {
  cleanup();
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

describe('MetricChart', () => {
  it('reads the series once, downsampled to 2000 points per series', async () => {
    const calls = installFetch(growingSeries(0));
    const { getByTestId } = render(
      <MetricChart runId="r1" metricKey="train/loss" view={view} agg="per_rank" live={false} onZoom={noop} onResetZoom={noop} />,
    );
    await flush();
    expect(calls).toHaveLength(1);
    expect(calls[0]!.url.pathname).toBe('/api/v1/runs/r1/metrics/train%2Floss');
    expect(calls[0]!.url.searchParams.get('max_points')).toBe('2000');
    expect(calls[0]!.url.searchParams.get('aggregate')).toBe('per_rank');
    const el = getByTestId('chart-train/loss');
    expect(el.dataset.points).toBe('10,10');
    expect(el.dataset.range).toBe('0-9');
    await act(async () => {
      vi.advanceTimersByTime(5 * POLL_MS);
    });
    expect(calls).toHaveLength(1);
  });

  it('follows a live run from the last step shown and stops when it ends', async () => {
    const calls = installFetch(growingSeries(5));
    const props = { runId: 'r1', metricKey: 'loss', view, agg: 'per_rank' as const, onZoom: noop, onResetZoom: noop };
    const { getByTestId, rerender } = render(<MetricChart {...props} live />);
    await flush();
    expect(getByTestId('chart-loss').dataset.points).toBe('10,10');

    await act(async () => {
      vi.advanceTimersByTime(POLL_MS);
    });
    await flush();
    expect(calls[1]!.url.searchParams.get('start')).toBe('10');
    expect(calls[1]!.url.searchParams.has('end')).toBe(false);
    expect(getByTestId('chart-loss').dataset.points).toBe('15,15');
    expect(getByTestId('chart-loss').dataset.range).toBe('0-14');

    await act(async () => {
      vi.advanceTimersByTime(POLL_MS);
    });
    await flush();
    expect(calls[2]!.url.searchParams.get('start')).toBe('15');
    expect(getByTestId('chart-loss').dataset.points).toBe('20,20');
    // One chart, fed new columns: no rebuild per poll.
    expect(FakePlot.instances).toHaveLength(1);

    rerender(<MetricChart {...props} live={false} />);
    await flush();
    const afterEnd = calls.length;
    expect(calls[afterEnd - 1]!.url.searchParams.get('start')).toBe('20');
    await act(async () => {
      vi.advanceTimersByTime(5 * POLL_MS);
    });
    expect(calls).toHaveLength(afterEnd);
  });

  it('re-reads a zoomed range at full resolution and does not poll it', async () => {
    const calls = installFetch(growingSeries(5));
    render(
      <MetricChart
        runId="r1"
        metricKey="loss"
        view={{ ...view, from: '2', to: '6' }}
        agg="mean"
        live
        onZoom={noop}
        onResetZoom={noop}
      />,
    );
    await flush();
    expect(calls[0]!.url.searchParams.get('start')).toBe('2');
    expect(calls[0]!.url.searchParams.get('end')).toBe('6');
    expect(calls[0]!.url.searchParams.get('aggregate')).toBe('mean');
    await act(async () => {
      vi.advanceTimersByTime(3 * POLL_MS);
    });
    expect(calls).toHaveLength(1);
    expect(FakePlot.instances[0]!.scales.x).toEqual({ min: 2, max: 6 });
  });

  it('shows a read error in the chart', async () => {
    installFetch(() => ({ status: 500, body: { title: 'Internal', detail: 'boom' }, type: 'application/problem+json' }));
    const { getByText, getByTestId } = render(
      <MetricChart runId="r1" metricKey="loss" view={view} agg="per_rank" live={false} onZoom={noop} onResetZoom={noop} />,
    );
    await flush();
    expect(getByText('Internal: boom')).toBeTruthy();
    expect(getByTestId('chart-loss').dataset.loading).toBe('false');
  });
});
