// Exponential moving average smoothing, as TensorBoard draws it.

/**
 * Debiased EMA with weight `w` in [0, 1): out[i] = avg_i / (1 - w^n), where
 * avg_i = w * avg_{i-1} + (1 - w) * v_i over the n finite values so far.
 * Non-finite values (NaN, ±Inf) pass through unchanged and do not enter the average,
 * so a single NaN neither poisons the rest of the line nor disappears from it.
 */
export function emaSmooth(values: ArrayLike<number>, weight: number): Float64Array {
  const n = values.length;
  const out = new Float64Array(n);
  const w = Number.isFinite(weight) ? Math.min(Math.max(weight, 0), 0.999) : 0;
  if (w === 0) {
    for (let i = 0; i < n; i++) out[i] = values[i] as number;
    return out;
  }
  let avg = 0;
  let debias = 1;
  for (let i = 0; i < n; i++) {
    const v = values[i] as number;
    if (!Number.isFinite(v)) {
      out[i] = v;
      continue;
    }
    avg = w * avg + (1 - w) * v;
    debias *= w;
    out[i] = avg / (1 - debias);
  }
  return out;
}
