import { and, asc, eq, inArray, type SQL, sql } from 'drizzle-orm';
import { newId } from '../../ids.js';
import type {
  ArtifactEvent,
  EventFilter,
  EventStore,
  EventType,
  NewArtifactEvent,
  RecordedEvent,
  RunFilter,
  RunOwner,
  RunStatus,
  RunStore,
  TriggeredRun,
} from '../events.js';
import { FINISHED_STATUSES, newArtifactEvent, queuedRunsOf } from '../events.js';
import { withinTimes } from '../paging.js';
import {
  artifactCollections,
  artifactEvents,
  automations,
  deliveryAttempts,
  RUN_STATUSES,
  type RunStatus as StoredRunStatus,
  triggeredRuns,
} from './schema.js';
import {
  countRows,
  keyset,
  type PgHandle,
  type SqlOrder,
  type Tx,
  uniqueViolation,
} from './support.js';

// The layer's unions name exactly the values the tables accept: a drift fails to compile.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;
true satisfies Same<RunStatus, StoredRunStatus>;
true satisfies Same<EventType, (typeof artifactEvents.$inferSelect)['eventType']>;

/** The columns of a {@link TriggeredRun}: what every run query reads. */
export const RUN_COLUMNS = {
  id: triggeredRuns.id,
  entityId: triggeredRuns.entityId,
  eventId: triggeredRuns.eventId,
  runEventId: triggeredRuns.runEventId,
  trainingRunId: triggeredRuns.trainingRunId,
  automationId: triggeredRuns.automationId,
  automationName: triggeredRuns.automationName,
  actionId: triggeredRuns.actionId,
  projectId: triggeredRuns.projectId,
  registryId: triggeredRuns.registryId,
  status: triggeredRuns.status,
  attemptCount: triggeredRuns.attemptCount,
  nextAttemptAt: triggeredRuns.nextAttemptAt,
  leaseOwner: triggeredRuns.leaseOwner,
  leaseExpiresAt: triggeredRuns.leaseExpiresAt,
  result: triggeredRuns.result,
  createdAt: triggeredRuns.createdAt,
  updatedAt: triggeredRuns.updatedAt,
  finishedAt: triggeredRuns.finishedAt,
} satisfies Record<keyof TriggeredRun, unknown>;

/** Newest first; the id orders runs (and events) of the same millisecond. */
const RUN_ORDER: SqlOrder = {
  direction: 'desc',
  columns: [triggeredRuns.createdAt, triggeredRuns.id],
};
const EVENT_ORDER: SqlOrder = {
  direction: 'desc',
  columns: [artifactEvents.createdAt, artifactEvents.id],
};

/** An event row as the layer's record (the metadata column may hold SQL NULL). */
type EventRow = typeof artifactEvents.$inferSelect;
const eventRecord = (row: EventRow): ArtifactEvent => row;

export function createEventStore(h: PgHandle): EventStore {
  const collectionOf = (tx: Tx, kind: 'project' | 'registry', ownerId: string, name: string) =>
    h
      .prepared(
        `events.collection:${kind}`,
        (x) =>
          x
            .select({
              id: artifactCollections.id,
              name: artifactCollections.name,
              artifactType: artifactCollections.artifactType,
            })
            .from(artifactCollections)
            .where(
              and(
                eq(
                  kind === 'project'
                    ? artifactCollections.projectId
                    : artifactCollections.registryId,
                  sql.placeholder('ownerId'),
                ),
                eq(artifactCollections.name, sql.placeholder('name')),
              ),
            ),
        tx,
      )
      .execute({ ownerId, name });

  /** The collection of the event's owner by name, created with the event's type if missing. */
  async function findOrCreateCollection(tx: Tx, input: NewArtifactEvent) {
    const [found] = await collectionOf(tx, input.owner.kind, input.owner.id, input.collectionName);
    if (found) return found;
    await h
      .prepared(
        'events.collection.insert',
        (x) =>
          x
            .insert(artifactCollections)
            .values({
              id: sql.placeholder('id'),
              entityId: sql.placeholder('entityId'),
              projectId: sql.placeholder('projectId'),
              registryId: sql.placeholder('registryId'),
              name: sql.placeholder('name'),
              artifactType: sql.placeholder('artifactType'),
            })
            // Another writer may have created it since the read: its row wins, read below (a
            // new statement, so it sees that writer's commit).
            .onConflictDoNothing(),
        tx,
      )
      .execute({
        id: newId(),
        entityId: input.entityId,
        projectId: input.owner.kind === 'project' ? input.owner.id : null,
        registryId: input.owner.kind === 'registry' ? input.owner.id : null,
        name: input.collectionName,
        artifactType: input.artifactType,
      });
    const [created] = await collectionOf(
      tx,
      input.owner.kind,
      input.owner.id,
      input.collectionName,
    );
    if (!created) throw new Error('The collection was neither found nor created.');
    return created;
  }

  async function insertEvent(tx: Tx, event: ArtifactEvent): Promise<void> {
    await h
      .prepared(
        'events.insert',
        (x) =>
          x.insert(artifactEvents).values({
            id: sql.placeholder('id'),
            entityId: sql.placeholder('entityId'),
            eventType: sql.placeholder('eventType'),
            projectId: sql.placeholder('projectId'),
            registryId: sql.placeholder('registryId'),
            collectionId: sql.placeholder('collectionId'),
            collectionName: sql.placeholder('collectionName'),
            artifactType: sql.placeholder('artifactType'),
            versionIndex: sql.placeholder('versionIndex'),
            alias: sql.placeholder('alias'),
            tag: sql.placeholder('tag'),
            author: sql.placeholder('author'),
            // Wrapped, so the JSON encoder is skipped: null must stay SQL NULL, not JSON null. `json`
            // (not jsonb) keeps the text as written: key order and all, as SQLite does.
            metadata: sql`${sql.placeholder('metadata')}::json`,
            idempotencyKey: sql.placeholder('idempotencyKey'),
            createdById: sql.placeholder('createdById'),
            createdAt: sql.placeholder('createdAt'),
          }),
        tx,
      )
      .execute({
        ...event,
        metadata: event.metadata === null ? null : JSON.stringify(event.metadata),
      });
  }

  /**
   * The enabled automations watching `eventType` on any of the scope ids (the entity, for ENTITY
   * scopes; the project or registry; the collection), oldest first, through
   * `automations_match_idx`; the entity is checked in code, as on SQLite.
   */
  const candidates = (tx: Tx, params: Record<string, string>) =>
    h
      .prepared(
        'events.candidates',
        (x) =>
          x
            .select({
              id: automations.id,
              entityId: automations.entityId,
              name: automations.name,
              actionId: automations.actionId,
              filterCollectionName: automations.filterCollectionName,
              filterArtifactType: automations.filterArtifactType,
              filterAliasPattern: automations.filterAliasPattern,
              filterTagPattern: automations.filterTagPattern,
            })
            .from(automations)
            .where(
              and(
                inArray(automations.scopeId, [
                  sql.placeholder('entityId'),
                  sql.placeholder('ownerId'),
                  sql.placeholder('collectionId'),
                ]),
                eq(automations.eventType, sql.placeholder('eventType')),
                eq(automations.enabled, true),
              ),
            )
            .orderBy(asc(automations.createdAt), asc(automations.id)),
        tx,
      )
      .execute(params);

  /** Inserts `runs` (all of one event, all QUEUED at its time) in one statement, in order. */
  async function insertRuns(tx: Tx, runs: readonly TriggeredRun[]): Promise<void> {
    if (runs.length === 0) return;
    await tx.insert(triggeredRuns).values(
      runs.map((run) => ({
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
        nextAttemptAt: run.nextAttemptAt,
        createdAt: run.createdAt,
        updatedAt: run.updatedAt,
      })),
    );
  }

  async function findByKey(entityId: string, key: string): Promise<RecordedEvent | null> {
    const [event] = await h
      .prepared('events.byIdempotencyKey', (x) =>
        x
          .select()
          .from(artifactEvents)
          .where(
            and(
              eq(artifactEvents.entityId, sql.placeholder('entityId')),
              eq(artifactEvents.idempotencyKey, sql.placeholder('key')),
            ),
          ),
      )
      .execute({ entityId, key });
    if (!event) return null;
    // The event's runs in the order they were queued, as recording returned them.
    const runs = await h
      .prepared('events.runs', (x) =>
        x
          .select(RUN_COLUMNS)
          .from(triggeredRuns)
          .where(eq(triggeredRuns.eventId, sql.placeholder('eventId')))
          .orderBy(asc(triggeredRuns.seq)),
      )
      .execute({ eventId: event.id });
    return { event: eventRecord(event), runs };
  }

  const eventConditions = (filter: EventFilter): SQL | undefined =>
    and(
      eq(artifactEvents.entityId, sql.placeholder('entityId')),
      filter.eventType ? eq(artifactEvents.eventType, sql.placeholder('eventType')) : undefined,
    );
  const eventParams = (filter: EventFilter) => ({
    entityId: filter.entityId,
    ...(filter.eventType ? { eventType: filter.eventType } : {}),
  });

  return {
    async recordEvent(input, accepts) {
      try {
        return await h.transaction(async (tx) => {
          const collection = await findOrCreateCollection(tx, input);
          if (collection.artifactType !== input.artifactType) {
            return {
              outcome: 'artifactTypeMismatch' as const,
              storedArtifactType: collection.artifactType,
            };
          }
          const event = newArtifactEvent(input, collection);
          await insertEvent(tx, event);
          const runs = queuedRunsOf(
            event,
            await candidates(tx, {
              entityId: input.entityId,
              ownerId: input.owner.id,
              collectionId: collection.id,
              eventType: input.eventType,
            }),
            accepts,
          );
          await insertRuns(tx, runs);
          return { outcome: 'recorded' as const, event, runs };
        });
      } catch (error) {
        // Two calls with one key raced, and the other committed first: its result is the answer.
        const key = input.idempotencyKey;
        if (key !== null && uniqueViolation(error) === 'artifact_events_idempotency_idx') {
          const first = await findByKey(input.entityId, key);
          if (first) return { outcome: 'replayed', ...first };
        }
        throw error;
      }
    },

    async findByIdempotencyKey(entityId, key) {
      return findByKey(entityId, key);
    },

    async getEvent(id) {
      const [row] = await h
        .prepared('events.get', (x) =>
          x
            .select()
            .from(artifactEvents)
            .where(eq(artifactEvents.id, sql.placeholder('id'))),
        )
        .execute({ id });
      return row ? eventRecord(row) : null;
    },

    async pageEvents(filter, request) {
      const page = keyset(EVENT_ORDER, request);
      const rows = await h
        .prepared(`events.page:${filter.eventType ? 't' : '-'}:${page.shape}`, (x) =>
          x
            .select()
            .from(artifactEvents)
            .where(and(eventConditions(filter), page.where))
            .orderBy(...page.orderBy)
            .limit(sql.placeholder('limit')),
        )
        .execute({ ...eventParams(filter), ...page.params });
      return rows.map(eventRecord);
    },

    async countEvents(filter) {
      return countRows(
        h,
        `events.count:${filter.eventType ? 't' : '-'}`,
        artifactEvents,
        () => eventConditions(filter),
        eventParams(filter),
      );
    },
  };
}

const OWNER_COLUMN = {
  entity: triggeredRuns.entityId,
  project: triggeredRuns.projectId,
  registry: triggeredRuns.registryId,
  automation: triggeredRuns.automationId,
  event: triggeredRuns.eventId,
  trainingRun: triggeredRuns.trainingRunId,
} as const;
type OwnerKind = keyof typeof OWNER_COLUMN;

/** Owners from the one with the fewest runs to the one with the most, as a rule of thumb. */
const NARROWEST_FIRST: readonly OwnerKind[] = [
  'event',
  'trainingRun',
  'automation',
  'project',
  'registry',
  'entity',
];

/** A history query in a form that names its SQL: its owner columns and how many statuses. */
interface RunQuery {
  owners: OwnerKind[];
  /** The filter's statuses, sorted; empty when it names none (any status). */
  statuses: RunStatus[];
  /**
   * How many statuses a page reads, one range of the owner's status index each: the filter's, or
   * every status when it names none. Their values are the placeholders `s0…`.
   */
  arms: number;
  params: Record<string, string | number>;
}

/** The query for `owner` and `filter`; null when no run can match. Time bounds are left out. */
function runQuery(owner: RunOwner, filter: RunFilter): RunQuery | null {
  const ids = new Map<OwnerKind, string>([[owner.kind, owner.id]]);
  if (filter.automationId) {
    const other = ids.get('automation');
    if (other !== undefined && other !== filter.automationId) return null;
    ids.set('automation', filter.automationId);
  }
  const owners = NARROWEST_FIRST.filter((kind) => ids.has(kind));
  const statuses = [...new Set(filter.statuses ?? [])].sort();
  const params: Record<string, string | number> = {};
  for (const [kind, id] of ids) params[kind] = id;
  const read = statuses.length > 0 ? statuses : RUN_STATUSES;
  read.forEach((status, i) => {
    params[`s${i}`] = status;
  });
  return { owners, statuses, arms: read.length, params };
}

/** A name for the SQL of `q` (its arms follow from the number of statuses). */
const runShape = (q: RunQuery): string => `${q.owners.join(',')}:${q.statuses.length}`;

/** The owner conditions of `q` (PostgreSQL's planner picks the index). */
const ownerConditions = (q: RunQuery): SQL[] =>
  q.owners.map((kind) => eq(OWNER_COLUMN[kind], sql.placeholder(kind)));

/** The owner and status conditions of `q`, for counting. */
function runConditions(q: RunQuery): SQL[] {
  const conditions = ownerConditions(q);
  if (q.statuses.length > 0) {
    conditions.push(
      inArray(
        triggeredRuns.status,
        q.statuses.map((_, i) => sql.placeholder(`s${i}`)),
      ),
    );
  }
  return conditions;
}

/** The filter's time bounds as conditions, for counting. */
function timeConditions(filter: RunFilter): {
  conditions: SQL[];
  shape: string;
  params: Record<string, number>;
} {
  const conditions: SQL[] = [];
  const params: Record<string, number> = {};
  if (filter.createdAfter) {
    conditions.push(sql`${triggeredRuns.createdAt} >= ${sql.placeholder('createdAfter')}`);
    params.createdAfter = filter.createdAfter.getTime();
  }
  if (filter.createdBefore) {
    conditions.push(sql`${triggeredRuns.createdAt} <= ${sql.placeholder('createdBefore')}`);
    params.createdBefore = filter.createdBefore.getTime();
  }
  const shape = `${filter.createdAfter ? 'a' : '-'}${filter.createdBefore ? 'b' : '-'}`;
  return { conditions, shape, params };
}

export function createRunStore(h: PgHandle): RunStore {
  return {
    async getRun(id) {
      const [row] = await h
        .prepared('runs.get', (x) =>
          x
            .select(RUN_COLUMNS)
            .from(triggeredRuns)
            .where(eq(triggeredRuns.id, sql.placeholder('id'))),
        )
        .execute({ id });
      return row ?? null;
    },

    async pageRuns(owner, filter, request) {
      const q = runQuery(owner, filter);
      if (q === null) return [];
      const page = keyset(RUN_ORDER, withinTimes(request, filter));
      return h
        .prepared(`runs.page:${runShape(q)}:${page.shape}`, (x) => {
          const select = (i: number) =>
            x
              .select(RUN_COLUMNS)
              .from(triggeredRuns)
              .where(
                and(
                  ...ownerConditions(q),
                  eq(triggeredRuns.status, sql.placeholder(`s${i}`)),
                  page.where,
                ),
              )
              .orderBy(...page.orderBy)
              .limit(sql.placeholder('limit'));
          if (q.arms === 1) return select(0);
          // One arm per status, each read from the (owner, status, created_at, id) index in list
          // order and limited on its own: PostgreSQL then merges them (Merge Append) and stops at
          // the limit, so nothing is sorted. (Without the arms' own order and limit it plans a
          // sort of every matching run.) The owners have no history index without the status.
          const [first, second, ...rest] = Array.from({ length: q.arms }, (_, i) => select(i));
          let union = first!.unionAll(second!);
          for (const arm of rest) union = union.unionAll(arm);
          return union.orderBy(...page.orderBy).limit(sql.placeholder('limit'));
        })
        .execute({ ...q.params, ...page.params });
    },

    async countRuns(owner, filter) {
      const q = runQuery(owner, filter);
      if (q === null) return 0;
      const times = timeConditions(filter);
      return countRows(
        h,
        `runs.count:${runShape(q)}:${times.shape}`,
        triggeredRuns,
        () => and(...runConditions(q), ...times.conditions),
        { ...q.params, ...times.params },
      );
    },

    async listAttempts(runId) {
      return h
        .prepared('runs.attempts', (x) =>
          x
            .select()
            .from(deliveryAttempts)
            .where(eq(deliveryAttempts.runId, sql.placeholder('runId')))
            .orderBy(asc(deliveryAttempts.attemptNumber)),
        )
        .execute({ runId });
    },

    async requeueRun(id, now, result) {
      const [row] = await h
        .prepared('runs.requeue', (x) =>
          x
            .update(triggeredRuns)
            .set({
              status: 'QUEUED',
              // The retry budget starts afresh; attempt numbers keep counting from the stored ones.
              attemptCount: 0,
              nextAttemptAt: sql`${sql.placeholder('now')}`,
              updatedAt: sql`${sql.placeholder('now')}`,
              finishedAt: sql`NULL`,
              leaseOwner: sql`NULL`,
              leaseExpiresAt: sql`NULL`,
              result: sql`${sql.placeholder('result')}`,
            })
            .where(
              and(
                eq(triggeredRuns.id, sql.placeholder('id')),
                inArray(triggeredRuns.status, [...FINISHED_STATUSES]),
              ),
            )
            .returning(RUN_COLUMNS),
        )
        .execute({ id, now: now.getTime(), result });
      return row ?? null;
    },

    async deliveryActivity(entityId, since, limit) {
      // One snapshot, so the attempts and the backlog describe the same moment.
      return h.transaction(
        async (tx) => {
          const { rows } = await tx.execute<{
            started_at: number;
            duration_ms: number | null;
            status_code: number | null;
            error_class: string | null;
          }>(
            sql`SELECT d.started_at::float8 AS started_at, d.duration_ms, d.status_code, d.error_class
              FROM delivery_attempts d
              JOIN triggered_runs r ON r.id = d.run_id
              WHERE d.started_at >= ${since.getTime()} AND r.entity_id = ${entityId}
              ORDER BY d.started_at DESC
              LIMIT ${limit + 1}`,
          );
          const backlog = { QUEUED: 0, RUNNING: 0, RETRYING: 0 };
          const groups = await tx.execute<{ status: keyof typeof backlog; n: number }>(
            sql`SELECT status, count(*)::int AS n FROM triggered_runs
              WHERE entity_id = ${entityId} AND status IN ('QUEUED', 'RUNNING', 'RETRYING')
              GROUP BY status`,
          );
          for (const { status, n } of groups.rows) backlog[status] = n;
          return {
            attempts: rows.slice(0, limit).map((row) => ({
              startedAt: new Date(row.started_at),
              durationMs: row.duration_ms,
              statusCode: row.status_code,
              errorClass: row.error_class,
            })),
            truncated: rows.length > limit,
            backlog,
          };
        },
        { isolationLevel: 'repeatable read', accessMode: 'read only' },
      );
    },
  };
}
