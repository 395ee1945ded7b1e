import { createGraphQLError } from 'graphql-yoga';
import type { AppDeps, Context } from '../../context.js';
import { ConflictError, NotFoundError } from '../../errors.js';
import type { RunUpdate } from '../../pubsub.js';
import {
  type DeliveryActivity,
  type DeliveryAttempt,
  FINISHED_STATUSES,
  type RunFilter,
  type RunOwner,
  type TriggeredRun,
} from '../../storage/events.js';
import type { StoredList } from '../connection.js';
import { requireRole } from '../entities/access.js';

export type { DeliveryAttempt, RunUpdate, TriggeredRun };

/** The run with this stored id, whoever may see it; null when there is none. */
export async function getRun(
  deps: Pick<AppDeps, 'storage'>,
  id: string,
): Promise<TriggeredRun | null> {
  return deps.storage.runs.getRun(id);
}

/** What subscribers are told of a run's state: its public fields, in plain JSON. */
export function runUpdate(run: TriggeredRun): RunUpdate {
  return {
    id: run.id,
    entityId: run.entityId,
    eventId: run.eventId,
    runEventId: run.runEventId,
    trainingRunId: run.trainingRunId,
    automationId: run.automationId,
    automationName: run.automationName,
    actionId: run.actionId,
    projectId: run.projectId,
    registryId: run.registryId,
    status: run.status,
    attemptCount: run.attemptCount,
    result: run.result,
    nextAttemptAt: run.nextAttemptAt?.getTime() ?? null,
    createdAt: run.createdAt.getTime(),
    updatedAt: run.updatedAt?.getTime() ?? null,
    finishedAt: run.finishedAt?.getTime() ?? null,
  };
}

/**
 * Publishes runs that changed in one commit, as one message on `runsUpdated`, to subscribers and
 * to the delivery engine. Call it only after the transaction has committed, so nobody sees a
 * state that was rolled back. The one place updates enter the pub/sub.
 */
export function publishRuns(
  deps: Pick<AppDeps, 'pubsub' | 'telemetry'>,
  updates: RunUpdate[],
): void {
  if (updates.length === 0) return;
  deps.pubsub.publish('runsUpdated', updates);
  // Counted where published, so a shared bus's updates from other instances are not counted here.
  const metrics = deps.telemetry?.metrics;
  if (metrics) for (const run of updates) metrics.runStatusChanged(run.status);
}

/**
 * The owner's runs matching `filter` as a list for `connection()`: newest first, keyed by
 * creation time and id.
 */
export function runList(
  deps: Pick<AppDeps, 'storage'>,
  owner: RunOwner,
  filter: RunFilter,
): StoredList<TriggeredRun> {
  return {
    keyOf: (run) => [run.createdAt.getTime(), run.id],
    keyTypes: ['number', 'string'],
    fetch: (request) => deps.storage.runs.pageRuns(owner, filter, request),
    count: () => deps.storage.runs.countRuns(owner, filter),
  };
}

/** Attempts of a run in the order they were made. */
export async function listAttempts(
  deps: Pick<AppDeps, 'storage'>,
  runId: string,
): Promise<DeliveryAttempt[]> {
  return deps.storage.runs.listAttempts(runId);
}

/**
 * Queues a finished run for delivery again: same run id, so receivers see the same
 * `webhook-id` and can de-duplicate; its attempts continue to be numbered after the earlier
 * ones. Members and admins. Throws NotFoundError for a run the caller cannot see and
 * ConflictError while the run is still queued, running or retrying.
 */
export async function retryRun(ctx: Context, runId: string): Promise<TriggeredRun> {
  const { deps } = ctx;
  const run = await deps.storage.runs.getRun(runId);
  const notFound = () => new NotFoundError('input.id', `No triggered run with id "${runId}".`);
  if (!run) throw notFound();
  requireRole(ctx.viewer, run.entityId, 'MEMBER', notFound);
  if (!FINISHED_STATUSES.includes(run.status)) {
    throw new ConflictError(
      'input.id',
      `The run is ${run.status}; only a finished run can be re-delivered.`,
    );
  }
  const queued = await deps.storage.runs.requeueRun(
    runId,
    deps.clock.now(),
    'Re-delivery requested',
  );
  if (!queued) throw new ConflictError('input.id', 'The run changed state meanwhile; try again.');
  publishRuns(deps, [runUpdate(queued)]);
  return queued;
}

/** The longest window delivery statistics cover, in minutes (a day). */
export const STATS_MAX_MINUTES = 24 * 60;
/** At most this many attempts are returned by delivery statistics, the newest. */
export const STATS_MAX_ATTEMPTS = 10_000;

/** What delivery statistics answer: a window, its attempts and the backlog now. */
export interface DeliveryStats extends DeliveryActivity {
  since: Date;
  until: Date;
}

/**
 * The entity's delivery attempts of the last `minutes` (1 to {@link STATS_MAX_MINUTES}, newest
 * first, at most {@link STATS_MAX_ATTEMPTS}) and its unfinished runs. The caller has checked that
 * the viewer may read the entity. Throws a GraphQL error with code `INVALID_ARGUMENT` (naming
 * `minutes` in `extensions.argument`) for a window out of range.
 */
export async function deliveryStats(
  deps: Pick<AppDeps, 'storage' | 'clock'>,
  entityId: string,
  minutes: number,
): Promise<DeliveryStats> {
  if (!Number.isInteger(minutes) || minutes < 1 || minutes > STATS_MAX_MINUTES) {
    throw createGraphQLError(
      `\`minutes\` is ${minutes}; give a window from 1 to ${STATS_MAX_MINUTES} minutes.`,
      { extensions: { code: 'INVALID_ARGUMENT', argument: 'minutes' } },
    );
  }
  const until = deps.clock.now();
  const since = new Date(until.getTime() - minutes * 60_000);
  const activity = await deps.storage.runs.deliveryActivity(entityId, since, STATS_MAX_ATTEMPTS);
  return { ...activity, since, until };
}
