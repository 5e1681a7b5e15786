import { describe, expect, it } from 'vitest';
import {
  compareViewQuery,
  experimentViewQuery,
  experimentsViewQuery,
  metricField,
  paramField,
  parseCompareView,
  parseExperimentView,
  parseExperimentsView,
  parseOrder,
  parseRunView,
  quoteName,
  runViewQuery,
  toggleOrder,
} from './urlState';

describe('run view', () => {
  it('has defaults and an empty query for them', () => {
    const v = parseRunView('');
    expect(v).toEqual({ x: 'step', log: false, smooth: 0, from: null, to: null, agg: 'per_rank', q: '' });
    expect(runViewQuery(v)).toBe('');
  });

  it('round-trips every setting', () => {
    const v = { x: 'wall' as const, log: true, smooth: 0.85, from: '100', to: '9007199254740993', agg: 'mean' as const, q: 'val/' };
    const q = runViewQuery(v);
    expect(q).toBe('?x=wall&log=1&smooth=0.85&from=100&to=9007199254740993&agg=mean&q=val%2F');
    expect(parseRunView(q)).toEqual(v);
  });

  it('falls back to defaults for bad values', () => {
    const v = parseRunView('?x=bogus&log=yes&smooth=3&from=1e3&to=abc&agg=median');
    expect(v).toEqual({ x: 'step', log: false, smooth: 0, from: null, to: null, agg: 'per_rank', q: '' });
  });

  it('puts a reversed zoom range in order', () => {
    const v = parseRunView('?from=500&to=-20');
    expect([v.from, v.to]).toEqual(['-20', '500']);
  });

  it('rounds smoothing to two decimals', () => {
    expect(parseRunView('?smooth=0.123456').smooth).toBe(0.12);
  });
});

describe('experiment view', () => {
  it('round-trips filter, order, columns, best marks, selection and tokens', () => {
    const v = {
      filter: 'params.lr > 0.001 and tags.model = "resnet"',
      order: ['metrics.`loss`.min asc'],
      params: ['lr', 'optimizer.beta'],
      metrics: [{ key: 'loss', agg: 'min' as const }, { key: 'a:b', agg: 'last' as const }],
      best: [
        { key: 'loss', agg: 'min' as const, mode: 'min' as const },
        { key: 'a:b', agg: 'last' as const, mode: 'max' as const },
        { key: 'acc', agg: 'max' as const, mode: 'goal' as const },
      ],
      sel: ['r1', 'r2'],
      tok: ['t1', 't2'],
    };
    const q = experimentViewQuery(v);
    expect(parseExperimentView(q)).toEqual(v);
    expect(experimentViewQuery(parseExperimentView(q))).toBe(q);
  });

  it('drops malformed and duplicate entries', () => {
    const v = parseExperimentView(
      '?m=median:loss&m=min:loss&m=min:loss&m=acc&best=up:last:loss&best=min:acc&best=max:max:acc&best=min:max:acc&sel=a&sel=a&order=&p=lr&p=lr',
    );
    expect(v.metrics).toEqual([{ key: 'loss', agg: 'min' }, { key: 'acc', agg: 'last' }]);
    expect(v.best).toEqual([{ key: 'acc', agg: 'max', mode: 'max' }]);
    expect(v.sel).toEqual(['a']);
    expect(v.order).toEqual([]);
    expect(v.params).toEqual(['lr']);
  });

  it('keeps at most three order_by entries', () => {
    expect(parseExperimentView('?order=a&order=b&order=c&order=d').order).toEqual(['a', 'b', 'c']);
  });
});

describe('order_by helpers', () => {
  it('quotes names the filter language cannot read bare', () => {
    expect(quoteName('lr')).toBe('lr');
    expect(quoteName('val.acc')).toBe('`val.acc`');
    expect(quoteName('we`ird')).toBe('`we``ird`');
    expect(paramField('optimizer.lr')).toBe('params.`optimizer.lr`');
    expect(metricField({ key: 'train/loss', agg: 'max' })).toBe('metrics.`train/loss`.max');
    expect(metricField({ key: 'loss', agg: 'last' })).toBe('metrics.loss.last');
  });

  it('parses and toggles directions', () => {
    expect(parseOrder('created_at desc')).toEqual({ field: 'created_at', desc: true });
    expect(parseOrder('params.lr')).toEqual({ field: 'params.lr', desc: false });
    expect(toggleOrder([], 'name')).toEqual(['name asc']);
    expect(toggleOrder(['name asc'], 'name')).toEqual(['name desc']);
    expect(toggleOrder(['name desc'], 'name')).toEqual(['name asc']);
    expect(toggleOrder(['name desc'], 'status')).toEqual(['status asc']);
    expect(toggleOrder([], 'created_at', true)).toEqual(['created_at desc']);
  });
});

describe('compare view', () => {
  it('round-trips', () => {
    const v = { runs: ['a', 'b'], key: 'loss', diff: true, x: 'step' as const, log: false, smooth: 0.5, from: '1', to: '2' };
    const q = compareViewQuery(v);
    expect(q).toBe('?run=a&run=b&key=loss&smooth=0.5&from=1&to=2&diff=1');
    expect(parseCompareView(q)).toEqual(v);
  });

  it('deduplicates runs', () => {
    expect(parseCompareView('?run=a&run=a&run=&run=b').runs).toEqual(['a', 'b']);
  });
});

describe('experiments view', () => {
  it('round-trips and defaults', () => {
    expect(parseExperimentsView('')).toEqual({ owner: '', status: '', prefix: '', sort: '-created', tok: [] });
    const v = { owner: 'ana', status: 'active' as const, prefix: 'mn', sort: 'name' as const, tok: ['x'] };
    expect(parseExperimentsView(experimentsViewQuery(v))).toEqual(v);
    expect(parseExperimentsView('?status=gone&sort=size')).toMatchObject({ status: '', sort: '-created' });
  });
});
