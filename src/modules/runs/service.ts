import { and, count, eq, gte, inArray, lte, type SQL } from 'drizzle-orm';
import type { AppDeps, Context } from '../../context.js';
import { ConflictError, NotFoundError } from '../../errors.js';
import type { TriggeredRun } from '../../pubsub.js';
import { deliveryAttempts, type RunStatus, triggeredRuns } from '../../storage/sqlite/schema.js';
import { byCreation, type Page, type SortOrder } from '../connection.js';
import { requireRole } from '../entities/access.js';

export type { TriggeredRun };
export type DeliveryAttempt = typeof deliveryAttempts.$inferSelect;

export const FINISHED_STATUSES: readonly RunStatus[] = ['SUCCEEDED', 'FAILED', 'SKIPPED'];

export function getRun(deps: Pick<AppDeps, 'db'>, id: string): TriggeredRun | undefined {
  return deps.db.select().from(triggeredRuns).where(eq(triggeredRuns.id, id)).get();
}

/**
 * Publishes the run's current row on `triggeredRunUpdated`. Call it only after the transaction
 * that changed the run has committed, so subscribers never see a state that was rolled back.
 */
export function publishRunUpdate(deps: Pick<AppDeps, 'db' | 'pubsub'>, runId: string): void {
  const run = getRun(deps, runId);
  if (run) deps.pubsub.publish('triggeredRunUpdated', run);
}

/** Which runs a history list shows; each absent condition matches everything. */
export interface RunFilter {
  entityId?: string;
  projectId?: string;
  registryId?: string;
  automationId?: string;
  eventId?: string;
  statuses?: readonly RunStatus[] | null;
  createdAfter?: Date | null;
  createdBefore?: Date | null;
}

function runConditions(filter: RunFilter): SQL | undefined {
  return and(
    filter.entityId ? eq(triggeredRuns.entityId, filter.entityId) : undefined,
    filter.projectId ? eq(triggeredRuns.projectId, filter.projectId) : undefined,
    filter.registryId ? eq(triggeredRuns.registryId, filter.registryId) : undefined,
    filter.automationId ? eq(triggeredRuns.automationId, filter.automationId) : undefined,
    filter.eventId ? eq(triggeredRuns.eventId, filter.eventId) : undefined,
    filter.statuses?.length ? inArray(triggeredRuns.status, [...filter.statuses]) : undefined,
    filter.createdAfter ? gte(triggeredRuns.createdAt, filter.createdAfter) : undefined,
    filter.createdBefore ? lte(triggeredRuns.createdAt, filter.createdBefore) : undefined,
  );
}

/** The order of run lists: newest first. */
export const RUN_ORDER: SortOrder<TriggeredRun> = byCreation('desc', triggeredRuns);

/** A page of the runs matching `filter`, in {@link RUN_ORDER}. */
export function listRuns(deps: Pick<AppDeps, 'db'>, filter: RunFilter, page: Page): TriggeredRun[] {
  return deps.db
    .select()
    .from(triggeredRuns)
    .where(and(runConditions(filter), page.where))
    .orderBy(...page.orderBy)
    .limit(page.limit)
    .all();
}

export function countRuns(deps: Pick<AppDeps, 'db'>, filter: RunFilter): number {
  return (
    deps.db.select({ n: count() }).from(triggeredRuns).where(runConditions(filter)).get()?.n ?? 0
  );
}

/** Attempts of a run in the order they were made. */
export function listAttempts(deps: Pick<AppDeps, 'db'>, runId: string): DeliveryAttempt[] {
  return deps.db
    .select()
    .from(deliveryAttempts)
    .where(eq(deliveryAttempts.runId, runId))
    .orderBy(deliveryAttempts.attemptNumber)
    .all();
}

/**
 * Queues a finished run for delivery again: same run id, so receivers see the same
 * `webhook-id` and can de-duplicate; its attempts continue to be numbered after the earlier
 * ones. Members and admins. Throws NotFoundError for a run the caller cannot see and
 * ConflictError while the run is still queued, running or retrying.
 */
export function retryRun(ctx: Context, runId: string): TriggeredRun {
  const run = getRun(ctx.deps, runId);
  const notFound = () => new NotFoundError('id', `No triggered run with id "${runId}".`);
  if (!run) throw notFound();
  requireRole(ctx.viewer, run.entityId, 'MEMBER', notFound);
  if (!FINISHED_STATUSES.includes(run.status)) {
    throw new ConflictError(
      'id',
      `The run is ${run.status}; only a finished run can be re-delivered.`,
    );
  }
  const now = ctx.deps.clock.now();
  const queued = ctx.deps.db
    .update(triggeredRuns)
    .set({
      status: 'QUEUED',
      // The retry budget starts afresh; attempt numbers keep counting from the stored ones.
      attemptCount: 0,
      nextAttemptAt: now,
      updatedAt: now,
      finishedAt: null,
      leaseOwner: null,
      leaseExpiresAt: null,
      result: 'Re-delivery requested',
    })
    .where(and(eq(triggeredRuns.id, runId), inArray(triggeredRuns.status, [...FINISHED_STATUSES])))
    .returning()
    .get();
  if (!queued) throw new ConflictError('id', 'The run changed state meanwhile; try again.');
  ctx.deps.pubsub.publish('triggeredRunUpdated', queued);
  return queued;
}
