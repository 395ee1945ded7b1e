import { count, inArray, sql } from 'drizzle-orm';
import type { Db } from '../storage/sqlite/database.js';
import { triggeredRuns } from '../storage/sqlite/schema.js';

/** The runs not yet finished, as `/metrics` shows them. */
export interface QueueDepth {
  /** QUEUED, RUNNING and RETRYING runs; finished ones are counted as they finish, not here. */
  byStatus: { QUEUED: number; RUNNING: number; RETRYING: number };
  /** QUEUED or RETRYING runs whose time has come. */
  dueNow: number;
  /** RETRYING (or QUEUED) runs waiting for a later time. */
  scheduled: number;
  /** How long the oldest due run has been due, in seconds; 0 when none is due. */
  oldestDueAgeSeconds: number;
  /** RUNNING runs whose lease has passed: their server died or stalls; another takes them. */
  leaseExpired: number;
}

const LIVE = ['QUEUED', 'RUNNING', 'RETRYING'] as const;

/**
 * Reads the delivery queue in one query over the live runs, through the index on
 * `(status, next_attempt_at)`, so finished runs, however many, cost nothing. Called at scrape
 * time. This is storage code living here until the storage layer (`src/storage/`) offers a
 * domain operation for it; it moves there then, unchanged in meaning.
 */
export function readQueueDepth(db: Db, now: Date): QueueDepth {
  const at = now.getTime();
  const { status, nextAttemptAt, leaseExpiresAt, createdAt } = triggeredRuns;
  const dueTime = sql`coalesce(${nextAttemptAt}, ${createdAt})`;
  const rows = db
    .select({
      status,
      total: count(),
      due: sql<number>`sum(${dueTime} <= ${at})`,
      oldestDue: sql<number | null>`min(case when ${dueTime} <= ${at} then ${dueTime} end)`,
      leaseExpired: sql<number>`sum(coalesce(${leaseExpiresAt}, 0) <= ${at})`,
    })
    .from(triggeredRuns)
    .where(inArray(status, [...LIVE]))
    .groupBy(status)
    .all();
  const depth: QueueDepth = {
    byStatus: { QUEUED: 0, RUNNING: 0, RETRYING: 0 },
    dueNow: 0,
    scheduled: 0,
    oldestDueAgeSeconds: 0,
    leaseExpired: 0,
  };
  let oldest: number | null = null;
  for (const row of rows) {
    if (row.status !== 'QUEUED' && row.status !== 'RUNNING' && row.status !== 'RETRYING') continue;
    depth.byStatus[row.status] = row.total;
    if (row.status === 'RUNNING') {
      depth.leaseExpired = Number(row.leaseExpired ?? 0);
      continue;
    }
    const due = Number(row.due ?? 0);
    depth.dueNow += due;
    depth.scheduled += row.total - due;
    if (row.oldestDue !== null && (oldest === null || row.oldestDue < oldest)) {
      oldest = row.oldestDue;
    }
  }
  if (oldest !== null) depth.oldestDueAgeSeconds = Math.max(0, (at - oldest) / 1000);
  return depth;
}
