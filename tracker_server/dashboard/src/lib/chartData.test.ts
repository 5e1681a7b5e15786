import { describe, expect, it } from 'vitest';
import { buildChart, type DrawSeries, plotValue, selectionToSteps, stepExtent, unionX } from './chartData';

const f = (xs: number[]) => Float64Array.from(xs);

function series(steps: number[], values: number[], extra: Partial<DrawSeries> = {}): DrawSeries {
  return {
    label: 's',
    color: '#1f77b4',
    steps: f(steps),
    wallS: f(steps.map((s) => 1000 + s)),
    values: f(values),
    lo: null,
    hi: null,
    ...extra,
  };
}

const linear = { xMode: 'step' as const, logY: false, smoothing: 0 };

describe('plotValue', () => {
  it('turns undrawable values into gaps', () => {
    expect(plotValue(NaN, false)).toBeNull();
    expect(plotValue(Infinity, false)).toBeNull();
    expect(plotValue(-Infinity, false)).toBeNull();
    expect(plotValue(0, true)).toBeNull();
    expect(plotValue(-2, true)).toBeNull();
    expect(plotValue(-2, false)).toBe(-2);
    expect(plotValue(3, true)).toBe(3);
  });
});

describe('buildChart', () => {
  it('uses the x column as it is when all series share it', () => {
    const a = series([0, 1, 2], [1, 2, 3], { label: 'rank 0' });
    const b = series([0, 1, 2], [4, NaN, 6], { label: 'rank 1' });
    const c = buildChart([a, b], linear);
    expect(Array.from(c.data[0])).toEqual([0, 1, 2]);
    expect(c.data[1]).toEqual([1, 2, 3]);
    expect(c.data[2]).toEqual([4, null, 6]);
    expect(c.series.map((s) => [s.kind, s.label])).toEqual([['line', 'rank 0'], ['line', 'rank 1']]);
    expect(c.points).toEqual([3, 3]);
    expect(c.nonFinite).toEqual([0, 1]);
    expect(c.bands).toEqual([]);
  });

  it('aligns series with different steps on their union; missing cells are undefined', () => {
    const a = series([0, 2, 4], [1, 2, 3]);
    const b = series([1, 2, 5], [7, 8, 9]);
    const c = buildChart([a, b], linear);
    expect(Array.from(c.data[0])).toEqual([0, 1, 2, 4, 5]);
    expect(c.data[1]).toEqual([1, undefined, 2, 3, undefined]);
    expect(c.data[2]).toEqual([undefined, 7, 8, undefined, 9]);
    expect(c.points).toEqual([3, 3]);
  });

  it('draws a band from the min/max columns before the lines', () => {
    const mean = series([0, 1], [2, 3], {
      label: 'mean',
      lo: f([1, 2]),
      hi: f([3, 5]),
    });
    const c = buildChart([mean], linear);
    expect(c.series.map((s) => s.kind)).toEqual(['hi', 'lo', 'line']);
    expect(c.data[1]).toEqual([3, 5]);
    expect(c.data[2]).toEqual([1, 2]);
    expect(c.data[3]).toEqual([2, 3]);
    expect(c.bands).toEqual([[1, 2]]);
  });

  it('builds one band per series, indices matching the data columns', () => {
    const band = { lo: f([0, 0]), hi: f([9, 9]) };
    const c = buildChart([series([0, 1], [1, 2], band), series([0, 1], [3, 4]), series([0, 1], [5, 6], band)], linear);
    expect(c.series.map((s) => `${s.kind}${s.source}`)).toEqual(['hi0', 'lo0', 'hi2', 'lo2', 'line0', 'line1', 'line2']);
    expect(c.bands).toEqual([[1, 2], [3, 4]]);
  });

  it('ignores band columns whose length does not match', () => {
    const c = buildChart([series([0, 1], [1, 2], { lo: f([0]), hi: f([1, 2]) })], linear);
    expect(c.bands).toEqual([]);
  });

  it('adds the smoothed line over a faint raw line', () => {
    const c = buildChart([series([0, 1, 2], [0, 10, 0])], { ...linear, smoothing: 0.5 });
    expect(c.series.map((s) => s.kind)).toEqual(['raw', 'line']);
    expect(c.data[1]).toEqual([0, 10, 0]);
    const smooth = c.data[2] as number[];
    expect(smooth[0]).toBe(0);
    expect(smooth[1]).toBeCloseTo(5 / 0.75, 10);
  });

  it('leaves non-positive values out of a log axis', () => {
    const c = buildChart([series([0, 1, 2], [1, 0, -1])], { ...linear, logY: true });
    expect(c.data[1]).toEqual([1, null, null]);
  });

  it('sorts by wall time on a wall-time axis and drops points without one', () => {
    const s = series([0, 1, 2, 3], [10, 11, 12, 13], { wallS: f([5, 3, NaN, 4]) });
    const c = buildChart([s], { ...linear, xMode: 'wall' });
    expect(Array.from(c.data[0])).toEqual([3, 4, 5]);
    expect(c.data[1]).toEqual([11, 13, 10]);
    expect(c.points).toEqual([3]);
  });

  it('draws nothing for no series', () => {
    const c = buildChart([], linear);
    expect(c.series).toEqual([]);
    expect(c.data[0].length).toBe(0);
  });
});

describe('unionX', () => {
  it('merges and deduplicates', () => {
    expect(Array.from(unionX([f([1, 3, 5]), f([2, 3, 6]), f([])]))).toEqual([1, 2, 3, 5, 6]);
  });
});

describe('selections and extents', () => {
  it('selects whole steps on a step axis', () => {
    expect(selectionToSteps([], 'step', 10.2, 99.7)).toEqual([11, 99]);
    expect(selectionToSteps([], 'step', 99.7, 10.2)).toEqual([11, 99]);
    expect(selectionToSteps([], 'step', 10.2, 10.8)).toBeNull();
    expect(selectionToSteps([], 'step', NaN, 3)).toBeNull();
  });

  it('maps a wall-time selection to the steps drawn inside it', () => {
    const a = series([0, 10, 20, 30], [1, 1, 1, 1], { wallS: f([100, 110, 120, 130]) });
    const b = series([5, 15], [1, 1], { wallS: f([104, 126]) });
    expect(selectionToSteps([a, b], 'wall', 103, 121)).toEqual([5, 20]);
    expect(selectionToSteps([a, b], 'wall', 131, 140)).toBeNull();
  });

  it('finds the step extent over series', () => {
    expect(stepExtent([series([3, 9], [0, 0]), series([1, 4], [0, 0]), series([], [])])).toEqual([1, 9]);
    expect(stepExtent([])).toBeNull();
  });
});
