// The filter-language box: Enter applies, a bad filter shows the server's message with
// the offending character marked and the cursor put there.
import { type KeyboardEvent, useEffect, useRef, useState } from 'react';
import { errorPosition, markFilterError } from '../lib/filterError';

export interface FilterProblem {
  message: string;
  position: number | null;
}

interface FilterBoxProps {
  value: string;
  problem: FilterProblem | null;
  onApply: (filter: string) => void;
}

export function FilterBox({ value, problem, onApply }: FilterBoxProps) {
  const [text, setText] = useState(value);
  const ref = useRef<HTMLTextAreaElement>(null);
  // The applied filter changes with the URL (back/forward, a shared link).
  useEffect(() => setText(value), [value]);

  const position = problem ? errorPosition(problem.position, problem.message) : null;
  const mark = problem && position !== null ? markFilterError(value, position) : null;

  useEffect(() => {
    const el = ref.current;
    if (!el || !mark || document.activeElement !== el) return;
    const at = mark.before.length;
    el.setSelectionRange(at, at + mark.at.length);
  }, [mark?.before.length, mark?.at.length]);

  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      onApply(text.trim());
    }
  };

  return (
    <div className="filter-box">
      <div className="filter-row">
        <textarea
          ref={ref}
          className={`filter-input${problem ? ' invalid' : ''}`}
          value={text}
          rows={Math.min(Math.max(text.split('\n').length, 1), 6)}
          spellCheck={false}
          placeholder='e.g. params.lr < 0.01 and metrics.loss.min < 0.5 and status = "finished"'
          aria-label="Filter runs"
          aria-invalid={problem ? true : undefined}
          data-testid="filter-input"
          onChange={(e) => setText(e.target.value)}
          onKeyDown={onKeyDown}
        />
        <button type="button" onClick={() => onApply(text.trim())}>
          Filter
        </button>
        {value ? (
          <button type="button" onClick={() => onApply('')}>
            Clear
          </button>
        ) : null}
      </div>
      {problem ? (
        <div className="filter-error" role="alert" data-testid="filter-error" data-position={position ?? ''}>
          <div className="filter-error-message">{problem.message}</div>
          {mark ? (
            <>
              <pre className="filter-error-text">
                {mark.before}
                <mark data-testid="filter-error-mark">{mark.at || ' '}</mark>
                {mark.after}
              </pre>
              <div className="muted small">
                line {mark.line}, column {mark.column}
                {mark.at ? '' : ' (end of input)'}
              </div>
            </>
          ) : null}
        </div>
      ) : null}
    </div>
  );
}
