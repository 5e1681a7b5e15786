// A run's reproducibility metadata: git, host, GPUs, command line, packages, the rest.
import type { ReactNode } from 'react';
import type { RunMetadata as Metadata } from '../api';
import { formatBytes } from '../lib/format';
import { KeyValueTable } from './common';

/** A command line from its argv, quoted the way a POSIX shell reads it back. */
export function shellJoin(argv: unknown): string {
  if (typeof argv === 'string') return argv;
  if (!Array.isArray(argv)) return '';
  return argv
    .map((a) => {
      const s = String(a);
      return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'"'"'`)}'`;
    })
    .join(' ');
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Any JSON value as text or nested tables; strings stay text nodes. */
export function metaValue(v: unknown): ReactNode {
  if (v === null || v === undefined) return <span className="muted">—</span>;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x !== 'object' || x === null)) return v.map(String).join(', ');
    return (
      <ol className="meta-list">
        {v.map((x, i) => (
          <li key={i}>{metaValue(x)}</li>
        ))}
      </ol>
    );
  }
  if (isRecord(v)) {
    return <KeyValueTable entries={Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, x]) => [k, metaValue(x)])} />;
  }
  return String(v);
}

function gpuText(g: unknown): string {
  if (!isRecord(g)) return String(g);
  const parts = [
    g.index !== undefined ? `${String(g.index)}:` : '',
    typeof g.name === 'string' ? g.name : '',
    typeof g.memory_bytes === 'number' ? `(${formatBytes(g.memory_bytes)})` : '',
  ];
  return parts.filter(Boolean).join(' ') || JSON.stringify(g);
}

const SHOWN = new Set(['git', 'host', 'gpus', 'command', 'python', 'packages']);

export function RunMetadataView({ metadata }: { metadata: Metadata }) {
  const git = isRecord(metadata.git) ? metadata.git : null;
  const commit = git && typeof git.commit === 'string' ? git.commit : '';
  const entries: [string, ReactNode][] = [];
  if (git) {
    entries.push([
      'git',
      <span key="git" className="git" data-testid="meta-git">
        <span className="mono" title={commit}>{commit.slice(0, 12) || '—'}</span>
        {typeof git.branch === 'string' && git.branch ? <> on <span className="mono">{git.branch}</span></> : null}
        {git.dirty === true ? <span className="badge dirty">dirty</span> : git.dirty === false ? <span className="badge clean">clean</span> : null}
        {typeof git.remote === 'string' ? <span className="muted"> {git.remote}</span> : null}
      </span>,
    ]);
  }
  if (metadata.host !== undefined) entries.push(['host', metaValue(metadata.host)]);
  if (Array.isArray(metadata.gpus) && metadata.gpus.length > 0) {
    entries.push(['GPUs', <span key="gpus">{metadata.gpus.map(gpuText).join('; ')}</span>]);
  } else if (metadata.gpus !== undefined && !Array.isArray(metadata.gpus)) {
    entries.push(['GPUs', metaValue(metadata.gpus)]);
  }
  if (metadata.command !== undefined) {
    entries.push(['command', <code key="cmd" className="command" data-testid="meta-command">{shellJoin(metadata.command)}</code>]);
  }
  if (metadata.python !== undefined) entries.push(['python', metaValue(metadata.python)]);
  const rest = Object.keys(metadata).filter((k) => !SHOWN.has(k)).sort();
  for (const k of rest) entries.push([k, metaValue(metadata[k])]);
  if (metadata.packages !== undefined) entries.push(['packages', metaValue(metadata.packages)]);
  return <KeyValueTable entries={entries} empty="no metadata recorded" />;
}
