import { describe, expect, it } from 'vitest';
import { emaSmooth } from './smoothing';

describe('emaSmooth', () => {
  it('returns the values unchanged at weight 0', () => {
    expect(Array.from(emaSmooth([1, 5, 3], 0))).toEqual([1, 5, 3]);
  });

  it('is debiased: the first value is kept, a constant stays constant', () => {
    const out = emaSmooth([4, 4, 4, 4], 0.9);
    for (const v of out) expect(v).toBeCloseTo(4, 12);
  });

  it('matches the debiased EMA formula', () => {
    const w = 0.5;
    const out = emaSmooth([0, 10], w);
    // avg1 = 0, avg2 = 0.5*0 + 0.5*10 = 5; debias 1 - 0.25 = 0.75
    expect(out[0]).toBe(0);
    expect(out[1]).toBeCloseTo(5 / 0.75, 12);
  });

  it('passes NaN and infinities through without poisoning later points', () => {
    const out = emaSmooth([1, NaN, Infinity, -Infinity, 1], 0.6);
    expect(out[0]).toBe(1);
    expect(Number.isNaN(out[1])).toBe(true);
    expect(out[2]).toBe(Infinity);
    expect(out[3]).toBe(-Infinity);
    expect(out[4]).toBeCloseTo(1, 12);
  });

  it('clamps weights outside [0, 1)', () => {
    expect(Array.from(emaSmooth([1, 2], -3))).toEqual([1, 2]);
    const out = emaSmooth([1, 2], 5);
    expect(out[0]).toBeCloseTo(1, 12);
    expect(out[1]).toBeGreaterThan(1);
    expect(out[1]).toBeLessThan(2);
  });
});
