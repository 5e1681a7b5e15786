// Line colours (Tableau 10: distinct, readable on white) and their translucent bands.

export const PALETTE = [
  '#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd',
  '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf',
] as const;

export function colorAt(i: number): string {
  return PALETTE[((i % PALETTE.length) + PALETTE.length) % PALETTE.length] as string;
}

/** "#rrggbb" with an alpha, as rgba(). */
export function withAlpha(hex: string, alpha: number): string {
  const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
  if (!m) return hex;
  const [r, g, b] = [m[1], m[2], m[3]].map((h) => parseInt(h as string, 16));
  return `rgba(${r}, ${g}, ${b}, ${alpha})`;
}

/** The CSS class that paints a swatch in a palette colour (no inline styles under CSP). */
export function colorClass(color: string): string {
  const i = PALETTE.indexOf(color as (typeof PALETTE)[number]);
  return i < 0 ? 'c-none' : `c${i}`;
}
