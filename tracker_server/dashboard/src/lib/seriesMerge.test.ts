import { describe, expect, it } from 'vitest';
import type { Series } from '../api/model';
import { appendSeries, mergeSeriesLists, nextPollStart } from './seriesMerge';

function s(rank: number | null, steps: number[], extra: Partial<Series> = {}): Series {
  return {
    rank,
    aggregate: rank === null ? 'mean' : 'per_rank',
    steps: Float64Array.from(steps),
    values: Float64Array.from(steps.map((x) => x * 10)),
    wallS: Float64Array.from(steps.map((x) => 1000 + x)),
    minValues: null,
    maxValues: null,
    downsampled: false,
    totalPoints: steps.length,
    lastStep: steps.length ? String(steps[steps.length - 1]) : null,
    ...extra,
  };
}

describe('appendSeries', () => {
  it('appends new points', () => {
    const out = appendSeries(s(0, [0, 1, 2]), s(0, [3, 4]));
    expect(Array.from(out.steps)).toEqual([0, 1, 2, 3, 4]);
    expect(Array.from(out.values)).toEqual([0, 10, 20, 30, 40]);
    expect(out.totalPoints).toBe(5);
    expect(out.lastStep).toBe('4');
  });

  it('replaces points at or after the first fresh step', () => {
    const fresh = s(0, [2, 3]);
    fresh.values[0] = -1;
    const out = appendSeries(s(0, [0, 1, 2]), fresh);
    expect(Array.from(out.steps)).toEqual([0, 1, 2, 3]);
    expect(Array.from(out.values)).toEqual([0, 10, -1, 30]);
    expect(out.totalPoints).toBe(4);
  });

  it('keeps bands aligned when only one side has them: the other is a zero-width band', () => {
    const old = s(null, [0, 1], { minValues: Float64Array.from([0, 1]), maxValues: Float64Array.from([2, 3]) });
    const out = appendSeries(old, s(null, [2]));
    expect(Array.from(out.minValues ?? [])).toEqual([0, 1, 20]);
    expect(Array.from(out.maxValues ?? [])).toEqual([2, 3, 20]);
    const late = appendSeries(s(0, [0, 1]), s(0, [2], { minValues: Float64Array.from([5]), maxValues: Float64Array.from([25]) }));
    expect(Array.from(late.minValues ?? [])).toEqual([0, 10, 5]);
    expect(Array.from(late.maxValues ?? [])).toEqual([0, 10, 25]);
  });

  it('returns the old series for an empty poll', () => {
    const old = s(0, [0]);
    expect(appendSeries(old, s(0, []))).toBe(old);
  });
});

describe('mergeSeriesLists', () => {
  it('matches ranks, keeps untouched ones and adds new ranks in rank order', () => {
    const out = mergeSeriesLists([s(0, [0, 1]), s(2, [0])], [s(1, [5]), s(0, [2])]);
    expect(out.map((x) => x.rank)).toEqual([0, 1, 2]);
    expect(Array.from(out[0]!.steps)).toEqual([0, 1, 2]);
    expect(Array.from(out[2]!.steps)).toEqual([0]);
  });
});

describe('nextPollStart', () => {
  it('continues after the smallest last step, exactly beyond 2^53', () => {
    expect(nextPollStart([s(0, [0, 9]), s(1, [0, 4])])).toBe('5');
    expect(nextPollStart([s(0, [], { lastStep: '9007199254740993' })])).toBe('9007199254740994');
    expect(nextPollStart([s(0, [])])).toBeNull();
  });
});
