// Small pieces every page uses.
import type { ReactNode } from 'react';
import { ApiError } from '../api';

export function ErrorBox({ error, onRetry }: { error: unknown; onRetry?: () => void }) {
  if (!error) return null;
  const title = error instanceof ApiError ? error.title : 'Error';
  const detail =
    error instanceof ApiError ? error.detail : error instanceof Error ? error.message : String(error);
  const status = error instanceof ApiError && error.status ? ` (${error.status})` : '';
  return (
    <div className="error-box" role="alert">
      <strong>
        {title}
        {status}
      </strong>
      {detail ? <span> {detail}</span> : null}
      {error instanceof ApiError && error.errors.length > 0 ? (
        <ul>
          {error.errors.map((e, i) => (
            <li key={i}>
              {e.field}: {e.message}
            </li>
          ))}
        </ul>
      ) : null}
      {onRetry ? (
        <button type="button" className="link-button" onClick={onRetry}>
          Retry
        </button>
      ) : null}
    </div>
  );
}

export function Loading({ what = 'Loading' }: { what?: string }) {
  return <div className="loading">{what}…</div>;
}

export function StatusBadge({ status }: { status: string }) {
  return <span className={`badge status-${status}`}>{status}</span>;
}

export function Pager(props: {
  page: number;
  hasPrev: boolean;
  hasNext: boolean;
  onPrev: () => void;
  onNext: () => void;
}) {
  return (
    <div className="pager">
      <button type="button" disabled={!props.hasPrev} onClick={props.onPrev}>
        ← Prev
      </button>
      <span className="pager-page">page {props.page}</span>
      <button type="button" disabled={!props.hasNext} onClick={props.onNext}>
        Next →
      </button>
    </div>
  );
}

/** A table header that sorts by its column; `dir` is the current direction, if it sorts. */
export function SortHeader(props: {
  label: ReactNode;
  dir: 'asc' | 'desc' | null;
  onSort: () => void;
  title?: string;
  className?: string;
  extra?: ReactNode;
}) {
  const arrow = props.dir === 'asc' ? ' ▲' : props.dir === 'desc' ? ' ▼' : '';
  return (
    <th
      className={props.className}
      aria-sort={props.dir === 'asc' ? 'ascending' : props.dir === 'desc' ? 'descending' : 'none'}
    >
      <button type="button" className="sort-button" onClick={props.onSort} title={props.title}>
        {props.label}
        {arrow}
      </button>
      {props.extra}
    </th>
  );
}

export function KeyValueTable({ entries, empty = 'none' }: { entries: [string, ReactNode][]; empty?: string }) {
  if (entries.length === 0) return <p className="muted">{empty}</p>;
  return (
    <table className="kv">
      <tbody>
        {entries.map(([k, v]) => (
          <tr key={k}>
            <th scope="row">{k}</th>
            <td>{v}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** Entries of a string map sorted by key. */
export function sortedEntries(map: Record<string, string> | null | undefined): [string, string][] {
  return Object.entries(map ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}
