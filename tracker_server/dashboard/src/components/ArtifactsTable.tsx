// A run's artifacts: checkpoints, models and data sets on shared storage (tracker keeps
// references, never the files), with what the last `tracker artifacts verify` found.
import type { Artifact } from '../api';
import { formatBytes, formatTime } from '../lib/format';

const STATE_TEXT: Record<Artifact['verifyState'], string> = {
  unverified: 'not verified',
  ok: 'ok',
  missing: 'missing',
  size_mismatch: 'size differs',
  hash_mismatch: 'hash differs',
  unchecked: 'not checkable',
};

function VerifyBadge({ a }: { a: Artifact }) {
  const title = a.verifiedAt
    ? `${a.verifyDetail || STATE_TEXT[a.verifyState]} (verified ${formatTime(a.verifiedAt)})`
    : 'run `tracker artifacts verify RUN` to check';
  return (
    <span className={`badge verify-${a.verifyState}`} title={title} data-testid="verify-state">
      {STATE_TEXT[a.verifyState]}
    </span>
  );
}

export function ArtifactsTable({ artifacts }: { artifacts: Artifact[] }) {
  if (artifacts.length === 0) {
    return <p className="muted">This run has recorded no artifacts.</p>;
  }
  return (
    <table className="grid artifacts-table" data-testid="artifacts-table">
      <thead>
        <tr>
          <th className="num">step</th>
          <th>kind</th>
          <th className="num">size</th>
          <th>uri</th>
          <th>verified</th>
        </tr>
      </thead>
      <tbody>
        {artifacts.map((a) => (
          <tr key={`${a.step ?? ''}\u0000${a.uri}`}>
            <td className="num">{a.step ?? <span className="muted">—</span>}</td>
            <td>{a.kind}</td>
            <td className="num">{a.sizeBytes === null ? <span className="muted">—</span> : formatBytes(a.sizeBytes)}</td>
            <td className="mono uri" title={a.sha256 ? `sha256 ${a.sha256}` : undefined}>
              {a.uri}
            </td>
            <td>
              <VerifyBadge a={a} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
