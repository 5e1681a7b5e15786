// Experiments: filtered by owner, status and name prefix, paged by server tokens.
import { type FormEvent, useEffect, useMemo, useState } from 'react';
import { createExperiment, type Experiment, listExperiments } from '../api';
import { ErrorBox, Loading, Pager, SortHeader, StatusBadge } from '../components/common';
import { formatTime } from '../lib/format';
import { Link, navigate, paths, useLocation } from '../lib/router';
import { useFetch } from '../lib/useFetch';
import {
  type ExperimentSort,
  type ExperimentsViewState,
  experimentsViewQuery,
  parseExperimentsView,
} from '../lib/urlState';
import { canWrite, useSession } from '../session';

const PAGE_SIZE = 50;

function sortExperiments(list: Experiment[], sort: ExperimentSort): Experiment[] {
  const desc = sort.startsWith('-');
  const field = (desc ? sort.slice(1) : sort) as 'name' | 'owner' | 'created';
  const value = (e: Experiment) => (field === 'created' ? e.created_at : e[field]);
  return [...list].sort((a, b) => {
    const x = value(a);
    const y = value(b);
    const c = x < y ? -1 : x > y ? 1 : 0;
    return desc ? -c : c;
  });
}

function CreateExperimentForm({ onDone }: { onDone: () => void }) {
  const [name, setName] = useState('');
  const [owner, setOwner] = useState('');
  const [description, setDescription] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const created = await createExperiment({ name: name.trim(), owner: owner.trim(), description });
      onDone();
      navigate(paths.experiment(created.experiment_id));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="panel create-form" onSubmit={submit}>
      <h2>New experiment</h2>
      <label>
        Name <input value={name} onChange={(e) => setName(e.target.value)} required maxLength={200} />
      </label>
      <label>
        Owner <input value={owner} onChange={(e) => setOwner(e.target.value)} />
      </label>
      <label className="wide">
        Description
        <textarea value={description} rows={2} onChange={(e) => setDescription(e.target.value)} />
      </label>
      <div className="form-actions">
        <button type="submit" className="primary" disabled={busy || !name.trim()}>
          Create
        </button>
        <button type="button" onClick={onDone}>
          Cancel
        </button>
      </div>
      <ErrorBox error={error} />
    </form>
  );
}

export function ExperimentsPage() {
  const { search } = useLocation();
  const view = useMemo(() => parseExperimentsView(search), [search]);
  const session = useSession();
  const [creating, setCreating] = useState(false);
  const [owner, setOwner] = useState(view.owner);
  const [prefix, setPrefix] = useState(view.prefix);
  const token = view.tok[view.tok.length - 1];
  // Back/forward changes the URL under the inputs.
  useEffect(() => setOwner(view.owner), [view.owner]);
  useEffect(() => setPrefix(view.prefix), [view.prefix]);

  const list = useFetch(
    (signal) =>
      listExperiments(
        {
          owner: view.owner,
          status: view.status === 'all' ? ['created', 'active', 'archived'] : view.status ? [view.status] : [],
          namePrefix: view.prefix,
          pageSize: PAGE_SIZE,
          pageToken: token,
        },
        signal,
      ),
    [view.owner, view.status, view.prefix, token],
  );

  const go = (next: Partial<ExperimentsViewState>, replace = false) =>
    navigate(paths.experiments(experimentsViewQuery({ ...view, ...next })), { replace });

  const applyFilters = (e: FormEvent) => {
    e.preventDefault();
    go({ owner: owner.trim(), prefix: prefix.trim(), tok: [] });
  };

  const sortBy = (field: 'name' | 'owner' | 'created') => {
    const desc = view.sort === field;
    go({ sort: (desc ? `-${field}` : field) as ExperimentSort }, true);
  };
  const dir = (field: string): 'asc' | 'desc' | null =>
    view.sort === field ? 'asc' : view.sort === `-${field}` ? 'desc' : null;

  const rows = list.data ? sortExperiments(list.data.experiments ?? [], view.sort) : [];
  const next = list.data?.next_page_token ?? '';

  return (
    <div className="page">
      <div className="page-head">
        <h1>Experiments</h1>
        {canWrite(session) && !creating ? (
          <button type="button" className="primary" onClick={() => setCreating(true)}>
            New experiment
          </button>
        ) : null}
      </div>
      {creating ? <CreateExperimentForm onDone={() => setCreating(false)} /> : null}
      <form className="filters" onSubmit={applyFilters}>
        <label>
          Owner <input value={owner} onChange={(e) => setOwner(e.target.value)} placeholder="any" />
        </label>
        <label>
          Name starts with <input value={prefix} onChange={(e) => setPrefix(e.target.value)} placeholder="any" />
        </label>
        <label>
          Status
          <select
            value={view.status}
            onChange={(e) => go({ status: e.target.value as ExperimentsViewState['status'], tok: [] })}
          >
            <option value="">not archived</option>
            <option value="all">any</option>
            <option value="created">created</option>
            <option value="active">active</option>
            <option value="archived">archived</option>
          </select>
        </label>
        <button type="submit">Apply</button>
      </form>
      <ErrorBox error={list.error} onRetry={list.reload} />
      {list.loading && !list.data ? <Loading /> : null}
      {list.data ? (
        <>
          <table className="grid" data-testid="experiments-table">
            <thead>
              <tr>
                <SortHeader label="Name" dir={dir('name')} onSort={() => sortBy('name')} />
                <SortHeader label="Owner" dir={dir('owner')} onSort={() => sortBy('owner')} />
                <th>Status</th>
                <th>Description</th>
                <SortHeader label="Created" dir={dir('created')} onSort={() => sortBy('created')} />
              </tr>
            </thead>
            <tbody>
              {rows.map((e) => (
                <tr key={e.experiment_id}>
                  <td>
                    <Link to={paths.experiment(e.experiment_id)}>{e.name}</Link>
                  </td>
                  <td>{e.owner || <span className="muted">—</span>}</td>
                  <td>
                    <StatusBadge status={e.status} />
                  </td>
                  <td className="description">{e.description}</td>
                  <td className="nowrap">{formatTime(e.created_at)}</td>
                </tr>
              ))}
              {rows.length === 0 ? (
                <tr>
                  <td colSpan={5} className="muted">
                    No experiments{view.owner || view.status || view.prefix ? ' match these filters' : ' yet'}.
                  </td>
                </tr>
              ) : null}
            </tbody>
          </table>
          <p className="muted small">Sorting orders the page shown.</p>
          <Pager
            page={view.tok.length + 1}
            hasPrev={view.tok.length > 0}
            hasNext={Boolean(next)}
            onPrev={() => go({ tok: view.tok.slice(0, -1) })}
            onNext={() => go({ tok: [...view.tok, next] })}
          />
        </>
      ) : null}
    </div>
  );
}
