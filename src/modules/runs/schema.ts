import { builder } from '../../builder.js';
import type { AttemptErrorClass } from '../../delivery/engine.js';
import { ConflictError, NotFoundError, PermissionDeniedError } from '../../errors.js';
import type { RunFilter, RunOwner } from '../../storage/events.js';
import { AutomationRef } from '../automations/schema.js';
import { getAutomation } from '../automations/service.js';
import { connection } from '../connection.js';
import { hasRole } from '../entities/access.js';
import { EntityRef } from '../entities/schema.js';
import { ArtifactEventRef } from '../events/schema.js';
import { getEvent } from '../events/service.js';
import { decodeId, storedIdOf } from '../global-id.js';
import { ProjectRef, RegistryRef } from '../projects/schema.js';
import {
  type DeliveryAttempt,
  type DeliveryStats,
  deliveryStats,
  getRun,
  listAttempts,
  retryRun,
  runList,
  STATS_MAX_ATTEMPTS,
  STATS_MAX_MINUTES,
  type TriggeredRun,
} from './service.js';

export const RunStatusEnum = builder.enumType('RunStatus', {
  description: 'Where a triggered run is in its life.',
  values: {
    QUEUED: { description: 'Waiting for the delivery engine.' },
    RUNNING: { description: 'An attempt is in flight.' },
    RETRYING: { description: 'An attempt failed in a way worth retrying; the next is scheduled.' },
    SUCCEEDED: { description: 'The receiver answered 2xx.' },
    FAILED: { description: 'Attempts are exhausted, or the failure was permanent.' },
    SKIPPED: {
      description: 'The automation or action was disabled or deleted before the run executed.',
    },
  } as const,
});

export const DeliveryErrorClassEnum = builder.enumType('DeliveryErrorClass', {
  description: 'Why a delivery request got no HTTP answer.',
  values: {
    NETWORK_ERROR: {
      description: 'DNS failure, or a refused or reset connection. Retried.',
    },
    TIMEOUT: {
      description:
        'No complete answer, body included, within TRIPLINE_DELIVERY_TIMEOUT_MS; the request was aborted. Retried.',
    },
    SSRF_BLOCKED: {
      description:
        'The destination is private, loopback, link-local… or not https when https is required. Nothing was sent.',
    },
    PAYLOAD_TOO_LARGE: {
      description: 'The rendered body exceeds TRIPLINE_PAYLOAD_MAX_BYTES. Nothing was sent.',
    },
    CONFIGURATION_ERROR: {
      description:
        'The action or template cannot be delivered as configured (bad URL, missing secret, a template that no longer renders, a reserved header, a Slack URL that breaks the rules). Nothing was sent.',
    },
    INVALID_REQUEST: {
      description:
        'The HTTP client refused the request (e.g. an extra header with a newline). Nothing was sent.',
    },
    ABORTED: {
      description: "The server shut down mid-attempt; not counted toward the run's attempts.",
    },
    INTERRUPTED: {
      description:
        'The attempt started but never ended, because the server crashed or was killed; counted.',
    },
  } as const,
});

/** What one HTTP try produced; attempts of runs and test deliveries share it. */
interface HttpOutcome {
  statusCode?: number | null;
  errorClass?: string | null;
  errorMessage?: string | null;
  responseBody: string | null;
  durationMs: number | null;
}

export const DeliveryResultRef = builder.interfaceRef<HttpOutcome>('DeliveryResult').implement({
  description: 'What one delivery request produced: an HTTP answer, or the reason there was none.',
  fields: (t) => ({
    durationMs: t.exposeInt('durationMs', {
      nullable: true,
      description:
        'How long the request took, in milliseconds; null while an attempt is in flight, and for an INTERRUPTED one (its end is unknown).',
    }),
    statusCode: t.exposeInt('statusCode', {
      nullable: true,
      description: 'HTTP status of the answer, when there was one.',
    }),
    errorClass: t.field({
      type: DeliveryErrorClassEnum,
      nullable: true,
      description:
        'Kind of failure without an HTTP answer. Null for an HTTP answer, and while the attempt is in flight.',
      // Stored as the enum's value names (see AttemptErrorClass in src/delivery/engine.ts).
      resolve: (o) => (o.errorClass ?? null) as AttemptErrorClass | null,
    }),
    errorMessage: t.exposeString('errorMessage', {
      nullable: true,
      description: 'What went wrong, for people.',
    }),
    responseBody: t.exposeString('responseBody', {
      nullable: true,
      description:
        'Start of the response body, truncated, with secret values and auth headers redacted.',
    }),
  }),
});

const DeliveryAttemptRef = builder.objectRef<DeliveryAttempt>('DeliveryAttempt').implement({
  description:
    'One try at delivering a run, recorded when it starts: while it is in flight, statusCode, errorClass and durationMs are null.',
  interfaces: [DeliveryResultRef],
  fields: (t) => ({
    attemptNumber: t.exposeInt('attemptNumber', { description: 'Which try this was, from 1.' }),
    startedAt: t.expose('startedAt', {
      type: 'DateTime',
      description: 'When the request started.',
    }),
  }),
});

export const TriggeredRunRef = builder.node(builder.objectRef<TriggeredRun>('TriggeredRun'), {
  description: 'One execution of one automation for one event.',
  id: { resolve: (run) => run.id },
  loadOne: async (id, ctx) => {
    const run = await getRun(ctx.deps, id);
    return run && hasRole(ctx.viewer, run.entityId) ? run : null;
  },
  fields: (t) => ({
    status: t.field({
      type: RunStatusEnum,
      description: 'Current state.',
      resolve: (r) => r.status,
    }),
    automationName: t.exposeString('automationName', {
      description: 'Name of the automation when the run was created.',
    }),
    automation: t.field({
      type: AutomationRef,
      nullable: true,
      description: 'The automation; null once it has been deleted.',
      resolve: async (r, _args, ctx) =>
        r.automationId ? ((await getAutomation(ctx.deps, r.automationId)) ?? null) : null,
    }),
    event: t.field({
      type: ArtifactEventRef,
      nullable: true,
      description:
        'The artifact event that triggered the run; null for a run event (see `runEvent`).',
      resolve: async (r, _args, ctx) => (r.eventId ? await getEvent(ctx.deps, r.eventId) : null),
    }),
    attemptCount: t.exposeInt('attemptCount', {
      description:
        'Tries started since the run was last queued (a re-delivery starts a fresh retry budget), INTERRUPTED ones included; one ABORTED by a shutdown does not count.',
    }),
    attempts: t.field({
      type: [DeliveryAttemptRef],
      description: 'Every try, oldest first.',
      resolve: (r, _args, ctx) => listAttempts(ctx.deps, r.id),
    }),
    result: t.exposeString('result', {
      nullable: true,
      description: 'The latest outcome, for people.',
    }),
    nextAttemptAt: t.expose('nextAttemptAt', {
      type: 'DateTime',
      nullable: true,
      description: 'When the next try is due, while queued or retrying.',
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime', description: 'When the run was queued.' }),
    updatedAt: t.expose('updatedAt', {
      type: 'DateTime',
      nullable: true,
      description: 'When its state last changed.',
    }),
    finishedAt: t.expose('finishedAt', {
      type: 'DateTime',
      nullable: true,
      description: 'When it reached a final state.',
    }),
  }),
});

const RunFilterInput = builder.inputType('TriggeredRunFilter', {
  description: 'Narrows a list of runs; every given condition must hold.',
  fields: (f) => ({
    statuses: f.field({
      type: [RunStatusEnum],
      required: false,
      description: 'Only runs in one of these states.',
    }),
    automationId: f.id({ required: false, description: 'Only runs of this automation.' }),
    createdAfter: f.field({
      type: 'DateTime',
      required: false,
      description: 'Only runs queued at or after this time.',
    }),
    createdBefore: f.field({
      type: 'DateTime',
      required: false,
      description: 'Only runs queued at or before this time.',
    }),
  }),
});

const runsArgs = builder.args((t) => ({
  filter: t.field({ type: RunFilterInput, required: false, description: 'Which runs to list.' }),
}));

/**
 * A `triggeredRuns(filter:)` connection, newest first, for any object that owns runs: `owner`
 * says which runs are its own; the caller's filter narrows them.
 */
const TriggeredRunConnectionRef = builder.connectionObject(
  { type: TriggeredRunRef, name: 'TriggeredRunConnection' },
  { name: 'TriggeredRunEdge' },
);

export function triggeredRunsField<Parent>(
  description: string,
  owner: (parent: Parent) => RunOwner,
) {
  return (t: PothosSchemaTypes.ObjectFieldBuilder<typeof builder.$inferSchemaTypes, Parent>) =>
    t.connection(
      {
        type: TriggeredRunRef,
        description,
        args: runsArgs,
        resolve: (parent, args, ctx) => {
          const filter: RunFilter = {
            statuses: args.filter?.statuses ?? null,
            createdAfter: args.filter?.createdAfter ?? null,
            createdBefore: args.filter?.createdBefore ?? null,
            automationId: args.filter?.automationId
              ? decodeId(args.filter.automationId, 'Automation', 'filter.automationId')
              : null,
          };
          return connection(args, runList(ctx.deps, owner(parent), filter));
        },
      },
      TriggeredRunConnectionRef,
    );
}

builder.objectField(
  EntityRef,
  'triggeredRuns',
  triggeredRunsField('Runs of every automation in the entity, newest first.', (e) => ({
    kind: 'entity',
    id: e.id,
  })),
);
builder.objectField(
  ProjectRef,
  'triggeredRuns',
  triggeredRunsField('Runs for events in this project, newest first.', (p) => ({
    kind: 'project',
    id: p.id,
  })),
);
builder.objectField(
  RegistryRef,
  'triggeredRuns',
  triggeredRunsField('Runs for events in this registry, newest first.', (r) => ({
    kind: 'registry',
    id: r.id,
  })),
);
builder.objectField(
  AutomationRef,
  'triggeredRuns',
  triggeredRunsField('Runs of this automation, newest first.', (a) => ({
    kind: 'automation',
    id: a.id,
  })),
);

builder.queryField('triggeredRun', (t) =>
  t.field({
    type: TriggeredRunRef,
    nullable: true,
    description:
      'A run by ID: its `id`, which is also the `webhook-id` header of its deliveries. Null when the ID is malformed, names something other than a run, or names a run that does not exist or is not yours.',
    args: { id: t.arg.id({ description: 'ID of the run, `run_…`.' }) },
    resolve: async (_root, { id }, ctx) => {
      const runId = storedIdOf(id, 'TriggeredRun');
      const run = runId === null ? null : await getRun(ctx.deps, runId);
      return run && hasRole(ctx.viewer, run.entityId) ? run : null;
    },
  }),
);

builder.mutationField('retryTriggeredRun', (t) =>
  t.field({
    type: builder.objectRef<{ run: TriggeredRun }>('RetryTriggeredRunPayload').implement({
      description: 'A run queued again.',
      fields: (t) => ({
        run: t.field({
          type: TriggeredRunRef,
          description: 'The run, QUEUED again with its id kept.',
          resolve: (p) => p.run,
        }),
      }),
    }),
    description:
      'Re-delivers a finished run. The run keeps its id, so receivers see the same `webhook-id` and can de-duplicate. Members and admins.',
    errors: { types: [NotFoundError, ConflictError, PermissionDeniedError] },
    args: {
      input: t.arg({
        description: 'What to do.',
        type: builder.inputType('RetryTriggeredRunInput', {
          description: 'The run to re-deliver.',
          fields: (f) => ({ id: f.id({ description: 'Global ID of the run.' }) }),
        }),
      }),
    },
    resolve: async (_root, { input }, ctx) => ({
      run: await retryRun(ctx, decodeId(input.id, 'TriggeredRun', 'input.id')),
    }),
  }),
);

type AttemptSample = DeliveryStats['attempts'][number];

const AttemptOutcomeEnum = builder.enumType('DeliveryAttemptOutcome', {
  description: 'How a delivery attempt ended, as statistics count it.',
  values: {
    SUCCEEDED: { description: 'The receiver answered 2xx.' },
    HTTP_ERROR: { description: 'The receiver answered, with a status other than 2xx.' },
    NO_RESPONSE: {
      description: 'No HTTP answer: see `errorClass` (network error, timeout, interrupted…).',
    },
    IN_FLIGHT: { description: 'Started and not yet ended.' },
  } as const,
});

function outcomeOf(a: AttemptSample): 'SUCCEEDED' | 'HTTP_ERROR' | 'NO_RESPONSE' | 'IN_FLIGHT' {
  if (a.statusCode !== null) {
    return a.statusCode >= 200 && a.statusCode < 300 ? 'SUCCEEDED' : 'HTTP_ERROR';
  }
  return a.errorClass === null ? 'IN_FLIGHT' : 'NO_RESPONSE';
}

const AttemptSampleRef = builder.objectRef<AttemptSample>('DeliveryAttemptSample').implement({
  description: 'One delivery attempt, as delivery statistics count it.',
  fields: (t) => ({
    startedAt: t.expose('startedAt', { type: 'DateTime', description: 'When it started.' }),
    durationMs: t.exposeInt('durationMs', {
      nullable: true,
      description: 'How long it took, in milliseconds; null in flight and when INTERRUPTED.',
    }),
    statusCode: t.exposeInt('statusCode', {
      nullable: true,
      description: 'HTTP status of the answer, when there was one.',
    }),
    errorClass: t.field({
      type: DeliveryErrorClassEnum,
      nullable: true,
      description: 'Kind of failure without an HTTP answer.',
      resolve: (a) => (a.errorClass ?? null) as AttemptErrorClass | null,
    }),
    outcome: t.field({
      type: AttemptOutcomeEnum,
      description: 'How it ended.',
      resolve: outcomeOf,
    }),
  }),
});

const DeliveryBacklogRef = builder
  .objectRef<DeliveryStats['backlog']>('DeliveryBacklog')
  .implement({
    description: "The entity's runs not yet finished, by status: the delivery queue.",
    fields: (t) => ({
      queued: t.exposeInt('QUEUED', { description: 'Waiting for their first attempt.' }),
      running: t.exposeInt('RUNNING', { description: 'Being attempted now.' }),
      retrying: t.exposeInt('RETRYING', { description: 'Waiting for their next attempt.' }),
      total: t.int({
        description: 'All three together.',
        resolve: (b) => b.QUEUED + b.RUNNING + b.RETRYING,
      }),
    }),
  });

const DeliveryStatsRef = builder.objectRef<DeliveryStats>('DeliveryStats').implement({
  description:
    "An entity's recent delivery attempts and its delivery backlog, for charts: deliveries per minute by outcome and latency percentiles are computed from `attempts`.",
  fields: (t) => ({
    since: t.expose('since', { type: 'DateTime', description: 'Start of the window.' }),
    until: t.expose('until', { type: 'DateTime', description: 'End of the window: now.' }),
    attempts: t.field({
      type: [AttemptSampleRef],
      description: `Attempts started in the window, newest first, at most ${STATS_MAX_ATTEMPTS.toLocaleString('en')}.`,
      resolve: (s) => s.attempts,
    }),
    truncated: t.exposeBoolean('truncated', {
      description:
        'Whether the window held more attempts than `attempts` lists (the oldest left out).',
    }),
    backlog: t.field({
      type: DeliveryBacklogRef,
      description: 'Unfinished runs now.',
      resolve: (s) => s.backlog,
    }),
  }),
});

builder.objectField(EntityRef, 'deliveryStats', (t) =>
  t.field({
    type: DeliveryStatsRef,
    description: `Delivery attempts of the last \`minutes\` (default 60, at most ${STATS_MAX_MINUTES}) and the backlog of unfinished runs, for every member. A window out of range is refused with the GraphQL error code \`INVALID_ARGUMENT\`.`,
    args: {
      minutes: t.arg.int({
        required: false,
        defaultValue: 60,
        description: 'How far back the window reaches, in minutes.',
      }),
    },
    resolve: (entity, { minutes }, ctx) => deliveryStats(ctx.deps, entity.id, minutes ?? 60),
  }),
);
