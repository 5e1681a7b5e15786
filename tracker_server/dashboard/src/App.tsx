// The shell: session check, header, and the page for the current URL.
import { useEffect } from 'react';
import { ErrorBox, Loading } from './components/common';
import { Link, matchRoute, navigate, paths, useLocation } from './lib/router';
import { ComparePage } from './pages/ComparePage';
import { ExperimentPage } from './pages/ExperimentPage';
import { ExperimentsPage } from './pages/ExperimentsPage';
import { LoginPage, safeNext } from './pages/LoginPage';
import { RunPage } from './pages/RunPage';
import { loadSession, signOut, useSession } from './session';

function Header() {
  const session = useSession();
  return (
    <header className="app-header">
      <Link to={paths.experiments()} className="brand">
        tracker
      </Link>
      <nav>
        <Link to={paths.experiments()}>Experiments</Link>
      </nav>
      <span className="spacer" />
      {session.status === 'ready' ? (
        <span className="who" data-testid="session-role">
          <span className={`badge role-${session.role}`}>{session.role}</span>
          {session.keyId ? <span className="muted mono"> {session.keyId}</span> : null}
          {session.auth ? (
            <button type="button" className="link-button" onClick={() => void signOut()} data-testid="logout">
              Log out
            </button>
          ) : (
            <span className="muted small"> (no auth)</span>
          )}
        </span>
      ) : null}
    </header>
  );
}

export function App() {
  const location = useLocation();
  const session = useSession();
  const route = matchRoute(location.pathname);
  const here = location.pathname + location.search;

  useEffect(() => {
    void loadSession();
  }, []);

  // Signed out (or a 401 anywhere): the login page, coming back here afterwards.
  useEffect(() => {
    if (session.status === 'anonymous' && route.page !== 'login') {
      navigate(paths.login(here), { replace: true });
    }
    if (session.status === 'ready' && route.page === 'login') {
      navigate(safeNext(new URLSearchParams(location.search).get('next')), { replace: true });
    }
  }, [session.status, route.page, here, location.search]);

  // Pages render (and start loading) while the session check is still under way: a
  // signed-out visitor gets 401s and lands on the login page all the same.
  let body;
  if (route.page === 'login') {
    body =
      session.status === 'ready' ? (
        <Loading />
      ) : (
        <LoginPage
          next={new URLSearchParams(location.search).get('next')}
          reason={session.status === 'anonymous' ? session.reason : undefined}
        />
      );
  } else if (session.status === 'anonymous') {
    body = <Loading />;
  } else if (session.status === 'error') {
    body = (
      <div className="page">
        <ErrorBox error={new Error(`Cannot reach the server: ${session.message}`)} onRetry={() => void loadSession()} />
      </div>
    );
  } else if (route.page === 'experiments') {
    body = <ExperimentsPage />;
  } else if (route.page === 'experiment') {
    body = <ExperimentPage key={route.experimentId} experimentId={route.experimentId} />;
  } else if (route.page === 'run') {
    body = <RunPage key={route.runId} runId={route.runId} />;
  } else if (route.page === 'compare') {
    body = <ComparePage />;
  } else {
    body = (
      <div className="page">
        <h1>Not found</h1>
        <p>
          Nothing lives at this address. <Link to={paths.experiments()}>All experiments</Link>
        </p>
      </div>
    );
  }

  return (
    <>
      <Header />
      <main>{body}</main>
    </>
  );
}
