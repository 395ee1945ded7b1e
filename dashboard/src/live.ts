/** Runs as the runs table shows them, and how live updates merge into a page of them. */

export type RunStatus = 'QUEUED' | 'RUNNING' | 'RETRYING' | 'SUCCEEDED' | 'FAILED' | 'SKIPPED';

export const RUN_STATUSES: readonly RunStatus[] = [
  'QUEUED',
  'RUNNING',
  'RETRYING',
  'SUCCEEDED',
  'FAILED',
  'SKIPPED',
];

export const FINISHED: readonly RunStatus[] = ['SUCCEEDED', 'FAILED', 'SKIPPED'];

export interface RunRow {
  id: string;
  status: RunStatus;
  automationName: string;
  attemptCount: number;
  createdAt: string;
  updatedAt: string | null;
  result: string | null;
  automation: { id: string } | null;
  /** The artifact event that triggered the run; null for a run event's run. */
  event: {
    id: string;
    eventType: string;
    versionString: string;
    project: { id: string; name: string } | null;
    registry: { id: string; name: string } | null;
  } | null;
  /** The run event (a training run's condition that fired); null for an artifact event's run. */
  runEvent?: {
    eventType: string;
    condition: string;
    runState: string;
    metricName: string | null;
    metricValues: number[] | null;
    run: { id: string; name: string; project: { id: string; name: string } };
  } | null;
}

/** The project or registry ids a run happened in, for the owner filter. */
function ownerIds(run: RunRow): (string | undefined)[] {
  if (run.event) return [run.event.project?.id, run.event.registry?.id];
  return [run.runEvent?.run.project.id];
}

/** Which runs the table lists: every condition given must hold. */
export interface RunsFilter {
  status: RunStatus | null;
  automationId: string | null;
  /** A project's or registry's global id. */
  ownerId: string | null;
}

export const NO_FILTER: RunsFilter = { status: null, automationId: null, ownerId: null };

/** Whether a run belongs in a list with this filter. */
export function matchesFilter(run: RunRow, filter: RunsFilter): boolean {
  if (filter.status !== null && run.status !== filter.status) return false;
  if (filter.automationId !== null && run.automation?.id !== filter.automationId) return false;
  if (filter.ownerId !== null && !ownerIds(run).includes(filter.ownerId)) return false;
  return true;
}

/** The list's order: newest first, by creation time then id (the API's keyset order). */
export function compareRuns(a: RunRow, b: RunRow): number {
  const byTime = Date.parse(b.createdAt) - Date.parse(a.createdAt);
  if (byTime !== 0) return byTime;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

/** Where the page being shown sits in the list. */
export interface PageSpot {
  /** No newer page exists: new runs belong on this one. */
  newest: boolean;
  /** An older page exists: runs older than this page's last row belong there, not here. */
  hasOlder: boolean;
}

/**
 * The page after a live update of `run`: a row already shown is replaced where it stands (so
 * rows never jump while a person reads them, even when the new status no longer matches the
 * filter); a run not shown is added in list order when it matches the filter and belongs on this
 * page (newer than its last row, or no older page; and only on the newest page, since paging
 * back and forth would otherwise show it twice). Rows are never dropped, so the page's cursors
 * stay right. Returns the same array when nothing changes.
 */
export function mergeRun(
  rows: readonly RunRow[],
  run: RunRow,
  filter: RunsFilter,
  spot: PageSpot,
): readonly RunRow[] {
  const at = rows.findIndex((row) => row.id === run.id);
  if (at >= 0) {
    const next = rows.slice();
    next[at] = run;
    return next;
  }
  if (!matchesFilter(run, filter)) return rows;
  const last = rows[rows.length - 1];
  const belongs = spot.newest
    ? !spot.hasOlder || last === undefined || compareRuns(run, last) < 0
    : false;
  if (!belongs) return rows;
  const next = rows.slice();
  let index = next.findIndex((row) => compareRuns(run, row) < 0);
  if (index < 0) index = next.length;
  next.splice(index, 0, run);
  return next;
}
