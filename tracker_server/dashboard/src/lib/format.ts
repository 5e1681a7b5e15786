// Text for numbers, steps and times, with every special value spelled out.

/** A metric value: NaN and the infinities as words, 5 significant digits otherwise. */
export function formatValue(v: number | null | undefined): string {
  if (v === null || v === undefined) return '—';
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return 'Inf';
  if (v === -Infinity) return '-Inf';
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (Number.isInteger(v) && a < 1e15) return String(v);
  if (a >= 1e6 || a < 1e-4) return trimExponent(v.toExponential(3));
  return trimZeros(v.toPrecision(5));
}

function trimZeros(s: string): string {
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

function trimExponent(s: string): string {
  const [mant, exp] = s.split('e');
  return `${trimZeros(mant ?? s)}e${exp ?? ''}`;
}

/** A step (or any count): digits grouped by thin spaces, e.g. 1 200 000. */
export function formatStep(v: number | null | undefined): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (!Number.isFinite(v)) return v > 0 ? 'Inf' : '-Inf';
  const s = String(Math.trunc(v));
  const neg = s.startsWith('-');
  const digits = neg ? s.slice(1) : s;
  const grouped = digits.replace(/\B(?=(\d{3})+(?!\d))/g, '\u2009');
  return neg ? `-${grouped}` : grouped;
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

/** An RFC 3339 timestamp as local "YYYY-MM-DD HH:MM:SS"; the text itself if unparsable. */
export function formatTime(rfc3339: string | null | undefined): string {
  if (!rfc3339) return '—';
  const d = new Date(rfc3339);
  if (Number.isNaN(d.getTime())) return rfc3339;
  return formatDate(d);
}

export function formatDate(d: Date): string {
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** A duration in seconds as "1h 02m", "3m 05s", "12.5s". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '—';
  if (seconds < 60) return `${trimZeros(seconds.toFixed(1))}s`;
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h > 0) return `${h}h ${pad(m)}m`;
  return `${m}m ${pad(s % 60)}s`;
}

/** How long a run ran (or has been running, against `now`). */
export function runDuration(createdAt: string, endedAt: string | null, now: number): string {
  const start = Date.parse(createdAt);
  const end = endedAt ? Date.parse(endedAt) : now;
  if (Number.isNaN(start) || Number.isNaN(end)) return '—';
  return formatDuration((end - start) / 1000);
}

/** Byte counts as "1.5 GiB". */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${trimZeros(v.toFixed(1))} ${units[i]}`;
}

/** Short axis labels: 1500 -> 1.5k, 2000000 -> 2M; small values as formatValue. */
export function formatCompact(v: number): string {
  if (!Number.isFinite(v)) return formatValue(v);
  const a = Math.abs(v);
  const units: [number, string][] = [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
  for (const [size, suffix] of units) {
    if (a >= size) {
      const n = v / size;
      const digits = Math.abs(n) >= 100 ? 0 : Math.abs(n) >= 10 ? 1 : 2;
      return `${trimZeros(n.toFixed(digits))}${suffix}`;
    }
  }
  return formatValue(v);
}
