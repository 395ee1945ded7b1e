import { sql } from 'drizzle-orm';
import {
  type AnyPgColumn,
  bigint,
  boolean,
  customType,
  index,
  integer,
  json,
  pgTable,
  primaryKey,
  text,
  uniqueIndex,
} from 'drizzle-orm/pg-core';
import {
  ACTION_KINDS,
  EVENT_TYPES,
  type RunCondition,
  SCOPE_TYPES,
  SLACK_SEVERITIES,
  TRAINING_RUN_STATES,
} from '../config.js';

/**
 * A time as epoch milliseconds in a `bigint`, a `Date` in TypeScript. The same representation as
 * SQLite's `timestamp_ms` columns, so a keyset position (times as epoch milliseconds, see
 * paging.ts) compares against the column as it is, and both engines order times alike.
 */
export const epochMs = customType<{ data: Date; driverData: string | number }>({
  dataType: () => 'bigint',
  toDriver: (value) => value.getTime(),
  fromDriver: (value) => new Date(Number(value)),
});

const createdAt = () =>
  epochMs('created_at')
    .notNull()
    .default(sql`((extract(epoch from clock_timestamp()) * 1000)::bigint)`);

/**
 * The order rows were written in, where SQLite uses its rowid: entries of one millisecond in the
 * audit log, runs due at the same time in claims.
 */
const sequence = () => bigint('seq', { mode: 'number' }).generatedAlwaysAsIdentity();

export const users = pgTable('users', {
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  kind: text('kind', { enum: ['USER', 'SERVICE_ACCOUNT'] }).notNull(),
  createdAt: createdAt(),
});

export const apiKeys = pgTable(
  'api_keys',
  {
    id: text('id').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    /** First characters of the key, safe to show so a person can tell keys apart. */
    prefix: text('prefix').notNull(),
    /** SHA-256 of the whole key, hex. The key itself is never stored. */
    hash: text('hash').notNull(),
    createdAt: createdAt(),
    lastUsedAt: epochMs('last_used_at'),
    revokedAt: epochMs('revoked_at'),
  },
  (t) => [uniqueIndex('api_keys_hash_idx').on(t.hash), index('api_keys_user_idx').on(t.userId)],
);

export const entities = pgTable(
  'entities',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('entities_name_idx').on(t.name)],
);

export const memberships = pgTable(
  'memberships',
  {
    entityId: text('entity_id')
      .notNull()
      .references(() => entities.id, { onDelete: 'cascade' }),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    role: text('role', { enum: ['ADMIN', 'MEMBER', 'VIEWER'] }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    primaryKey({ columns: [t.entityId, t.userId] }),
    index('memberships_user_idx').on(t.userId),
  ],
);

export const projects = pgTable(
  'projects',
  {
    id: text('id').primaryKey(),
    entityId: text('entity_id')
      .notNull()
      .references(() => entities.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    description: text('description'),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('projects_entity_name_idx').on(t.entityId, t.name)],
);

export const registries = pgTable(
  'registries',
  {
    id: text('id').primaryKey(),
    entityId: text('entity_id')
      .notNull()
      .references(() => entities.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    description: text('description'),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('registries_entity_name_idx').on(t.entityId, t.name)],
);

/** A collection lives in exactly one project or one registry. */
export const artifactCollections = pgTable(
  'artifact_collections',
  {
    id: text('id').primaryKey(),
    entityId: text('entity_id')
      .notNull()
      .references(() => entities.id, { onDelete: 'cascade' }),
    projectId: text('project_id').references(() => projects.id, { onDelete: 'cascade' }),
    registryId: text('registry_id').references(() => registries.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    artifactType: text('artifact_type').notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('collections_project_name_idx').on(t.projectId, t.name),
    uniqueIndex('collections_registry_name_idx').on(t.registryId, t.name),
    index('collections_entity_idx').on(t.entityId),
  ],
);

export const secrets = pgTable(
  'secrets',
  {
    id: text('id').primaryKey(),
    entityId: text('entity_id')
      .notNull()
      .references(() => entities.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    /** AES-256-GCM envelope produced by the secret box; never the plaintext. */
    ciphertext: text('ciphertext').notNull(),
    createdAt: createdAt(),
    createdById: text('created_by_id').references(() => users.id, { onDelete: 'set null' }),
    rotatedAt: epochMs('rotated_at'),
    rotatedById: text('rotated_by_id').references(() => users.id, { onDelete: 'set null' }),
  },
  (t) => [uniqueIndex('secrets_entity_name_idx').on(t.entityId, t.name)],
);

export const actions = pgTable(
  'actions',
  {
    id: text('id').primaryKey(),
    entityId: text('entity_id')
      .notNull()
      .references(() => entities.id, { onDelete: 'cascade' }),
    kind: text('kind', { enum: ACTION_KINDS }).notNull(),
    name: text('name').notNull(),
    enabled: boolean('enabled').notNull().default(true),
    /** Webhook: destination URL. */
    url: text('url'),
    /** Webhook: secret sent as `Authorization: Bearer …`. */
    accessTokenSecretId: text('access_token_secret_id').references(() => secrets.id),
    /** Webhook: secret holding the `whsec_…` signing key. */
    signingSecretId: text('signing_secret_id').references(() => secrets.id),
    /** Webhook: extra headers, an object of strings. */
    headers: json('headers').$type<Record<string, string>>(),
    /** Slack: the channel label shown to people. */
    channel: text('channel'),
    /** Slack: secret holding the incoming-webhook URL. */
    slackUrlSecretId: text('slack_url_secret_id').references(() => secrets.id),
    disabledReason: text('disabled_reason'),
    createdAt: createdAt(),
    createdById: text('created_by_id').references(() => users.id, { onDelete: 'set null' }),
    updatedAt: epochMs('updated_at'),
  },
  (t) => [
    uniqueIndex('actions_entity_name_idx').on(t.entityId, t.name),
    index('actions_access_token_secret_idx').on(t.accessTokenSecretId),
    index('actions_signing_secret_idx').on(t.signingSecretId),
    index('actions_slack_url_secret_idx').on(t.slackUrlSecretId),
  ],
);

export const automations = pgTable(
  'automations',
  {
    id: text('id').primaryKey(),
    entityId: text('entity_id')
      .notNull()
      .references(() => entities.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    description: text('description'),
    enabled: boolean('enabled').notNull().default(true),
    eventType: text('event_type', { enum: EVENT_TYPES }).notNull(),
    scopeType: text('scope_type', { enum: SCOPE_TYPES }).notNull(),
    /** The project, registry, collection or (ENTITY scope) entity id named by `scopeType`. */
    scopeId: text('scope_id').notNull(),
    filterCollectionName: text('filter_collection_name'),
    filterArtifactType: text('filter_artifact_type'),
    filterAliasPattern: text('filter_alias_pattern'),
    filterTagPattern: text('filter_tag_pattern'),
    filterRunNamePattern: text('filter_run_name_pattern'),
    /** Not a foreign key: an automation keeps its filter (and matches nothing) once the user is gone. */
    filterRunReportedById: text('filter_run_reported_by_id'),
    /** Run events: the condition (see RunCondition). */
    runCondition: json('run_condition').$type<RunCondition>(),
    cooldownSeconds: integer('cooldown_seconds'),
    actionId: text('action_id')
      .notNull()
      .references(() => actions.id),
    /** Webhook: JSON payload template; null sends the default envelope. */
    payloadTemplate: text('payload_template'),
    slackTitle: text('slack_title'),
    slackMessage: text('slack_message'),
    slackSeverity: text('slack_severity', { enum: SLACK_SEVERITIES }),
    createdAt: createdAt(),
    createdById: text('created_by_id').references(() => users.id, { onDelete: 'set null' }),
    updatedAt: epochMs('updated_at'),
  },
  (t) => [
    uniqueIndex('automations_entity_name_idx').on(t.entityId, t.name),
    index('automations_match_idx').on(t.scopeId, t.eventType, t.enabled),
    index('automations_action_idx').on(t.actionId),
  ],
);

/** Which secrets an automation's templates name, so a secret in use cannot be deleted. */
export const automationSecretRefs = pgTable(
  'automation_secret_refs',
  {
    automationId: text('automation_id')
      .notNull()
      .references(() => automations.id, { onDelete: 'cascade' }),
    secretId: text('secret_id')
      .notNull()
      .references(() => secrets.id),
  },
  (t) => [
    primaryKey({ columns: [t.automationId, t.secretId] }),
    index('automation_secret_refs_secret_idx').on(t.secretId),
  ],
);

export const artifactEvents = pgTable(
  'artifact_events',
  {
    id: text('id').primaryKey(),
    entityId: text('entity_id')
      .notNull()
      .references(() => entities.id, { onDelete: 'cascade' }),
    eventType: text('event_type', { enum: EVENT_TYPES }).notNull(),
    projectId: text('project_id').references(() => projects.id, { onDelete: 'cascade' }),
    registryId: text('registry_id').references(() => registries.id, { onDelete: 'cascade' }),
    collectionId: text('collection_id').references(() => artifactCollections.id, {
      onDelete: 'cascade',
    }),
    collectionName: text('collection_name').notNull(),
    artifactType: text('artifact_type').notNull(),
    versionIndex: integer('version_index').notNull(),
    alias: text('alias'),
    tag: text('tag'),
    author: text('author').notNull(),
    metadata: json('metadata').$type<Record<string, unknown>>(),
    idempotencyKey: text('idempotency_key'),
    createdById: text('created_by_id').references(() => users.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('artifact_events_idempotency_idx').on(t.entityId, t.idempotencyKey),
    index('artifact_events_entity_created_idx').on(t.entityId, t.createdAt),
    index('artifact_events_project_idx').on(t.projectId, t.createdAt),
    index('artifact_events_registry_idx').on(t.registryId, t.createdAt),
  ],
);

/** A training run a pipeline reports (W&B's "run"), unique by name in its project. */
export const trainingRuns = pgTable(
  'training_runs',
  {
    id: text('id').primaryKey(),
    entityId: text('entity_id')
      .notNull()
      .references(() => entities.id, { onDelete: 'cascade' }),
    projectId: text('project_id')
      .notNull()
      .references(() => projects.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    state: text('state', { enum: TRAINING_RUN_STATES }).notNull(),
    /** Who first reported the run; null once that account is deleted. */
    reportedById: text('reported_by_id').references(() => users.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
    updatedAt: epochMs('updated_at').notNull(),
  },
  (t) => [
    uniqueIndex('training_runs_project_name_idx').on(t.projectId, t.name),
    index('training_runs_project_created_idx').on(t.projectId, t.createdAt, t.id),
  ],
);

/** The last values of one metric of one run (see the SQLite schema). */
export const runMetricWindows = pgTable(
  'run_metric_windows',
  {
    trainingRunId: text('training_run_id')
      .notNull()
      .references(() => trainingRuns.id, { onDelete: 'cascade' }),
    projectId: text('project_id').notNull(),
    name: text('name').notNull(),
    lastStep: integer('last_step').notNull(),
    /** Points accepted so far (the window keeps the last ones). */
    count: integer('count').notNull(),
    /** The values, oldest first. */
    recent: json('recent').$type<number[]>().notNull(),
    updatedAt: epochMs('updated_at').notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.trainingRunId, t.name] }),
    // Z-scores: the latest values of a metric in the project's most recently updated runs.
    index('run_metric_windows_peers_idx').on(t.projectId, t.name, t.updatedAt),
  ],
);

/** One reportRunState or logRunMetrics call, for its idempotency key. */
export const runReports = pgTable(
  'run_reports',
  {
    id: text('id').primaryKey(),
    entityId: text('entity_id')
      .notNull()
      .references(() => entities.id, { onDelete: 'cascade' }),
    trainingRunId: text('training_run_id')
      .notNull()
      .references(() => trainingRuns.id, { onDelete: 'cascade' }),
    kind: text('kind', { enum: ['STATE', 'METRICS'] }).notNull(),
    acceptedPoints: integer('accepted_points').notNull(),
    idempotencyKey: text('idempotency_key'),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('run_reports_idempotency_idx').on(t.entityId, t.idempotencyKey)],
);

/** A run condition that fired: what its triggered run renders. */
export const runEvents = pgTable(
  'run_events',
  {
    id: text('id').primaryKey(),
    entityId: text('entity_id')
      .notNull()
      .references(() => entities.id, { onDelete: 'cascade' }),
    projectId: text('project_id')
      .notNull()
      .references(() => projects.id, { onDelete: 'cascade' }),
    trainingRunId: text('training_run_id')
      .notNull()
      .references(() => trainingRuns.id, { onDelete: 'cascade' }),
    reportId: text('report_id')
      .notNull()
      .references(() => runReports.id, { onDelete: 'cascade' }),
    eventType: text('event_type', { enum: EVENT_TYPES }).notNull(),
    /** The run's state when the condition fired. */
    runState: text('run_state', { enum: TRAINING_RUN_STATES }).notNull(),
    metricName: text('metric_name'),
    /** The values the condition looked at, oldest first. */
    metricValues: json('metric_values').$type<number[]>(),
    /** The condition that fired, for people. */
    condition: text('condition').notNull(),
    createdAt: createdAt(),
  },
  (t) => [index('run_events_report_idx').on(t.reportId)],
);

/** When an automation last fired for a run, for its cooldown. */
export const runAutomationFirings = pgTable(
  'run_automation_firings',
  {
    automationId: text('automation_id')
      .notNull()
      .references(() => automations.id, { onDelete: 'cascade' }),
    trainingRunId: text('training_run_id')
      .notNull()
      .references(() => trainingRuns.id, { onDelete: 'cascade' }),
    firedAt: epochMs('fired_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.trainingRunId, t.automationId] })],
);

export const RUN_STATUSES = [
  'QUEUED',
  'RUNNING',
  'RETRYING',
  'SUCCEEDED',
  'FAILED',
  'SKIPPED',
] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export const triggeredRuns = pgTable(
  'triggered_runs',
  {
    id: text('id').primaryKey(),
    /** Insertion order: orders runs due at the same time in claims, and an event's runs. */
    seq: sequence(),
    entityId: text('entity_id')
      .notNull()
      .references(() => entities.id, { onDelete: 'cascade' }),
    /** The artifact event that triggered the run; null for a run event's run. */
    eventId: text('event_id').references(() => artifactEvents.id, { onDelete: 'cascade' }),
    /** The run event (a fired run condition) that triggered the run; null for artifact events. */
    runEventId: text('run_event_id').references((): AnyPgColumn => runEvents.id, {
      onDelete: 'cascade',
    }),
    /** The training run of `runEventId`, for its history; null for artifact events. */
    trainingRunId: text('training_run_id'),
    /** Kept when the automation is deleted, so history survives; the run is then skipped. */
    automationId: text('automation_id').references((): AnyPgColumn => automations.id, {
      onDelete: 'set null',
    }),
    automationName: text('automation_name').notNull(),
    actionId: text('action_id').references(() => actions.id, { onDelete: 'set null' }),
    projectId: text('project_id'),
    registryId: text('registry_id'),
    status: text('status', { enum: RUN_STATUSES }).notNull(),
    attemptCount: integer('attempt_count').notNull().default(0),
    /** When the run may next be claimed (QUEUED and RETRYING runs). */
    nextAttemptAt: epochMs('next_attempt_at'),
    leaseOwner: text('lease_owner'),
    leaseExpiresAt: epochMs('lease_expires_at'),
    /**
     * When the delivery engine may take the run next (see the SQLite schema): computed by
     * PostgreSQL from the columns above, stored, and indexed for claims.
     */
    dueAt: epochMs('due_at').generatedAlwaysAs(
      sql`CASE WHEN "status" IN ('QUEUED', 'RETRYING') THEN coalesce("next_attempt_at", 0) WHEN "status" = 'RUNNING' THEN coalesce("lease_expires_at", 0) END`,
    ),
    result: text('result'),
    createdAt: createdAt(),
    updatedAt: epochMs('updated_at'),
    finishedAt: epochMs('finished_at'),
  },
  (t) => [
    // Claims read due runs oldest first, equal times in insertion order, straight from this index.
    index('triggered_runs_due_idx').on(t.dueAt, t.seq).where(sql`${t.dueAt} IS NOT NULL`),
    // The same runs by action, for claims that pass over some actions (see the SQLite schema).
    index('triggered_runs_action_due_idx')
      .on(t.actionId, t.dueAt, t.seq)
      .where(sql`${t.dueAt} IS NOT NULL`),
    index('triggered_runs_event_seq_idx').on(t.eventId, t.seq),
    index('triggered_runs_run_event_seq_idx').on(t.runEventId, t.seq),
    // History: each owner's runs by status, newest first. A page over several statuses (or all
    // of them, when the filter names none) reads one range per status and merges them in order
    // (see the SQLite schema).
    index('triggered_runs_entity_status_created_idx').on(t.entityId, t.status, t.createdAt, t.id),
    // The other owners are null on many runs (an artifact event's run has no training run and no
    // project or no registry, a run event's run no event and no registry, a deleted automation's
    // runs no automation), so their indexes leave those runs out: recording an event writes fewer
    // index entries. A history query's `owner = ?` implies `owner IS NOT NULL`, which is what the
    // database needs to read a partial index.
    ...(
      [
        ['project', t.projectId],
        ['registry', t.registryId],
        ['automation', t.automationId],
        ['event', t.eventId],
        ['training_run', t.trainingRunId],
      ] as const
    ).map(([owner, column]) =>
      index(`triggered_runs_${owner}_status_created_idx`)
        .on(column, t.status, t.createdAt, t.id)
        .where(sql`${column} IS NOT NULL`),
    ),
  ],
);

export const deliveryAttempts = pgTable(
  'delivery_attempts',
  {
    id: text('id').primaryKey(),
    runId: text('run_id')
      .notNull()
      .references(() => triggeredRuns.id, { onDelete: 'cascade' }),
    attemptNumber: integer('attempt_number').notNull(),
    startedAt: epochMs('started_at').notNull(),
    /** Null while the attempt is in flight (see the SQLite schema). */
    durationMs: integer('duration_ms'),
    statusCode: integer('status_code'),
    /** A delivery error class, `INTERRUPTED`, or null for an HTTP answer or while in flight. */
    errorClass: text('error_class'),
    errorMessage: text('error_message'),
    responseBody: text('response_body'),
  },
  (t) => [
    uniqueIndex('delivery_attempts_run_idx').on(t.runId, t.attemptNumber),
    // Delivery statistics read the last hour's attempts in start order.
    index('delivery_attempts_started_idx').on(t.startedAt),
  ],
);

export const auditLog = pgTable(
  'audit_log',
  {
    id: text('id').primaryKey(),
    /** Orders entries written in the same millisecond. */
    seq: sequence(),
    entityId: text('entity_id').references(() => entities.id, { onDelete: 'cascade' }),
    actorId: text('actor_id').references(() => users.id, { onDelete: 'set null' }),
    action: text('action').notNull(),
    targetType: text('target_type').notNull(),
    targetId: text('target_id'),
    details: json('details').$type<Record<string, unknown>>(),
    createdAt: createdAt(),
  },
  (t) => [index('audit_log_entity_idx').on(t.entityId, t.createdAt, t.seq)],
);
