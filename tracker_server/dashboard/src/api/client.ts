// fetch with the API's conventions: JSON in and out, problem+json errors, the session
// cookie, the CSRF header on state-changing requests, and one hook for 401.
import { ApiError, problemFromResponse } from './problem';

export type QueryValue = string | number | boolean | null | undefined;
export type Query = Record<string, QueryValue | readonly QueryValue[]>;

interface ClientState {
  base: string;
  csrfToken: string | null;
  onUnauthorized: (() => void) | null;
}

const state: ClientState = { base: '/api/v1', csrfToken: null, onUnauthorized: null };

/** Where the API lives (tests point it elsewhere). */
export function setApiBase(base: string): void {
  state.base = base.replace(/\/$/, '');
}

/** The token sent as X-CSRF-Token with every state-changing request. */
export function setCsrfToken(token: string | null): void {
  state.csrfToken = token;
}

/** Called on every 401 response (the app shows the login page). */
export function setUnauthorizedHandler(handler: (() => void) | null): void {
  state.onUnauthorized = handler;
}

/** "a=1&b=x&b=y": arrays repeat the name, empty values are left out. */
export function buildQuery(query: Query | undefined): string {
  if (!query) return '';
  const params = new URLSearchParams();
  for (const [name, raw] of Object.entries(query)) {
    const values = Array.isArray(raw) ? raw : [raw];
    for (const v of values as readonly QueryValue[]) {
      if (v === null || v === undefined || v === '') continue;
      params.append(name, String(v));
    }
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  signal?: AbortSignal;
  /** A 401 from this request is an answer, not a reason to show the login page. */
  quietUnauthorized?: boolean;
}

export async function request<T>(
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
  path: string,
  opts: RequestOptions = {},
): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && state.csrfToken) headers['X-CSRF-Token'] = state.csrfToken;
  let res: Response;
  try {
    res = await fetch(state.base + path + buildQuery(opts.query), {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      credentials: 'same-origin',
      signal: opts.signal,
    });
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError(0, { title: 'Network error', detail: String(err) });
  }
  if (!res.ok) {
    const error = await problemFromResponse(res);
    if (res.status === 401 && !opts.quietUnauthorized) state.onUnauthorized?.();
    throw error;
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

/** An aborted request (a newer one replaced it): not an error to show. */
export function isAbort(err: unknown): boolean {
  return err instanceof DOMException && err.name === 'AbortError';
}
