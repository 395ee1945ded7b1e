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
  type EventType as StoredEventType,
  type RunStatus as StoredRunStatus,
  triggeredRuns,
} from './schema.js';
import { countRows, keyset, type SqliteHandle, type SqlOrder, uniqueViolation } from './support.js';

// The layer's unions name exactly the values the tables accept: a drift fails to compile.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;
true satisfies Same<EventType, StoredEventType>;
true satisfies Same<RunStatus, StoredRunStatus>;

/**
 * Runs inserted by one statement at most. A smaller remainder has its own statement, prepared
 * on first use, so at most this many insert shapes are ever prepared.
 */
export const RUNS_PER_INSERT = 64;

/** The columns of a {@link TriggeredRun}: what every run query reads. */
const RUN_COLUMNS = {
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

export function createEventStore(h: SqliteHandle): EventStore {
  const collectionOf = (kind: 'project' | 'registry') =>
    h.prepared(`events.collection:${kind}`, () =>
      h.db
        .select({
          id: artifactCollections.id,
          name: artifactCollections.name,
          artifactType: artifactCollections.artifactType,
        })
        .from(artifactCollections)
        .where(
          and(
            eq(
              kind === 'project' ? artifactCollections.projectId : artifactCollections.registryId,
              sql.placeholder('ownerId'),
            ),
            eq(artifactCollections.name, sql.placeholder('name')),
          ),
        )
        .prepare(),
    );

  /** The collection of the event's owner by name, created with the event's type if missing. */
  function findOrCreateCollection(input: NewArtifactEvent) {
    const find = collectionOf(input.owner.kind);
    const key = { ownerId: input.owner.id, name: input.collectionName };
    const found = find.get(key);
    if (found) return found;
    h.prepared('events.collection.insert', () =>
      h.db
        .insert(artifactCollections)
        .values({
          id: sql.placeholder('id'),
          entityId: sql.placeholder('entityId'),
          projectId: sql.placeholder('projectId'),
          registryId: sql.placeholder('registryId'),
          name: sql.placeholder('name'),
          artifactType: sql.placeholder('artifactType'),
        })
        // Another writer may have created it since the read: its row wins, read below.
        .onConflictDoNothing()
        .prepare(),
    ).run({
      id: newId(),
      entityId: input.entityId,
      projectId: input.owner.kind === 'project' ? input.owner.id : null,
      registryId: input.owner.kind === 'registry' ? input.owner.id : null,
      name: input.collectionName,
      artifactType: input.artifactType,
    });
    const created = find.get(key);
    if (!created) throw new Error('The collection was neither found nor created.');
    return created;
  }

  function insertEvent(event: ArtifactEvent): void {
    h.prepared('events.insert', () =>
      h.db
        .insert(artifactEvents)
        .values({
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
          // Wrapped, so the JSON encoder is skipped: null must stay SQL NULL, not the text 'null'.
          metadata: sql`${sql.placeholder('metadata')}`,
          idempotencyKey: sql.placeholder('idempotencyKey'),
          createdById: sql.placeholder('createdById'),
          createdAt: sql.placeholder('createdAt'),
        })
        .prepare(),
    ).run({
      ...event,
      metadata: event.metadata === null ? null : JSON.stringify(event.metadata),
    });
  }

  /**
   * The enabled automations watching `eventType` on any of the scope ids (the entity, for ENTITY
   * scopes; the project or registry; the collection), oldest first, with the
   * entity to check. One statement through `automations_match_idx`, whatever the number of
   * automations; the entity is checked in code, because an `entity_id = ?` term tempts SQLite
   * into the name index, which scans every automation of the entity (scope ids are unique anyway).
   */
  const candidates = () =>
    h.prepared('events.candidates', () =>
      h.db
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
        .orderBy(asc(automations.createdAt), asc(automations.id))
        .prepare(),
    );

  /** Inserts `runs` (all of one event, all QUEUED at `now`) with one statement per chunk. */
  function insertRuns(event: ArtifactEvent, runs: readonly TriggeredRun[]): void {
    const shared = {
      entityId: event.entityId,
      eventId: event.id,
      projectId: event.projectId,
      registryId: event.registryId,
      now: event.createdAt.getTime(),
    };
    for (let start = 0; start < runs.length; start += RUNS_PER_INSERT) {
      const chunk = runs.slice(start, start + RUNS_PER_INSERT);
      const values: (string | null)[] = [];
      for (const run of chunk)
        values.push(run.id, run.automationId, run.automationName, run.actionId);
      insertRunsStatement(chunk.length).run(...values, shared);
    }
  }

  const insertRunsStatement = (rows: number) =>
    h.prepared(`events.insertRuns:${rows}`, () =>
      h.sqlite.prepare(
        `insert into triggered_runs (id, entity_id, event_id, automation_id, automation_name,
          action_id, project_id, registry_id, status, attempt_count, next_attempt_at, created_at,
          updated_at) values ${Array.from(
            { length: rows },
            () =>
              "(?, @entityId, @eventId, ?, ?, ?, @projectId, @registryId, 'QUEUED', 0, @now, @now, @now)",
          ).join(', ')}`,
      ),
    );

  const eventByKey = () =>
    h.prepared('events.byIdempotencyKey', () =>
      h.db
        .select()
        .from(artifactEvents)
        .where(
          and(
            eq(artifactEvents.entityId, sql.placeholder('entityId')),
            eq(artifactEvents.idempotencyKey, sql.placeholder('key')),
          ),
        )
        .prepare(),
    );

  /** An event's runs in the order they were queued (rowid order), as recording returned them. */
  const runsOfEvent = () =>
    h.prepared('events.runs', () =>
      h.db
        .select(RUN_COLUMNS)
        .from(triggeredRuns)
        .where(eq(triggeredRuns.eventId, sql.placeholder('eventId')))
        .orderBy(sql`rowid`)
        .prepare(),
    );

  function findByKey(entityId: string, key: string): RecordedEvent | null {
    const event = eventByKey().get({ entityId, key });
    if (!event) return null;
    return { event, runs: runsOfEvent().all({ eventId: event.id }) };
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
        return await h.grouped(() => {
          const collection = findOrCreateCollection(input);
          if (collection.artifactType !== input.artifactType) {
            return {
              outcome: 'artifactTypeMismatch' as const,
              storedArtifactType: collection.artifactType,
            };
          }
          const event = newArtifactEvent(input, collection);
          insertEvent(event);
          const runs = queuedRunsOf(
            event,
            candidates().all({
              entityId: input.entityId,
              ownerId: input.owner.id,
              collectionId: collection.id,
              eventType: input.eventType,
            }),
            accepts,
          );
          insertRuns(event, runs);
          return { outcome: 'recorded' as const, event, runs };
        });
      } catch (error) {
        // Two calls with one key raced, and the other committed first: its result is the answer.
        const key = input.idempotencyKey;
        if (key !== null && uniqueViolation(error)?.includes('idempotency_key')) {
          const first = findByKey(input.entityId, key);
          if (first) return { outcome: 'replayed', ...first };
        }
        throw error;
      }
    },

    async findByIdempotencyKey(entityId, key) {
      return findByKey(entityId, key);
    },

    async getEvent(id) {
      return (
        h
          .prepared('events.get', () =>
            h.db
              .select()
              .from(artifactEvents)
              .where(eq(artifactEvents.id, sql.placeholder('id')))
              .prepare(),
          )
          .get({ id }) ?? null
      );
    },

    async pageEvents(filter, request) {
      const page = keyset(EVENT_ORDER, request);
      return h
        .prepared(`events.page:${filter.eventType ? 't' : '-'}:${page.shape}`, () =>
          h.db
            .select()
            .from(artifactEvents)
            .where(and(eventConditions(filter), page.where))
            .orderBy(...page.orderBy)
            .limit(sql.placeholder('limit'))
            .prepare(),
        )
        .all({ ...eventParams(filter), ...page.params });
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

/**
 * A history query in a form that names its SQL: which owner column leads (its index answers the
 * query), which other owner columns are checked on the rows found, and which statuses.
 */
interface RunQuery {
  lead: OwnerKind;
  checked: OwnerKind[];
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
  const [lead, ...checked] = NARROWEST_FIRST.filter((kind) => ids.has(kind)) as [
    OwnerKind,
    ...OwnerKind[],
  ];
  const statuses = [...new Set(filter.statuses ?? [])].sort();
  const read = statuses.length > 0 ? statuses : RUN_STATUSES;
  const params: Record<string, string | number> = {};
  for (const [kind, id] of ids) params[kind] = id;
  read.forEach((status, i) => {
    params[`s${i}`] = status;
  });
  return { lead, checked, statuses, arms: read.length, params };
}

/** A name for the SQL of `q` (its arms follow from the number of statuses). */
const runShape = (q: RunQuery): string => `${q.lead}:${q.checked.join(',')}:${q.statuses.length}`;

/**
 * The owner conditions of `q`. Checked owners are written `+column = ?`: the unary plus keeps
 * SQLite from answering them from their own index, so the lead owner's index is the one used,
 * whatever SQLite guesses about the data.
 */
function ownerConditions(q: RunQuery): SQL[] {
  const conditions: SQL[] = [eq(OWNER_COLUMN[q.lead], sql.placeholder(q.lead))];
  for (const kind of q.checked) {
    conditions.push(sql`+${OWNER_COLUMN[kind]} = ${sql.placeholder(kind)}`);
  }
  return conditions;
}

/** `status = ?` for the query's status number `i`. */
const statusIs = (i: number): SQL => eq(triggeredRuns.status, sql.placeholder(`s${i}`));

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

export { RUN_COLUMNS };

export function createRunStore(h: SqliteHandle): RunStore {
  const getRun = () =>
    h.prepared('runs.get', () =>
      h.db
        .select(RUN_COLUMNS)
        .from(triggeredRuns)
        .where(eq(triggeredRuns.id, sql.placeholder('id')))
        .prepare(),
    );

  return {
    async getRun(id) {
      return getRun().get({ id }) ?? null;
    },

    async pageRuns(owner, filter, request) {
      const q = runQuery(owner, filter);
      if (q === null) return [];
      const page = keyset(RUN_ORDER, withinTimes(request, filter));
      const statement = h.prepared(`runs.page:${runShape(q)}:${page.shape}`, () => {
        const select = (status: number) =>
          h.db
            .select(RUN_COLUMNS)
            .from(triggeredRuns)
            .where(and(...ownerConditions(q), statusIs(status), page.where));
        if (q.arms === 1) {
          return select(0)
            .orderBy(...page.orderBy)
            .limit(sql.placeholder('limit'))
            .prepare();
        }
        // One arm per status, each read from the (owner, status, created_at, id) index in list
        // order; SQLite merges them and stops at the limit, so nothing is sorted. `status IN`
        // would read every matching run and sort them. A page of any status does the same over
        // every status: the owners have no history index without the status (see the schema).
        const [first, second, ...rest] = Array.from({ length: q.arms }, (_, i) => select(i));
        let union = first!.unionAll(second!);
        for (const arm of rest) union = union.unionAll(arm);
        return union
          .orderBy(...page.orderBy)
          .limit(sql.placeholder('limit'))
          .prepare();
      });
      return statement.all({ ...q.params, ...page.params });
    },

    async countRuns(owner, filter) {
      const q = runQuery(owner, filter);
      if (q === null) return 0;
      const times = timeConditions(filter);
      return countRows(
        h,
        `runs.count:${runShape(q)}:${times.shape}`,
        triggeredRuns,
        () =>
          and(
            ...ownerConditions(q),
            ...times.conditions,
            q.statuses.length === 0
              ? undefined
              : inArray(
                  triggeredRuns.status,
                  q.statuses.map((_, i) => sql.placeholder(`s${i}`)),
                ),
          ),
        { ...q.params, ...times.params },
      );
    },

    async listAttempts(runId) {
      return h
        .prepared('runs.attempts', () =>
          h.db
            .select()
            .from(deliveryAttempts)
            .where(eq(deliveryAttempts.runId, sql.placeholder('runId')))
            .orderBy(asc(deliveryAttempts.attemptNumber))
            .prepare(),
        )
        .all({ runId });
    },

    async requeueRun(id, now, result) {
      return (
        h
          .prepared('runs.requeue', () =>
            h.db
              .update(triggeredRuns)
              .set({
                status: 'QUEUED',
                // The retry budget starts afresh; attempt numbers keep counting from the stored ones.
                attemptCount: 0,
                // Wrapped placeholders (`set` takes no bare one): values go in as stored.
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
              .returning(RUN_COLUMNS)
              .prepare(),
          )
          .get({ id, now: now.getTime(), result }) ?? null
      );
    },

    async deliveryActivity(entityId, since, limit) {
      // Read in one transaction, so the attempts and the backlog describe the same moment.
      return h.sqlite.transaction(() => {
        const rows = h
          .prepared('runs.activity.attempts', () => h.sqlite.prepare(RECENT_ATTEMPTS).raw(true))
          .all({ entityId, since: since.getTime(), limit: limit + 1 }) as [
          number,
          number | null,
          number | null,
          string | null,
        ][];
        const backlog = { QUEUED: 0, RUNNING: 0, RETRYING: 0 };
        const groups = h
          .prepared('runs.activity.backlog', () => h.sqlite.prepare(ENTITY_BACKLOG).raw(true))
          .all({ entityId }) as [keyof typeof backlog, number][];
        for (const [status, count] of groups) backlog[status] = count;
        return {
          attempts: rows.slice(0, limit).map(([startedAt, durationMs, statusCode, errorClass]) => ({
            startedAt: new Date(startedAt),
            durationMs,
            statusCode,
            errorClass,
          })),
          truncated: rows.length > limit,
          backlog,
        };
      })();
    },
  };
}

/**
 * An entity's attempts since a time, newest first: the start-time index yields the window in
 * order and each attempt's run (by primary key) says whose it is.
 */
const RECENT_ATTEMPTS = `
  SELECT d.started_at, d.duration_ms, d.status_code, d.error_class
  FROM delivery_attempts d INDEXED BY delivery_attempts_started_idx
  JOIN triggered_runs r ON r.id = d.run_id
  WHERE d.started_at >= @since AND r.entity_id = @entityId
  ORDER BY d.started_at DESC
  LIMIT @limit`;

/** An entity's unfinished runs by status, counted in its status index. */
const ENTITY_BACKLOG = `
  SELECT status, count(*) FROM triggered_runs
  WHERE entity_id = @entityId AND status IN ('QUEUED', 'RUNNING', 'RETRYING')
  GROUP BY status`;
