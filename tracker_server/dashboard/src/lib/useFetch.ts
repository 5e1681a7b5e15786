// Loading one thing for a component: abort on change or unmount, keep the last answer.
import { type DependencyList, useCallback, useLayoutEffect, useRef, useState } from 'react';
import { isAbort } from '../api';

export interface FetchState<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  /** Fetches again with the same arguments. */
  reload: () => void;
}

export function useFetch<T>(
  load: (signal: AbortSignal) => Promise<T>,
  deps: DependencyList,
): FetchState<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [loading, setLoading] = useState(true);
  const [generation, setGeneration] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;

  // A layout effect starts the request before the browser paints, not after.
  useLayoutEffect(() => {
    const ctl = new AbortController();
    setLoading(true);
    loadRef.current(ctl.signal).then(
      (value) => {
        if (ctl.signal.aborted) return;
        setData(value);
        setError(undefined);
        setLoading(false);
      },
      (err: unknown) => {
        if (ctl.signal.aborted || isAbort(err)) return;
        setError(err);
        setLoading(false);
      },
    );
    return () => ctl.abort();
    // The caller's deps decide when to load again.
  }, [...deps, generation]);

  const reload = useCallback(() => setGeneration((g) => g + 1), []);
  return { data, error, loading, reload };
}
