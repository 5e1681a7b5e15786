// @vitest-environment jsdom
import { act, cleanup, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { App } from '../App';
import { installResizeObserver } from '../test/dom';
import { type Call, installFetch, json, problem } from '../test/fakeFetch';
import { ComparePage } from './ComparePage';
import { ExperimentPage } from './ExperimentPage';

vi.mock('uplot', async () => ({ default: (await import('../test/fakeUplot')).FakePlot }));

function goTo(url: string) {
  window.history.pushState(null, '', url);
  window.dispatchEvent(new PopStateEvent('popstate'));
}

async function settle() {
  await act(async () => {
    for (let i = 0; i < 10; i++) await new Promise((r) => setTimeout(r, 0));
  });
}

const experiment = {
  experiment_id: 'e1', name: 'mnist', owner: 'ana', description: '', status: 'active', created_at: '2025-01-01T00:00:00Z',
};

function summary(key: string, last: number | string, min: number | string) {
  return { key, count: 10, first_step: 0, last_step: 9, last_value: last, last_wall_time_ns: '1733000000000000000', min_value: min, min_step: 4, max_value: 5, max_step: 0 };
}

function run(id: string, name: string, lr: string, loss: [number | string, number | string] | null) {
  return {
    run_id: id, experiment_id: 'e1', name, run_key: '', status: 'finished', attempt: 1, seed: null, slurm_job_id: '',
    metadata: {}, created_at: '2025-01-01T00:00:00Z', ended_at: '2025-01-01T01:00:00Z', params: { lr }, tags: {},
    ...(loss ? { summaries: [summary('loss', loss[0], loss[1])] } : {}),
  };
}

function api(extra: (c: Call) => ReturnType<Parameters<typeof installFetch>[0]> = () => undefined) {
  return installFetch((c) => {
    const own = extra(c);
    if (own) return own;
    const p = c.url.pathname;
    if (p === '/api/v1/session') return json({ role: 'admin', key_id: null, auth: false, csrf_token: 'c' });
    if (p === '/api/v1/experiments/e1') return json({ experiment, runs: [], next_runs_page_token: '' });
    if (p === '/api/v1/experiments/e1/best') return json({ runs: [{ run_id: 'r2', run_name: 'two', status: 'finished', value: 0.25, step: 4 }] });
    if (p === '/api/v1/runs') {
      return json({ runs: [run('r1', 'one', '0.1', [1.5, 0.5]), run('r2', 'two', '0.01', ['NaN', 0.25])], next_page_token: '' });
    }
    return undefined;
  });
}

beforeEach(() => installResizeObserver());
afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

describe('experiment page', () => {
  it('shows a bad filter with its message and marks the position', async () => {
    goTo('/experiments/e1?filter=' + encodeURIComponent('params.lr > and'));
    api((c) =>
      c.url.pathname === '/api/v1/runs'
        ? problem(400, 'Invalid argument', { errors: [{ field: 'filter', message: 'expected a string or a number, found and at position 12', position: 12 }] })
        : undefined,
    );
    render(<ExperimentPage experimentId="e1" />);
    await settle();
    const box = screen.getByTestId('filter-error');
    expect(box.textContent).toContain('expected a string or a number, found and at position 12');
    expect(box.dataset.position).toBe('12');
    expect(screen.getByTestId('filter-error-mark').textContent).toBe('a');
    expect(screen.getByText(/line 1, column 13/)).toBeTruthy();
    expect(screen.getByText('Fix the filter to see runs.')).toBeTruthy();
  });

  it('applies a filter from the box into the URL and the request', async () => {
    goTo('/experiments/e1');
    const calls = api();
    render(<ExperimentPage experimentId="e1" />);
    await settle();
    const input = screen.getByTestId('filter-input');
    fireEvent.change(input, { target: { value: 'status = "finished"' } });
    fireEvent.keyDown(input, { key: 'Enter' });
    await settle();
    expect(new URLSearchParams(window.location.search).get('filter')).toBe('status = "finished"');
    const last = calls.filter((c) => c.url.pathname === '/api/v1/runs').at(-1)!;
    expect(last.url.searchParams.get('filter')).toBe('status = "finished"');
    expect(last.url.searchParams.getAll('experiment_id')).toEqual(['e1']);
  });

  it('shows chosen columns, marks the best run and sorts on the server', async () => {
    goTo('/experiments/e1?p=lr&m=min%3Aloss&m=last%3Aloss&best=min%3Amin%3Aloss');
    const calls = api();
    render(<ExperimentPage experimentId="e1" />);
    await settle();
    const table = screen.getByTestId('runs-table');
    const rows = table.querySelectorAll('tbody tr');
    expect(rows).toHaveLength(2);
    const cells = (i: number) => Array.from(rows[i]!.querySelectorAll('td')).map((td) => td.textContent);
    expect(cells(0).slice(5)).toEqual(['0.1', '0.5', '1.5']);
    expect(cells(1).slice(5)).toEqual(['0.01', '★ 0.25', 'NaN']);
    expect(rows[1]!.querySelector('td.best')).not.toBeNull();
    expect(screen.getByTestId('best-goal').textContent).toBe('min (chosen here)');
    expect(screen.getByTestId('best-loss.min').textContent).toContain('min (chosen here): two 0.25 at step 4');
    const best = calls.find((c) => c.url.pathname === '/api/v1/experiments/e1/best')!;
    expect(best.url.searchParams.get('metric')).toBe('loss');
    expect(best.url.searchParams.get('mode')).toBe('min');
    expect(best.url.searchParams.get('on')).toBe('min');

    fireEvent.click(screen.getByRole('button', { name: 'loss.min' }));
    await settle();
    expect(new URLSearchParams(window.location.search).getAll('order')).toEqual(['metrics.loss.min asc']);
    fireEvent.click(screen.getByRole('button', { name: /loss\.min/ }));
    await settle();
    expect(new URLSearchParams(window.location.search).getAll('order')).toEqual(['metrics.loss.min desc']);
    const last = calls.filter((c) => c.url.pathname === '/api/v1/runs').at(-1)!;
    expect(last.url.searchParams.getAll('order_by')).toEqual(['metrics.loss.min desc']);
  });

  it('ranks a new mark by the goal the runs defined and says so', async () => {
    goTo('/experiments/e1?m=min%3Aloss');
    const calls = api((c) => {
      if (c.url.pathname !== '/api/v1/experiments/e1/best') return undefined;
      const mode = c.url.searchParams.get('mode');
      const winner = mode === 'min' ? ['r2', 'two'] : ['r1', 'one'];
      return json({
        runs: [{ run_id: winner[0], run_name: winner[1], status: 'finished', value: 0.5, step: 4 }],
        mode: mode ?? 'max',
        mode_source: mode ? 'request' : 'runs',
      });
    });
    render(<ExperimentPage experimentId="e1" />);
    await settle();
    fireEvent.click(screen.getByTitle(/Mark the experiment's best run/));
    await settle();
    expect(new URLSearchParams(window.location.search).getAll('best')).toEqual(['goal:min:loss']);
    const asked = calls.filter((c) => c.url.pathname === '/api/v1/experiments/e1/best');
    expect(asked).toHaveLength(1);
    expect(asked[0]!.url.searchParams.has('mode')).toBe(false);
    expect(asked[0]!.url.searchParams.get('on')).toBe('min');
    const goal = screen.getByTestId('best-goal');
    expect(goal.textContent).toBe('max (defined by the runs)');
    expect(goal.dataset.source).toBe('runs');
    expect(screen.getByTestId('best-loss.min').textContent).toContain('one 0.5 at step 4');

    // Chosen explicitly, min wins over the runs' goal.
    fireEvent.change(screen.getByLabelText('Goal of loss.min'), { target: { value: 'min' } });
    await settle();
    expect(new URLSearchParams(window.location.search).getAll('best')).toEqual(['min:min:loss']);
    expect(calls.at(-1)!.url.searchParams.get('mode')).toBe('min');
    expect(screen.getByTestId('best-goal').textContent).toBe('min (chosen here)');
    expect(screen.getByTestId('best-loss.min').textContent).toContain('two 0.5 at step 4');
  });

  it('falls back to the column direction, without an error, when the runs define no goal', async () => {
    for (const [why, text] of [
      ['unset', 'min (no goal defined by the runs)'],
      ['ambiguous', 'min (the runs define both min and max)'],
    ] as const) {
      goTo('/experiments/e1?m=last%3Aloss&best=goal%3Alast%3Aloss');
      const calls = api((c) => {
        if (c.url.pathname !== '/api/v1/experiments/e1/best' || c.url.searchParams.has('mode')) return undefined;
        return problem(400, 'Bad Request', {
          detail: "goal is unset and no run defines one for 'loss'",
          errors: [{ field: 'mode', message: why }],
        });
      });
      render(<ExperimentPage experimentId="e1" />);
      await settle();
      const asked = calls.filter((c) => c.url.pathname === '/api/v1/experiments/e1/best');
      expect(asked.map((c) => c.url.searchParams.get('mode'))).toEqual([null, 'min']);
      expect(screen.getByTestId('best-goal').textContent).toBe(text);
      expect(screen.getByTestId('best-loss.last').textContent).toContain('two 0.25 at step 4');
      expect(screen.queryByText(/goal is unset/)).toBeNull();
      expect(document.querySelector('.error-text, .error-box')).toBeNull();
      cleanup();
    }
  });

  it('asks /compare for summaries when the run list has none', async () => {
    goTo('/experiments/e1?m=last%3Aacc');
    const calls = api((c) => {
      if (c.url.pathname === '/api/v1/runs') return json({ runs: [run('r1', 'one', '0.1', null)], next_page_token: '' });
      if (c.url.pathname === '/api/v1/compare') {
        return json({ runs: [run('r1', 'one', '0.1', null)], params: [], metrics: [{ key: 'acc', summaries: [summary('acc', 0.9, 0.1)] }] });
      }
      return undefined;
    });
    render(<ExperimentPage experimentId="e1" />);
    await settle();
    expect(calls.some((c) => c.url.pathname === '/api/v1/compare' && c.url.searchParams.get('run_id') === 'r1')).toBe(true);
    const row = screen.getByTestId('runs-table').querySelector('tbody tr')!;
    expect(row.textContent).toContain('0.9');
  });

  it('puts selected runs in the URL and compares them', async () => {
    goTo('/experiments/e1');
    api();
    render(<ExperimentPage experimentId="e1" />);
    await settle();
    const compare = screen.getByTestId('compare-button') as HTMLButtonElement;
    expect(compare.disabled).toBe(true);
    fireEvent.click(screen.getByLabelText('Select all runs on this page'));
    await settle();
    expect(new URLSearchParams(window.location.search).getAll('sel')).toEqual(['r1', 'r2']);
    fireEvent.click(compare);
    expect(window.location.pathname).toBe('/compare');
    expect(new URLSearchParams(window.location.search).getAll('run')).toEqual(['r1', 'r2']);
  });
});

describe('compare page', () => {
  // acc: goal max, best is r2 (0.9); loss: goal min, best is r1 (0.2); lr: no goal.
  const compared = {
    runs: [run('r1', 'one', '0.1', null), run('r2', 'two', '0.01', null)].map((r) => ({ ...r, metric_goals: { acc: 'max', loss: 'min' } })),
    params: [{ key: 'lr', values: ['0.1', '0.01'], differs: true }],
    metrics: [
      { key: 'acc', summaries: [summary('acc', 0.7, 0.1), summary('acc', 0.9, 0.1)], differs: true, goal: 'max', best_cell: 1 },
      { key: 'loss', summaries: [summary('loss', 0.2, 0.1), summary('loss', 0.4, 0.1)], differs: true, goal: 'min', best_cell: 0 },
      { key: 'lr', summaries: [summary('lr', 0.1, 0.1), null], differs: true, goal: null, best_cell: null },
    ],
  };

  async function showCompare(body: unknown) {
    goTo('/compare?run=r1&run=r2&key=acc');
    api((c) => {
      if (c.url.pathname === '/api/v1/compare') return json(body);
      if (c.url.pathname.startsWith('/api/v1/runs/')) return json({ series: [] });
      return undefined;
    });
    render(<ComparePage />);
    await settle();
    const rows = screen.getByTestId('compare-metrics').querySelectorAll('tbody tr');
    return Object.fromEntries([...rows].map((r) => [r.querySelector('th')!.querySelector('button')!.textContent, r]));
  }

  const marked = (row: Element) => [...row.querySelectorAll('td')].map((td) => td.dataset.best === 'true');

  it('marks the best cell of a max and of a min goal, with the goal by the key', async () => {
    const rows = await showCompare(compared);
    expect(marked(rows.acc!)).toEqual([false, true]);
    const accBest = rows.acc!.querySelector('td[data-best]')!;
    expect(accBest.classList.contains('best')).toBe(true);
    expect(accBest.textContent).toContain('0.9');
    expect(screen.getAllByRole('img', { name: 'best (max)' })).toHaveLength(1);
    expect(rows.acc!.querySelector('th')!.textContent).toBe('acc ↑ max');

    expect(marked(rows.loss!)).toEqual([true, false]);
    expect(rows.loss!.querySelector('td[data-best]')!.textContent).toContain('0.2');
    expect(screen.getAllByRole('img', { name: 'best (min)' })).toHaveLength(1);
    expect(rows.loss!.querySelector('th')!.textContent).toBe('loss ↓ min');
  });

  it('marks nothing in a row without a goal, nor for a server that sends none', async () => {
    let rows = await showCompare(compared);
    expect(marked(rows.lr!)).toEqual([false, false]);
    expect(rows.lr!.querySelector('.best, .best-star, .metric-goal')).toBeNull();
    expect(rows.lr!.querySelector('th')!.textContent).toBe('lr');
    cleanup();

    const older = { ...compared, metrics: compared.metrics.map(({ key, summaries }) => ({ key, summaries })) };
    rows = await showCompare(older);
    expect(Object.keys(rows)).toEqual(['acc', 'loss', 'lr']);
    expect(screen.getByTestId('compare-metrics').querySelector('.best, .best-star, .metric-goal, [data-best]')).toBeNull();
  });

  it('keeps marking the params that differ', async () => {
    await showCompare(compared);
    const row = screen.getByTestId('params-diff').querySelector('tbody tr')!;
    expect(row.getAttribute('data-differs')).toBe('true');
    expect(row.classList.contains('differs')).toBe(true);
  });
});

describe('app shell', () => {
  it('sends a visitor without a session to the login page, keeping where they were', async () => {
    goTo('/runs/r9?x=wall');
    installFetch(() => problem(401, 'Unauthorized'));
    render(<App />);
    await settle();
    expect(window.location.pathname).toBe('/login');
    expect(new URLSearchParams(window.location.search).get('next')).toBe('/runs/r9?x=wall');
    expect(screen.getByTestId('api-key')).toBeTruthy();
  });

  it('shows the role and hides writes from viewers', async () => {
    goTo('/');
    installFetch((c) => {
      if (c.url.pathname === '/api/v1/session') return json({ role: 'viewer', key_id: 'k1', csrf_token: 'c' });
      if (c.url.pathname === '/api/v1/experiments') return json({ experiments: [experiment], next_page_token: '' });
      return undefined;
    });
    render(<App />);
    await settle();
    expect(screen.getByTestId('session-role').textContent).toContain('viewer');
    expect(screen.getByTestId('logout')).toBeTruthy();
    expect(screen.queryByText('New experiment')).toBeNull();
    expect(screen.getByText('mnist')).toBeTruthy();
  });

  it('offers writes to operators and admins', async () => {
    goTo('/');
    installFetch((c) => {
      if (c.url.pathname === '/api/v1/session') return json({ role: 'operator', key_id: 'k2', csrf_token: 'c' });
      if (c.url.pathname === '/api/v1/experiments') return json({ experiments: [], next_page_token: '' });
      return undefined;
    });
    render(<App />);
    await settle();
    expect(screen.getByText('New experiment')).toBeTruthy();
  });
});
