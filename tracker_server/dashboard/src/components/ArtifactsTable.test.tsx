// @vitest-environment jsdom
import { cleanup, render } from '@testing-library/react';
import { afterEach, describe, expect, it } from 'vitest';
import { listArtifacts } from '../api';
import { installFetch, json } from '../test/fakeFetch';
import { ArtifactsTable } from './ArtifactsTable';

afterEach(cleanup);

const wire = (over: Record<string, unknown>) => ({
  run_id: 'r1',
  uri: '/shared/c.ckpt',
  kind: 'checkpoint',
  step: 10,
  size_bytes: 2048,
  sha256: '',
  metadata: {},
  rank: 0,
  created_at: '2025-01-01T00:00:00Z',
  verify_state: 'unverified',
  verify_detail: '',
  verified_at: null,
  ...over,
});

describe('listArtifacts', () => {
  it('follows every page and decodes int64 text exactly', async () => {
    const calls = installFetch((c) =>
      c.url.searchParams.get('page_token')
        ? json({ artifacts: [wire({ uri: '/b', step: '9007199254740993', size_bytes: null })], next_page_token: '' })
        : json({ artifacts: [wire({ uri: '/a', step: null })], next_page_token: 'p2' }),
    );
    const got = await listArtifacts('r1');
    expect(calls.map((c) => c.url.pathname)).toEqual(['/api/v1/runs/r1/artifacts', '/api/v1/runs/r1/artifacts']);
    expect(got.map((a) => [a.uri, a.step, a.sizeBytes])).toEqual([
      ['/a', null, 2048],
      ['/b', '9007199254740993', null],
    ]);
  });
});

describe('ArtifactsTable', () => {
  it('shows step, kind, size, uri and the verified state of each artifact', async () => {
    installFetch(() =>
      json({
        artifacts: [
          wire({ uri: '/shared/ok.ckpt', verify_state: 'ok', verified_at: '2025-01-02T00:00:00Z' }),
          wire({ uri: '/shared/gone.ckpt', step: 20, verify_state: 'missing', verify_detail: 'does not exist', verified_at: '2025-01-02T00:00:00Z' }),
          wire({ uri: 's3://b/<img src=x onerror=alert(1)>', kind: 'model', step: null, size_bytes: null }),
        ],
        next_page_token: '',
      }),
    );
    const { getByTestId } = render(<ArtifactsTable artifacts={await listArtifacts('r1')} />);
    const rows = [...getByTestId('artifacts-table').querySelectorAll('tbody tr')].map((tr) =>
      [...tr.querySelectorAll('td')].map((td) => td.textContent),
    );
    expect(rows).toEqual([
      ['10', 'checkpoint', '2 KiB', '/shared/ok.ckpt', 'ok'],
      ['20', 'checkpoint', '2 KiB', '/shared/gone.ckpt', 'missing'],
      ['—', 'model', '—', 's3://b/<img src=x onerror=alert(1)>', 'not verified'],
    ]);
    expect(document.querySelector('img')).toBeNull(); // names are text, never HTML
    const badges = [...document.querySelectorAll('[data-testid="verify-state"]')];
    expect(badges[1]?.className).toContain('verify-missing');
    expect(badges[1]?.getAttribute('title')).toContain('does not exist');
  });

  it('says so when there are none', () => {
    const { container } = render(<ArtifactsTable artifacts={[]} />);
    expect(container.textContent).toContain('no artifacts');
  });
});
