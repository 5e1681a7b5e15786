import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { installFetch, json, problem } from '../test/fakeFetch';
import {
  ApiError,
  compareRuns,
  createExperiment,
  finishRun,
  getMetricSeries,
  getRun,
  getSession,
  listExperiments,
  login,
  searchRuns,
  setCsrfToken,
  setUnauthorizedHandler,
} from './index';
import { buildQuery } from './client';
import { int64Next, parseFloatWire, parseInt64 } from './wire';

afterEach(() => {
  vi.unstubAllGlobals();
  setCsrfToken(null);
  setUnauthorizedHandler(null);
});

describe('wire numbers', () => {
  it('decodes protobuf JSON floats', () => {
    expect(parseFloatWire('NaN')).toBeNaN();
    expect(parseFloatWire('Infinity')).toBe(Infinity);
    expect(parseFloatWire('-Infinity')).toBe(-Infinity);
    expect(parseFloatWire(-0)).toBe(-0);
    expect(parseFloatWire('1.5')).toBe(1.5);
    expect(parseFloatWire(null)).toBeNaN();
  });

  it('decodes int64 numbers and strings', () => {
    expect(parseInt64(42)).toBe(42);
    expect(parseInt64('9007199254740993')).toBe(9007199254740992);
    expect(parseInt64('-5')).toBe(-5);
    expect(parseInt64('x')).toBeNaN();
    expect(int64Next('9223372036854775806')).toBe('9223372036854775807');
  });
});

describe('buildQuery', () => {
  it('repeats array names and leaves out empty values', () => {
    expect(buildQuery({ run_id: ['a', 'b'], filter: '', page_token: undefined, n: 0, flag: false })).toBe(
      '?run_id=a&run_id=b&n=0&flag=false',
    );
    expect(buildQuery({})).toBe('');
  });
});

describe('endpoints', () => {
  it('reads a series with special floats, int64 strings and bands', async () => {
    const calls = installFetch(() =>
      json({
        series: [
          {
            rank: null,
            aggregate: 'mean',
            steps: [0, 1, '9007199254740993'],
            values: [1.5, 'NaN', '-Infinity'],
            wall_time_ns: ['1733000000000000000', '1733000001000000000', 1733000002000000000],
            min_values: [1, 'NaN', 'Infinity'],
            max_values: [2, 3, 4],
            downsampled: true,
            total_points: '12345678901',
          },
        ],
      }),
    );
    const [s] = await getMetricSeries('r1', 'train/loss', { start: '10', end: '20', maxPoints: 2000, method: 'minmax', aggregate: 'mean' });
    expect(calls[0]!.url.pathname).toBe('/api/v1/runs/r1/metrics/train%2Floss');
    expect(calls[0]!.url.search).toBe('?start=10&end=20&max_points=2000&method=minmax&aggregate=mean');
    expect(s!.rank).toBeNull();
    expect(Array.from(s!.steps)).toEqual([0, 1, 9007199254740992]);
    expect(s!.values[0]).toBe(1.5);
    expect(s!.values[1]).toBeNaN();
    expect(s!.values[2]).toBe(-Infinity);
    expect(s!.wallS[0]).toBeCloseTo(1733000000, 3);
    expect(s!.minValues![2]).toBe(Infinity);
    expect(Array.from(s!.maxValues!)).toEqual([2, 3, 4]);
    expect(s!.totalPoints).toBe(12345678901);
    expect(s!.lastStep).toBe('9007199254740993');
    expect(s!.downsampled).toBe(true);
  });

  it('drops band columns whose length does not match the steps', async () => {
    installFetch(() =>
      json({ series: [{ rank: 0, aggregate: 'per_rank', steps: [1, 2], values: [1, 2], wall_time_ns: [1, 2], min_values: [1], downsampled: false, total_points: 2 }] }),
    );
    const [s] = await getMetricSeries('r', 'k', {});
    expect(s!.minValues).toBeNull();
    expect(s!.maxValues).toBeNull();
  });

  it('decodes runs: seed as exact text, summaries when present', async () => {
    installFetch(() =>
      json({
        run_id: 'r1', experiment_id: 'e1', name: 'n', run_key: '', status: 'running', attempt: 2,
        seed: '18446744073709551', slurm_job_id: '', metadata: {}, created_at: '2025-01-01T00:00:00Z', ended_at: null,
        params: { lr: '0.1' }, tags: {},
        summaries: [{ key: 'loss', count: 3, first_step: 0, last_step: 2, last_value: 'NaN', last_wall_time_ns: '1733000000000000000', min_value: '-Infinity', min_step: 1, max_value: 2, max_step: 0 }],
      }),
    );
    const r = await getRun('r1');
    expect(r.seed).toBe('18446744073709551');
    expect(r.summaries![0]!.lastValue).toBeNaN();
    expect(r.summaries![0]!.minValue).toBe(-Infinity);
  });

  it('marks runs listed without summaries', async () => {
    const calls = installFetch(() => json({ runs: [{ run_id: 'a', params: {}, tags: {}, metadata: {}, seed: null }], next_page_token: 't2' }));
    const page = await searchRuns({ experimentIds: ['e1', 'e2'], filter: 'params.lr > 0.1', orderBy: ['name asc', 'created_at desc'], pageSize: 50 });
    expect(page.runs[0]!.summaries).toBeNull();
    expect(page.runs[0]!.seed).toBeNull();
    expect(page.nextPageToken).toBe('t2');
    expect(calls[0]!.url.searchParams.getAll('experiment_id')).toEqual(['e1', 'e2']);
    expect(calls[0]!.url.searchParams.getAll('order_by')).toEqual(['name asc', 'created_at desc']);
    expect(calls[0]!.url.searchParams.get('filter')).toBe('params.lr > 0.1');
  });

  it('compares runs with one cell per run', async () => {
    const calls = installFetch(() =>
      json({
        runs: [{ run_id: 'a', params: {}, tags: {}, metadata: {} }, { run_id: 'b', params: {}, tags: {}, metadata: {} }],
        params: [{ key: 'lr', values: ['0.1', null], differs: true }],
        metrics: [{ key: 'loss', summaries: [null, { key: 'loss', count: 1, first_step: 0, last_step: 0, last_value: 1, last_wall_time_ns: 0, min_value: 1, min_step: 0, max_value: 1, max_step: 0 }] }],
      }),
    );
    const c = await compareRuns(['a', 'b']);
    expect(calls[0]!.url.search).toBe('?run_id=a&run_id=b');
    expect(c.params[0]).toEqual({ key: 'lr', values: ['0.1', null], differs: true });
    expect(c.metrics[0]!.summaries[0]).toBeNull();
    expect(c.metrics[0]!.summaries[1]!.lastValue).toBe(1);
    // An older server sends no goal: nothing to mark.
    expect(c.metrics[0]!.goal).toBeNull();
    expect(c.metrics[0]!.bestCell).toBeNull();
  });
});

describe('errors', () => {
  it('reads RFC 9457 problems with field errors and positions', async () => {
    installFetch(() =>
      problem(400, 'Invalid argument', {
        detail: 'filter: unexpected character',
        instance: '/api/v1/runs',
        errors: [{ field: 'filter', message: "unexpected character '!'", position: 7 }],
      }),
    );
    const err = await searchRuns({ experimentIds: ['e'], filter: 'status ! 1' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    const e = err as ApiError;
    expect(e.status).toBe(400);
    expect(e.title).toBe('Invalid argument');
    expect(e.detail).toBe('filter: unexpected character');
    expect(e.instance).toBe('/api/v1/runs');
    expect(e.fieldError('filter')).toEqual({ field: 'filter', message: "unexpected character '!'", position: 7 });
    expect(e.fieldError('order_by')).toBeUndefined();
  });

  it('keeps a non-JSON error body as the detail', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => new Response('upstream timed out', { status: 502, statusText: 'Bad Gateway' })));
    const e = (await listExperiments({}).catch((x: unknown) => x)) as ApiError;
    expect(e.status).toBe(502);
    expect(e.detail).toBe('upstream timed out');
  });

  it('turns FastAPI validation details into text', async () => {
    installFetch(() => ({ status: 422, body: { detail: [{ loc: ['query', 'page_size'], msg: 'too big' }] } }));
    const e = (await listExperiments({ pageSize: 5000 }).catch((x: unknown) => x)) as ApiError;
    expect(e.status).toBe(422);
    expect(e.detail).toContain('too big');
  });

  it('reports a network failure as status 0', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => {
      throw new TypeError('Failed to fetch');
    }));
    const e = (await getRun('x').catch((x: unknown) => x)) as ApiError;
    expect(e).toBeInstanceOf(ApiError);
    expect(e.status).toBe(0);
  });

  it('lets an abort through as an abort', async () => {
    installFetch(() => json({}));
    const ctl = new AbortController();
    ctl.abort();
    const e = await getRun('x', ctl.signal).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DOMException);
  });
});

describe('session and CSRF', () => {
  let unauthorized = 0;
  beforeEach(() => {
    unauthorized = 0;
    setUnauthorizedHandler(() => {
      unauthorized++;
    });
  });

  it('sends the CSRF token on writes only, always with same-origin cookies', async () => {
    const calls = installFetch((c) => (c.method === 'POST' ? json({ experiment_id: 'e' }, 201) : json({ experiments: [], next_page_token: '' })));
    setCsrfToken('tok-1');
    await listExperiments({ owner: 'ana' });
    await createExperiment({ name: 'x', owner: '', description: '' });
    expect(calls[0]!.headers['X-CSRF-Token']).toBeUndefined();
    expect(calls[1]!.headers['X-CSRF-Token']).toBe('tok-1');
    expect(calls[1]!.headers['Content-Type']).toBe('application/json');
    expect(calls[1]!.body).toEqual({ name: 'x', owner: '', description: '' });
    expect(calls.every((c) => c.credentials === 'same-origin')).toBe(true);
  });

  it('signals a 401 from a data request, but not from the session endpoints', async () => {
    installFetch(() => problem(401, 'Unauthorized'));
    await expect(finishRun('r', 'killed')).rejects.toBeInstanceOf(ApiError);
    expect(unauthorized).toBe(1);
    await expect(getSession()).rejects.toBeInstanceOf(ApiError);
    await expect(login('bad')).rejects.toBeInstanceOf(ApiError);
    expect(unauthorized).toBe(1);
  });

  it('sends the key in the body of POST /session, never in the URL', async () => {
    const calls = installFetch(() => json({ role: 'viewer', key_id: 'k1', csrf_token: 'c' }));
    await login('secret-key');
    expect(calls[0]!.method).toBe('POST');
    expect(calls[0]!.url.href).not.toContain('secret');
    expect(calls[0]!.body).toEqual({ api_key: 'secret-key' });
  });
});
