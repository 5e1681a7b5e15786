// Who is signed in: loaded from GET /session, cleared by any 401.
import { useSyncExternalStore } from 'react';
import { ApiError, getSession, login, logout, setCsrfToken, setUnauthorizedHandler } from './api';
import type { Session } from './api';

export type SessionState =
  | { status: 'loading' }
  | { status: 'anonymous'; reason: string }
  | { status: 'error'; message: string }
  | { status: 'ready'; role: string; keyId: string | null; auth: boolean };

let state: SessionState = { status: 'loading' };
const listeners = new Set<() => void>();

function set(next: SessionState): void {
  state = next;
  for (const l of listeners) l();
}

function accept(s: Session): void {
  setCsrfToken(s.csrf_token ?? null);
  // A server without auth says so (auth: false); otherwise a key is in use.
  set({ status: 'ready', role: s.role, keyId: s.key_id ?? null, auth: s.auth !== false });
}

export function useSession(): SessionState {
  return useSyncExternalStore(
    (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    () => state,
  );
}

/** Viewers read only; operators and admins may create and finish. */
export function canWrite(s: SessionState): boolean {
  return s.status === 'ready' && s.role !== 'viewer';
}

export async function loadSession(): Promise<void> {
  try {
    accept(await getSession());
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      setCsrfToken(null);
      set({ status: 'anonymous', reason: '' });
    } else {
      set({ status: 'error', message: err instanceof Error ? err.message : String(err) });
    }
  }
}

export async function signIn(apiKey: string): Promise<void> {
  accept(await login(apiKey));
}

export async function signOut(): Promise<void> {
  try {
    await logout();
  } finally {
    setCsrfToken(null);
    set({ status: 'anonymous', reason: 'Signed out.' });
  }
}

setUnauthorizedHandler(() => {
  if (state.status === 'anonymous') return;
  setCsrfToken(null);
  set({ status: 'anonymous', reason: 'Your session has ended; sign in again.' });
});
