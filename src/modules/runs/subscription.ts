import { builder } from '../../builder.js';
import type { Context } from '../../context.js';
import type { RunUpdate } from '../../pubsub.js';
import { findEntityByName } from '../entities/service.js';
import { decodeId } from '../global-id.js';
import { stillReadable } from '../users/service.js';
import { TriggeredRunRef } from './schema.js';
import type { TriggeredRun } from './service.js';

/** Which runs' updates a subscription wants; each absent condition matches every run. */
interface WantedRuns {
  entity?: string;
  automationId?: string;
  runId?: string;
  eventId?: string;
}

const matches = (update: RunUpdate, wanted: WantedRuns) =>
  (!wanted.automationId || update.automationId === wanted.automationId) &&
  (!wanted.runId || update.id === wanted.runId) &&
  (!wanted.eventId || update.eventId === wanted.eventId);

/**
 * Updates of the runs `wanted` names that the viewer may read, one at a time, in the order they
 * were published. Access is checked again on every update, so a revoked key or a removed member
 * stops receiving at once. The pub/sub listener is attached by the first `next()`, before anything
 * is awaited, so nothing published after that call is missed; `return()` detaches it at once,
 * also while a `next()` waits (an async generator would wait for the next publish first).
 */
function runUpdates(ctx: Context, wanted: WantedRuns): AsyncIterableIterator<RunUpdate> {
  const batches = ctx.deps.pubsub.subscribe('runsUpdated')[Symbol.asyncIterator]();
  let pending: readonly RunUpdate[] = [];
  let taken = 0;
  // An entity you cannot read yields nothing, exactly like one that does not exist.
  let entityId: Promise<string | null> | undefined;
  const accepts = async (update: RunUpdate): Promise<boolean> => {
    if (!matches(update, wanted)) return false;
    if (wanted.entity) {
      entityId ??= Promise.resolve(findEntityByName(ctx.deps, wanted.entity)).then(
        (entity) => entity?.id ?? null,
      );
      if (update.entityId !== (await entityId)) return false;
    }
    return stillReadable(ctx, update.entityId);
  };
  return {
    async next() {
      for (;;) {
        const update = pending[taken];
        if (update) {
          taken += 1;
          if (await accepts(update)) return { value: update, done: false };
          continue;
        }
        const batch = await batches.next();
        if (batch.done) return { value: undefined, done: true };
        // Every listener gets the same message: read it, never change it.
        pending = batch.value;
        taken = 0;
      }
    },
    async return() {
      pending = [];
      await batches.return?.();
      return { value: undefined, done: true };
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}

/** The run as the `TriggeredRun` type reads it; an update carries no lease, which no field reads. */
function runOf(update: RunUpdate): TriggeredRun {
  const date = (ms: number | null) => (ms === null ? null : new Date(ms));
  return {
    ...update,
    nextAttemptAt: date(update.nextAttemptAt),
    createdAt: new Date(update.createdAt),
    updatedAt: date(update.updatedAt),
    finishedAt: date(update.finishedAt),
    leaseOwner: null,
    leaseExpiresAt: null,
  };
}

builder.subscriptionType({ description: 'Live updates.' });

builder.subscriptionField('triggeredRunUpdated', (t) =>
  t.field({
    type: TriggeredRunRef,
    description:
      'Every status change of runs in the entities you can read, in order, published after it is stored. Narrow it with the arguments.',
    args: {
      entity: t.arg.string({ required: false, description: 'Only runs of this entity (by name).' }),
      automationId: t.arg.id({ required: false, description: 'Only runs of this automation.' }),
      runId: t.arg.id({ required: false, description: 'Only this run.' }),
      eventId: t.arg.id({ required: false, description: 'Only runs of this event.' }),
    },
    subscribe: (_root, args, ctx) =>
      runUpdates(ctx, {
        ...(args.entity && { entity: args.entity }),
        ...(args.automationId && {
          automationId: decodeId(args.automationId, 'Automation', 'automationId'),
        }),
        ...(args.runId && { runId: decodeId(args.runId, 'TriggeredRun', 'runId') }),
        ...(args.eventId && { eventId: decodeId(args.eventId, 'ArtifactEvent', 'eventId') }),
      }),
    resolve: (update) => runOf(update),
  }),
);
