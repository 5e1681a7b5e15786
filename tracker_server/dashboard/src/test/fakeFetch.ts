// A fetch stand-in for tests: routes by method and path, records every call.
import { vi } from 'vitest';

export interface Call {
  method: string;
  url: URL;
  headers: Record<string, string>;
  body: unknown;
  credentials: RequestCredentials | undefined;
}

export type Responder = (call: Call) => { status?: number; body?: unknown; type?: string } | undefined;

export function json(body: unknown, status = 200) {
  return { status, body };
}

export function problem(status: number, title: string, extra: Record<string, unknown> = {}) {
  return { status, body: { type: 'about:blank', title, status, ...extra }, type: 'application/problem+json' };
}

/** Installs a fetch that asks `respond` for each request; unknown requests get a 404 problem. */
export function installFetch(respond: Responder): Call[] {
  const calls: Call[] = [];
  const fake = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = new URL(String(input), 'http://dashboard.test');
    const call: Call = {
      method: (init.method ?? 'GET').toUpperCase(),
      url,
      headers: { ...(init.headers as Record<string, string>) },
      body: typeof init.body === 'string' ? JSON.parse(init.body) : undefined,
      credentials: init.credentials,
    };
    calls.push(call);
    if (init.signal?.aborted) throw new DOMException('aborted', 'AbortError');
    const r = respond(call) ?? problem(404, 'Not Found', { detail: url.pathname });
    const status = r.status ?? 200;
    return new Response(r.body === undefined ? null : JSON.stringify(r.body), {
      status,
      headers: { 'Content-Type': r.type ?? 'application/json' },
    });
  });
  vi.stubGlobal('fetch', fake);
  return calls;
}
