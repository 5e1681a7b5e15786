// The compare page's metric summaries: one row per metric key, one cell per run, the
// goal the runs agree on next to the key and, for a row with a goal, its best cell marked
// (by the last value, as the server ranks it).
import type { BestMode, CompareMetric, Run } from '../api';
import { colorAt, colorClass } from '../lib/colors';
import { formatStep, formatValue } from '../lib/format';

const GOAL_ARROW: Record<BestMode, string> = { max: '↑', min: '↓' };
const GOAL_MEANS: Record<BestMode, string> = { max: 'higher is better', min: 'lower is better' };

function GoalLabel({ goal }: { goal: BestMode }) {
  return (
    <span className="metric-goal" data-goal={goal} title={`goal ${goal} (defined by the runs): ${GOAL_MEANS[goal]}`}>
      <span aria-hidden="true">{GOAL_ARROW[goal]} </span>
      {goal}
    </span>
  );
}

/** One header cell per compared run: its chart colour and name (both compare tables). */
export function RunHeads({ runs }: { runs: Run[] }) {
  return (
    <>
      {runs.map((r, i) => (
        <th key={r.run_id}>
          <span className={`swatch ${colorClass(colorAt(i))}`} />
          {r.name || r.run_id}
        </th>
      ))}
    </>
  );
}

export interface CompareMetricsTableProps {
  runs: Run[];
  metrics: CompareMetric[];
  /** The metric the chart shows (its row is highlighted). */
  current: string | null;
  onPick: (key: string) => void;
}

export function CompareMetricsTable({ runs, metrics, current, onPick }: CompareMetricsTableProps) {
  return (
    <table className="grid compare-table" data-testid="compare-metrics">
      <thead>
        <tr>
          <th>metric (last · min · max)</th>
          <RunHeads runs={runs} />
        </tr>
      </thead>
      <tbody>
        {metrics.map((m) => (
          <tr key={m.key} className={m.key === current ? 'current' : ''} data-goal={m.goal ?? undefined}>
            <th scope="row">
              <button type="button" className="link-button" onClick={() => onPick(m.key)}>
                {m.key}
              </button>
              {m.goal ? <> <GoalLabel goal={m.goal} /></> : null}
            </th>
            {m.summaries.map((s, i) => {
              // Only a row with a goal has a best cell; the server leaves it null otherwise.
              const best = m.goal !== null && m.bestCell === i && s !== null;
              const at = s ? `last at step ${formatStep(s.lastStep)}` : 'not logged';
              return (
                <td
                  key={runs[i]?.run_id ?? i}
                  className={`num${best ? ' best' : ''}`}
                  title={best ? `${at}; best (${m.goal}): the ${m.goal === 'max' ? 'highest' : 'lowest'} last value` : at}
                  data-best={best ? 'true' : undefined}
                >
                  {s ? (
                    <>
                      {best ? (
                        <span className="best-star" role="img" aria-label={`best (${m.goal})`} title={`best (${m.goal})`}>
                          ★
                        </span>
                      ) : null}
                      {best ? ' ' : null}
                      {formatValue(s.lastValue)}
                      <span className="muted"> · {formatValue(s.minValue)} · {formatValue(s.maxValue)}</span>
                    </>
                  ) : (
                    <span className="muted">—</span>
                  )}
                </td>
              );
            })}
          </tr>
        ))}
      </tbody>
    </table>
  );
}
