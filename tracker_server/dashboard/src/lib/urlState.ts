// Every view's state lives in its query string, so a URL shows what it showed.
// Each page has a parse (tolerant: bad values fall back to defaults) and a serialize
// (defaults left out, names in a fixed order, so equal states give equal URLs).
import type { XMode } from './chartData';

type Pairs = [string, string][];

function toQuery(pairs: Pairs): string {
  const p = new URLSearchParams();
  for (const [k, v] of pairs) p.append(k, v);
  const s = p.toString();
  return s ? `?${s}` : '';
}

function params(search: string): URLSearchParams {
  return new URLSearchParams(search.startsWith('?') ? search.slice(1) : search);
}

const INT = /^-?\d{1,19}$/;

function intText(v: string | null): string | null {
  return v !== null && INT.test(v) ? v : null;
}

function smoothValue(v: string | null): number {
  const n = v === null ? NaN : Number(v);
  return Number.isFinite(n) && n > 0 && n < 1 ? Math.round(n * 100) / 100 : 0;
}

function oneOf<T extends string>(v: string | null, allowed: readonly T[], fallback: T): T {
  const s = v ?? '';
  return (allowed as readonly string[]).includes(s) ? (s as T) : fallback;
}

// --- chart settings shared by the run and compare pages ---------------------------------

export interface ChartViewState {
  x: XMode;
  log: boolean;
  /** EMA weight, 0 (off) to 0.99. */
  smooth: number;
  /** Zoomed step range (inclusive, exact decimal text), or null for the whole run. */
  from: string | null;
  to: string | null;
}

function parseChartView(p: URLSearchParams): ChartViewState {
  let from = intText(p.get('from'));
  let to = intText(p.get('to'));
  if (from !== null && to !== null && BigInt(from) > BigInt(to)) [from, to] = [to, from];
  return {
    x: oneOf(p.get('x'), ['step', 'wall'] as const, 'step'),
    log: p.get('log') === '1',
    smooth: smoothValue(p.get('smooth')),
    from,
    to,
  };
}

function chartViewPairs(s: ChartViewState): Pairs {
  const out: Pairs = [];
  if (s.x !== 'step') out.push(['x', s.x]);
  if (s.log) out.push(['log', '1']);
  if (s.smooth > 0) out.push(['smooth', String(s.smooth)]);
  if (s.from !== null) out.push(['from', s.from]);
  if (s.to !== null) out.push(['to', s.to]);
  return out;
}

// --- run page ----------------------------------------------------------------------------

export type RankView = 'per_rank' | 'mean';

export interface RunViewState extends ChartViewState {
  agg: RankView;
  /** Only charts whose key contains this text. */
  q: string;
}

export function parseRunView(search: string): RunViewState {
  const p = params(search);
  return {
    ...parseChartView(p),
    agg: oneOf(p.get('agg'), ['per_rank', 'mean'] as const, 'per_rank'),
    q: p.get('q') ?? '',
  };
}

export function runViewQuery(s: RunViewState): string {
  const out = chartViewPairs(s);
  if (s.agg !== 'per_rank') out.push(['agg', s.agg]);
  if (s.q) out.push(['q', s.q]);
  return toQuery(out);
}

// --- compare page ------------------------------------------------------------------------

export interface CompareViewState extends ChartViewState {
  runs: string[];
  key: string | null;
  /** Show only the params that differ. */
  diff: boolean;
}

export function parseCompareView(search: string): CompareViewState {
  const p = params(search);
  return {
    ...parseChartView(p),
    runs: unique(p.getAll('run').filter(Boolean)),
    key: p.get('key') || null,
    diff: p.get('diff') === '1',
  };
}

export function compareViewQuery(s: CompareViewState): string {
  const out: Pairs = s.runs.map((r) => ['run', r]);
  if (s.key) out.push(['key', s.key]);
  out.push(...chartViewPairs(s));
  if (s.diff) out.push(['diff', '1']);
  return toQuery(out);
}

// --- experiment page ---------------------------------------------------------------------

export type MetricAgg = 'last' | 'min' | 'max';
/** goal: the goal the runs defined for the metric (define_metric); min / max: chosen. */
export type BestMode = 'goal' | 'min' | 'max';

export interface MetricColumn {
  key: string;
  agg: MetricAgg;
}

/** The best run of the experiment by one summary value (a metric column). */
export interface BestMark {
  key: string;
  agg: MetricAgg;
  mode: BestMode;
}

export interface ExperimentViewState {
  filter: string;
  /** order_by entries, e.g. "metrics.`loss`.min asc". */
  order: string[];
  /** Param names shown as columns. */
  params: string[];
  metrics: MetricColumn[];
  /** Metric columns whose best run is marked. */
  best: BestMark[];
  /** Selected run ids (for Compare). */
  sel: string[];
  /** Page tokens from the first page to the current one. */
  tok: string[];
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}

/** "agg:key" -> column; the key may itself contain colons. */
function parseMetricColumn(v: string): MetricColumn | null {
  const i = v.indexOf(':');
  if (i < 0) return v ? { key: v, agg: 'last' } : null;
  const agg = v.slice(0, i);
  const key = v.slice(i + 1);
  if (!key || !['last', 'min', 'max'].includes(agg)) return null;
  return { key, agg: agg as MetricAgg };
}

/** "mode:agg:key", e.g. "goal:last:loss"; the key may itself contain colons. */
function parseBest(v: string): BestMark | null {
  const i = v.indexOf(':');
  const mode = v.slice(0, i);
  if (mode !== 'goal' && mode !== 'min' && mode !== 'max') return null;
  const column = parseMetricColumn(v.slice(i + 1));
  return column && v.slice(i + 1).includes(':') ? { ...column, mode } : null;
}

export function sameColumn(a: MetricColumn, b: MetricColumn): boolean {
  return a.key === b.key && a.agg === b.agg;
}

export function parseExperimentView(search: string): ExperimentViewState {
  const p = params(search);
  const metrics: MetricColumn[] = [];
  for (const v of p.getAll('m')) {
    const c = parseMetricColumn(v);
    if (c && !metrics.some((m) => m.key === c.key && m.agg === c.agg)) metrics.push(c);
  }
  const best: BestMark[] = [];
  for (const v of p.getAll('best')) {
    const b = parseBest(v);
    if (b && !best.some((x) => sameColumn(x, b))) best.push(b);
  }
  return {
    filter: p.get('filter') ?? '',
    order: p.getAll('order').filter(Boolean).slice(0, 3),
    params: unique(p.getAll('p').filter(Boolean)),
    metrics,
    best,
    sel: unique(p.getAll('sel').filter(Boolean)),
    tok: p.getAll('tok').filter(Boolean),
  };
}

export function experimentViewQuery(s: ExperimentViewState): string {
  const out: Pairs = [];
  if (s.filter) out.push(['filter', s.filter]);
  for (const o of s.order) out.push(['order', o]);
  for (const k of s.params) out.push(['p', k]);
  for (const m of s.metrics) out.push(['m', `${m.agg}:${m.key}`]);
  for (const b of s.best) out.push(['best', `${b.mode}:${b.agg}:${b.key}`]);
  for (const r of s.sel) out.push(['sel', r]);
  for (const t of s.tok) out.push(['tok', t]);
  return toQuery(out);
}

/** A field name as the filter language and order_by read it, quoted when needed. */
export function quoteName(name: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ? name : '`' + name.replace(/`/g, '``') + '`';
}

export function paramField(name: string): string {
  return `params.${quoteName(name)}`;
}

export function metricField(c: MetricColumn): string {
  return `metrics.${quoteName(c.key)}.${c.agg}`;
}

/** An order_by entry split into field and direction. */
export function parseOrder(entry: string): { field: string; desc: boolean } {
  const m = /^(.*?)\s+(asc|desc)$/i.exec(entry.trim());
  if (!m) return { field: entry.trim(), desc: false };
  return { field: m[1] as string, desc: (m[2] as string).toLowerCase() === 'desc' };
}

/**
 * The order after a click on a column: the first click sorts ascending (descending for
 * time columns), a second click on the same column flips it.
 */
export function toggleOrder(order: string[], field: string, descFirst = false): string[] {
  const current = order[0] ? parseOrder(order[0]) : null;
  const desc = current && current.field === field ? !current.desc : descFirst;
  return [`${field} ${desc ? 'desc' : 'asc'}`];
}

// --- experiments list --------------------------------------------------------------------

export type ExperimentSort = 'name' | '-name' | 'owner' | '-owner' | 'created' | '-created';

export interface ExperimentsViewState {
  owner: string;
  /** '' is the server's default (created and active); 'all' adds the archived ones. */
  status: '' | 'all' | 'created' | 'active' | 'archived';
  prefix: string;
  /** Client-side order of the page shown. */
  sort: ExperimentSort;
  tok: string[];
}

const EXPERIMENT_SORTS: readonly ExperimentSort[] = [
  'name', '-name', 'owner', '-owner', 'created', '-created',
];

export function parseExperimentsView(search: string): ExperimentsViewState {
  const p = params(search);
  return {
    owner: p.get('owner') ?? '',
    status: oneOf(p.get('status'), ['', 'all', 'created', 'active', 'archived'] as const, ''),
    prefix: p.get('prefix') ?? '',
    sort: oneOf(p.get('sort'), EXPERIMENT_SORTS, '-created'),
    tok: p.getAll('tok').filter(Boolean),
  };
}

export function experimentsViewQuery(s: ExperimentsViewState): string {
  const out: Pairs = [];
  if (s.owner) out.push(['owner', s.owner]);
  if (s.status) out.push(['status', s.status]);
  if (s.prefix) out.push(['prefix', s.prefix]);
  if (s.sort !== '-created') out.push(['sort', s.sort]);
  for (const t of s.tok) out.push(['tok', t]);
  return toQuery(out);
}
