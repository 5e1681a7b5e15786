import { describe, expect, it } from 'vitest';
import { formatBytes, formatCompact, formatDuration, formatStep, formatTime, formatValue } from './format';

describe('formatValue', () => {
  it('spells out the special floats', () => {
    expect(formatValue(NaN)).toBe('NaN');
    expect(formatValue(Infinity)).toBe('Inf');
    expect(formatValue(-Infinity)).toBe('-Inf');
    expect(formatValue(null)).toBe('—');
    expect(formatValue(undefined)).toBe('—');
  });

  it('keeps five significant digits and drops trailing zeros', () => {
    expect(formatValue(0.123456789)).toBe('0.12346');
    expect(formatValue(2.5)).toBe('2.5');
    expect(formatValue(-3.14159265)).toBe('-3.1416');
    expect(formatValue(0)).toBe('0');
    expect(formatValue(-0)).toBe('0');
    expect(formatValue(42)).toBe('42');
  });

  it('uses exponents for very small and very large values', () => {
    expect(formatValue(0.00001234)).toBe('1.234e-5');
    expect(formatValue(1.5e20)).toBe('1.5e+20');
    expect(formatValue(2e-7)).toBe('2e-7');
  });
});

describe('formatStep', () => {
  it('groups digits and names the specials', () => {
    expect(formatStep(1200000)).toBe('1\u2009200\u2009000');
    expect(formatStep(-4500)).toBe('-4\u2009500');
    expect(formatStep(7)).toBe('7');
    expect(formatStep(NaN)).toBe('—');
    expect(formatStep(Infinity)).toBe('Inf');
  });
});

describe('formatCompact', () => {
  it('abbreviates thousands and millions', () => {
    expect(formatCompact(1500)).toBe('1.5k');
    expect(formatCompact(2000000)).toBe('2M');
    expect(formatCompact(12345)).toBe('12.3k');
    expect(formatCompact(250)).toBe('250');
    expect(formatCompact(0.5)).toBe('0.5');
    expect(formatCompact(NaN)).toBe('NaN');
  });
});

describe('times and sizes', () => {
  it('formats durations', () => {
    expect(formatDuration(12.54)).toBe('12.5s');
    expect(formatDuration(185)).toBe('3m 05s');
    expect(formatDuration(3 * 3600 + 120)).toBe('3h 02m');
    expect(formatDuration(-1)).toBe('—');
  });

  it('leaves an unparsable timestamp as it is', () => {
    expect(formatTime('yesterday')).toBe('yesterday');
    expect(formatTime(null)).toBe('—');
    expect(formatTime('2025-01-02T03:04:05Z')).toMatch(/^2025-01-0[12] \d\d:04:05$/);
  });

  it('formats bytes', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(80 * 1024 ** 3)).toBe('80 GiB');
    expect(formatBytes(1536)).toBe('1.5 KiB');
  });
});
