// @vitest-environment jsdom
import { act, cleanup, render } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { DrawSeries } from '../lib/chartData';
import { installResizeObserver } from '../test/dom';
import { FakePlot } from '../test/fakeUplot';
import { ChartFrame, type ChartFrameProps } from './ChartFrame';

vi.mock('uplot', async () => ({ default: (await import('../test/fakeUplot')).FakePlot }));

const f = (xs: number[]) => Float64Array.from(xs);

function source(label: string, steps: number[], band = false): DrawSeries {
  return {
    label,
    color: '#1f77b4',
    steps: f(steps),
    wallS: f(steps.map((s) => 100 + s)),
    values: f(steps.map((s) => s / 10)),
    lo: band ? f(steps.map(() => 0)) : null,
    hi: band ? f(steps.map(() => 9)) : null,
  };
}

const base: ChartFrameProps = {
  id: 'chart-loss',
  title: 'loss',
  sources: [],
  opts: { xMode: 'step', logY: false, smoothing: 0 },
  zoom: null,
  requested: [null, null],
  loading: true,
  error: null,
  downsampled: false,
  totalPoints: 0,
};

beforeEach(() => {
  installResizeObserver(640);
  FakePlot.instances = [];
});
afterEach(cleanup);

describe('ChartFrame', () => {
  it('exposes loading state before any data, and builds no chart', () => {
    const { getByTestId } = render(<ChartFrame {...base} />);
    const el = getByTestId('chart-loss');
    expect(el.dataset.loading).toBe('true');
    expect(el.dataset.points).toBe('');
    expect(el.dataset.range).toBe('');
    expect(FakePlot.instances).toHaveLength(0);
    expect(window.__trackerCharts['chart-loss']?.loading).toBe(true);
  });

  it('draws what it was given and says so in attributes and the registry', () => {
    const sources = [source('rank 0', [0, 1, 2, 3]), source('rank 1', [1, 2, 3, 4, 5], true)];
    const { getByTestId } = render(
      <ChartFrame {...base} sources={sources} loading={false} downsampled totalPoints={9000} requested={['0', '5']} />,
    );
    const el = getByTestId('chart-loss');
    expect(el.dataset.loading).toBe('false');
    expect(el.dataset.points).toBe('4,5');
    expect(el.dataset.range).toBe('0-5');
    expect(el.dataset.requestedRange).toBe('0-5');
    expect(el.dataset.downsampled).toBe('true');
    expect(el.dataset.totalPoints).toBe('9000');
    expect(FakePlot.instances).toHaveLength(1);
    const u = FakePlot.instances[0]!;
    expect(u.width).toBe(640);
    // x + band (hi, lo) + two lines
    expect(u.data).toHaveLength(5);
    expect(u.opts.bands).toHaveLength(1);
    const reg = window.__trackerCharts['chart-loss']!;
    expect(reg.points).toEqual([4, 5]);
    expect(reg.series).toEqual(['rank 0', 'rank 1']);
    expect(reg.drawnAt).not.toBeNull();
    expect(() => {
      (reg as { loading: boolean }).loading = true;
    }).toThrow();
  });

  it('feeds new data to the same chart and rebuilds it only when its shape changes', () => {
    const props = { ...base, loading: false, sources: [source('rank 0', [0, 1])] };
    const { rerender } = render(<ChartFrame {...props} />);
    rerender(<ChartFrame {...props} sources={[source('rank 0', [0, 1, 2])]} />);
    expect(FakePlot.instances).toHaveLength(1);
    expect(FakePlot.instances[0]!.setDataCalls).toBe(1);
    rerender(<ChartFrame {...props} opts={{ ...props.opts, logY: true }} sources={[source('rank 0', [0, 1, 2])]} />);
    expect(FakePlot.instances).toHaveLength(2);
    expect(FakePlot.instances[0]!.destroyed).toBe(true);
  });

  it('turns a drag into a step range and shows a zoom at once', () => {
    const onZoom = vi.fn();
    const props = { ...base, loading: false, sources: [source('rank 0', [0, 50, 100, 150])], onZoom };
    const { rerender } = render(<ChartFrame {...props} />);
    const u = FakePlot.instances[0]!;
    act(() => u.drag(20.5, 60));
    expect(onZoom).toHaveBeenCalledWith([21, 80]);
    expect(u.select.width).toBe(0);
    act(() => u.drag(10, 1));
    expect(onZoom).toHaveBeenCalledTimes(1);
    rerender(<ChartFrame {...props} zoom={[21, 80]} />);
    expect(u.scales.x).toEqual({ min: 21, max: 80 });
  });

  it('maps a drag on a wall-time axis to the steps drawn there', () => {
    const onZoom = vi.fn();
    render(
      <ChartFrame
        {...base}
        loading={false}
        opts={{ xMode: 'wall', logY: false, smoothing: 0 }}
        sources={[source('rank 0', [0, 10, 20, 30])]}
        onZoom={onZoom}
      />,
    );
    act(() => FakePlot.instances[0]!.drag(105, 20));
    expect(onZoom).toHaveBeenCalledWith([10, 20]);
  });

  it('resets the zoom on double-click', () => {
    const onResetZoom = vi.fn();
    render(<ChartFrame {...base} loading={false} sources={[source('s', [0, 1])]} onResetZoom={onResetZoom} />);
    FakePlot.instances[0]!.over.dispatchEvent(new MouseEvent('dblclick', { bubbles: true }));
    expect(onResetZoom).toHaveBeenCalledOnce();
  });

  it('renders labels as text, never as markup', () => {
    const { container } = render(
      <ChartFrame {...base} title={'<img src=x onerror=alert(1)>'} loading={false} sources={[source('<b>rank</b>', [0])]} />,
    );
    expect(container.querySelector('img')).toBeNull();
    expect(container.querySelector('b')).toBeNull();
    expect(container.textContent).toContain('<b>rank</b>');
  });

  it('counts NaN and infinite values', () => {
    const s = source('s', [0, 1, 2]);
    s.values = f([NaN, Infinity, 1]);
    const { getByText } = render(<ChartFrame {...base} loading={false} sources={[s]} />);
    expect(getByText(/2 NaN\/Inf/)).toBeTruthy();
  });
});
