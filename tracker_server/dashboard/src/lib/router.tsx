// A small history-API router: the location as an external store, links, route matching.
import { type AnchorHTMLAttributes, type MouseEvent, useSyncExternalStore } from 'react';

export interface Location {
  pathname: string;
  search: string;
}

const listeners = new Set<() => void>();
let snapshot: Location = read();

function read(): Location {
  return { pathname: window.location.pathname, search: window.location.search };
}

function refresh(): void {
  const next = read();
  if (next.pathname !== snapshot.pathname || next.search !== snapshot.search) {
    snapshot = next;
    for (const l of listeners) l();
  }
}

window.addEventListener('popstate', refresh);

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function useLocation(): Location {
  return useSyncExternalStore(subscribe, () => snapshot);
}

export function currentLocation(): Location {
  return snapshot;
}

/** Goes to `to` (a path with query); `replace` for changes that are not a new view. */
export function navigate(to: string, opts: { replace?: boolean } = {}): void {
  const here = window.location.pathname + window.location.search;
  if (to === here) return;
  if (opts.replace) window.history.replaceState(null, '', to);
  else window.history.pushState(null, '', to);
  refresh();
}

type LinkProps = Omit<AnchorHTMLAttributes<HTMLAnchorElement>, 'href'> & { to: string };

/** An <a> that navigates in the page (a modified click still opens a new tab). */
export function Link({ to, onClick, ...rest }: LinkProps) {
  const handle = (e: MouseEvent<HTMLAnchorElement>) => {
    onClick?.(e);
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) {
      return;
    }
    e.preventDefault();
    navigate(to);
  };
  return <a href={to} onClick={handle} {...rest} />;
}

export type Route =
  | { page: 'experiments' }
  | { page: 'experiment'; experimentId: string }
  | { page: 'run'; runId: string }
  | { page: 'compare' }
  | { page: 'login' }
  | { page: 'not-found' };

function decode(segment: string): string | null {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}

export function matchRoute(pathname: string): Route {
  const parts = pathname.split('/').filter(Boolean);
  if (parts.length === 0) return { page: 'experiments' };
  const [head, id, ...rest] = parts;
  if (rest.length === 0) {
    if (head === 'experiments' && id === undefined) return { page: 'experiments' };
    if (head === 'compare' && id === undefined) return { page: 'compare' };
    if (head === 'login' && id === undefined) return { page: 'login' };
    const value = id === undefined ? null : decode(id);
    if (head === 'experiments' && value) return { page: 'experiment', experimentId: value };
    if (head === 'runs' && value) return { page: 'run', runId: value };
  }
  return { page: 'not-found' };
}

export const paths = {
  experiments: (query = '') => `/${query}`,
  experiment: (id: string, query = '') => `/experiments/${encodeURIComponent(id)}${query}`,
  run: (id: string, query = '') => `/runs/${encodeURIComponent(id)}${query}`,
  compare: (query = '') => `/compare${query}`,
  login: (next?: string) =>
    next && next !== '/' ? `/login?${new URLSearchParams({ next }).toString()}` : '/login',
};
