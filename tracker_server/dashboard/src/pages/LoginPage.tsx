// Sign in with an API key: it goes in the request body once and becomes an HttpOnly
// session cookie; it is never put in a URL or stored by the page.
import { type FormEvent, useState } from 'react';
import { ApiError } from '../api';
import { ErrorBox } from '../components/common';
import { navigate } from '../lib/router';
import { signIn } from '../session';

/** Only same-site paths are followed after sign-in (no open redirect). */
export function safeNext(next: string | null): string {
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/login')) return '/';
  return next;
}

export function LoginPage({ next, reason }: { next: string | null; reason?: string }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await signIn(key.trim());
      setKey('');
      navigate(safeNext(next), { replace: true });
    } catch (err) {
      setError(
        err instanceof ApiError && err.status === 401
          ? new ApiError(401, { title: 'Not signed in', detail: 'That API key is not valid (unknown, revoked or mistyped).' })
          : err,
      );
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="page login-page">
      <form className="panel login-form" onSubmit={submit} autoComplete="off">
        <h1>Sign in to tracker</h1>
        {reason ? <p className="muted">{reason}</p> : null}
        <label>
          API key
          <input
            type="password"
            name="api_key"
            value={key}
            onChange={(e) => setKey(e.target.value)}
            autoFocus
            required
            autoComplete="off"
            spellCheck={false}
            data-testid="api-key"
          />
        </label>
        <button type="submit" className="primary" disabled={busy || !key.trim()}>
          Sign in
        </button>
        <ErrorBox error={error} />
        <p className="muted small">
          The key is sent once, in this form, and exchanged for a session cookie the page
          cannot read. Keys are made on the server with
          <br />
          <code>tracker-server keys create --role viewer</code>
        </p>
      </form>
    </div>
  );
}
