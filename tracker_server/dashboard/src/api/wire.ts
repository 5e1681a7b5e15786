// Decoding of the JSON encodings the API uses for numbers that JSON cannot carry.
import type { WireFloat, WireInt64 } from './types';

/** A float from its wire form: "NaN", "Infinity", "-Infinity" or a number. */
export function parseFloatWire(v: WireFloat | string | null | undefined): number {
  if (typeof v === 'number') return v;
  if (v === 'NaN') return NaN;
  if (v === 'Infinity') return Infinity;
  if (v === '-Infinity') return -Infinity;
  if (typeof v === 'string' && v.trim() !== '') {
    const n = Number(v);
    if (!Number.isNaN(n)) return n;
  }
  return NaN;
}

/** An int64 as a JS number (exact up to 2^53; larger values are rounded for drawing). */
export function parseInt64(v: WireInt64 | null | undefined): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return Number(v);
  return NaN;
}

/** An int64 as its exact decimal string (for values sent back to the server). */
export function int64Text(v: WireInt64): string {
  return typeof v === 'number' ? String(Math.trunc(v)) : v;
}

/** The decimal string of an exact int64 plus one; BigInt keeps values beyond 2^53 exact. */
export function int64Next(v: string): string {
  return (BigInt(v) + 1n).toString();
}

export function floatColumn(values: readonly WireFloat[]): Float64Array {
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = parseFloatWire(values[i]);
  return out;
}

export function int64Column(values: readonly WireInt64[]): Float64Array {
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    out[i] = typeof v === 'number' ? v : Number(v);
  }
  return out;
}

/** Nanosecond wall times as seconds (what the time axis draws). */
export function wallSecondsColumn(values: readonly WireInt64[]): Float64Array {
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    out[i] = (typeof v === 'number' ? v : Number(v)) / 1e9;
  }
  return out;
}
