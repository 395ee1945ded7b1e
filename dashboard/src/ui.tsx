import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import type { Api } from './api';
import type { RunRow, RunStatus } from './live';

export type Role = 'ADMIN' | 'MEMBER' | 'VIEWER';

/** What every page gets: the API, the entity shown and the viewer's role in it, live run updates. */
export interface Session {
  api: Api;
  entity: string;
  role: Role;
  /** Calls `listener` with every run update of the entity; returns a function that stops it. */
  onRun(listener: (run: RunRow) => void): () => void;
}

/** Members and admins may retry runs and switch automations on and off. */
export const canOperate = (role: Role): boolean => role === 'ADMIN' || role === 'MEMBER';
/** Only admins manage actions and secrets. */
export const canAdminister = (role: Role): boolean => role === 'ADMIN';

export function StatusBadge({ status }: { status: RunStatus }) {
  return <span class={`badge status-${status.toLowerCase()}`}>{status}</span>;
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  month: 'short',
  day: 'numeric',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
});

export function Time({ value }: { value: string | null | undefined }) {
  if (!value) return <span class="muted">—</span>;
  return <time dateTime={value}>{timeFormat.format(new Date(value))}</time>;
}

export function Alert({
  children,
  tone = 'error',
}: {
  children: ComponentChildren;
  tone?: 'error' | 'ok';
}) {
  return (
    <p class={`alert alert-${tone}`} role={tone === 'error' ? 'alert' : 'status'}>
      {children}
    </p>
  );
}

/**
 * Loads data with `load` now, when `deps` change, and when `reload()` is called; keeps the last
 * data while reloading, so live refreshes do not flicker.
 */
export function useLoad<T>(
  load: () => Promise<T>,
  deps: unknown[],
): { data: T | undefined; error: string | null; loading: boolean; reload: () => void } {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const generation = useRef(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  const reload = useCallback(() => {
    const mine = ++generation.current;
    setLoading(true);
    loadRef.current().then(
      (value) => {
        if (mine !== generation.current) return;
        setData(value);
        setError(null);
        setLoading(false);
      },
      (failure: unknown) => {
        if (mine !== generation.current) return;
        setError(failure instanceof Error ? failure.message : String(failure));
        setLoading(false);
      },
    );
  }, []);
  // The caller names what the load depends on.
  useEffect(reload, deps);
  return { data, error, loading, reload };
}

/** Calls `fn` at most once per `ms`, at the end of each burst of calls. */
export function useDebounced(fn: () => void, ms: number): () => void {
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const fnRef = useRef(fn);
  fnRef.current = fn;
  useEffect(() => () => clearTimeout(timer.current), []);
  return useCallback(() => {
    if (timer.current !== undefined) return;
    timer.current = setTimeout(() => {
      timer.current = undefined;
      fnRef.current();
    }, ms);
  }, [ms]);
}
