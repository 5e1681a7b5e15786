// Appending the points a live poll brings to the series already drawn.
import type { Series } from '../api/model';

function concat(a: Float64Array, keep: number, b: Float64Array): Float64Array {
  const out = new Float64Array(keep + b.length);
  out.set(a.subarray(0, keep));
  out.set(b, keep);
  return out;
}

function concatOptional(
  a: Float64Array | null,
  aValues: Float64Array,
  keep: number,
  b: Float64Array | null,
  bValues: Float64Array,
): Float64Array | null {
  if (!a && !b) return null;
  // A side without a band (points that were not downsampled) contributes its values as
  // a zero-width band, so the band stays continuous.
  return concat(a ?? aValues, keep, b ?? bValues);
}

/** First index whose step is >= `step` (steps are strictly increasing). */
function lowerBound(steps: Float64Array, step: number): number {
  let lo = 0;
  let hi = steps.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((steps[mid] as number) < step) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * `old` followed by `fresh`: points of `old` at or after fresh's first step are replaced
 * (a re-read of the last steps, or a resumed attempt that superseded them).
 */
export function appendSeries(old: Series, fresh: Series): Series {
  const n = fresh.steps.length;
  if (n === 0) return old;
  const keep = lowerBound(old.steps, fresh.steps[0] as number);
  const replaced = old.steps.length - keep;
  return {
    ...old,
    steps: concat(old.steps, keep, fresh.steps),
    values: concat(old.values, keep, fresh.values),
    wallS: concat(old.wallS, keep, fresh.wallS),
    minValues: concatOptional(old.minValues, old.values, keep, fresh.minValues, fresh.values),
    maxValues: concatOptional(old.maxValues, old.values, keep, fresh.maxValues, fresh.values),
    downsampled: old.downsampled || fresh.downsampled,
    totalPoints: Math.max(0, old.totalPoints - replaced) + fresh.totalPoints,
    lastStep: fresh.lastStep ?? old.lastStep,
  };
}

function seriesId(s: Series): string {
  return `${s.aggregate}:${s.rank ?? ''}`;
}

/** Merges a poll's series into the drawn ones, matching by (aggregate, rank). */
export function mergeSeriesLists(old: Series[], fresh: Series[]): Series[] {
  const byId = new Map(fresh.map((s) => [seriesId(s), s]));
  const out = old.map((s) => {
    const f = byId.get(seriesId(s));
    byId.delete(seriesId(s));
    return f ? appendSeries(s, f) : s;
  });
  // A rank that started logging after the first read.
  for (const s of byId.values()) if (s.steps.length > 0) out.push(s);
  return out.sort((a, b) => (a.rank ?? -1) - (b.rank ?? -1));
}

/**
 * The step a live poll starts at: one past the smallest last step of all series, so a
 * rank that lags behind loses nothing; null when nothing was read yet.
 */
export function nextPollStart(series: Series[]): string | null {
  let min: bigint | null = null;
  for (const s of series) {
    if (s.lastStep === null) continue;
    const v = BigInt(s.lastStep);
    if (min === null || v < min) min = v;
  }
  return min === null ? null : (min + 1n).toString();
}
