// ─────────────────────────────────────────────────────────────────────────────────────────────
// THE ONLY PART OF THE BENCH THAT BYPASSES THE API.
//
// Bulk state (10,000 automations, thousands of queued runs, 300,000 stored runs) would take
// minutes through GraphQL, so it is written straight into the SQLite file of a stopped server,
// through the project's own migrations (openDatabase) and drizzle tables. Everything else in the
// bench talks HTTP and WebSocket to a running server. When the storage layer changes (issue 8:
// one storage layer, then PostgreSQL), this file is the one to port.
// ─────────────────────────────────────────────────────────────────────────────────────────────
import { copyFileSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { and, eq, sql } from 'drizzle-orm';
import { newId } from '../../src/ids.js';
import { type Db, openDatabase } from '../../src/storage/sqlite/database.js';
import {
  actions,
  artifactCollections,
  artifactEvents,
  automations,
  type EventType,
  entities,
  projects,
  type RunStatus,
  triggeredRuns,
  users,
} from '../../src/storage/sqlite/schema.js';
import { makeTempDir } from './process.js';

/**
 * A new temporary data directory holding a copy of `template`'s files (its server stopped, so
 * the database file is whole); deleted with the bench's other temporary directories.
 */
export function cloneDataDir(template: string): string {
  const dir = makeTempDir('tripline-bench-');
  for (const name of readdirSync(template)) copyFileSync(join(template, name), join(dir, name));
  return dir;
}

/** What seeding reads and writes through: the database or one of its transactions. */
type Writer = Pick<Db, 'select' | 'insert'>;

function withDatabase<T>(dataDir: string, work: (db: Db) => T): T {
  const file = join(dataDir, 'tripline.db');
  if (!existsSync(file)) throw new Error(`no database in ${dataDir}`);
  const storage = openDatabase(file);
  // Bulk inserts into random-key indexes need the pages in memory; the default cache is 2 MB.
  storage.sqlite.pragma('cache_size = -262144');
  // Seeded rows reference rows that exist by construction; checking each reference is slow.
  storage.sqlite.pragma('foreign_keys = OFF');
  try {
    return work(storage.db);
  } finally {
    storage.close();
  }
}

function entityId(db: Writer, name: string): string {
  const row = db.select({ id: entities.id }).from(entities).where(eq(entities.name, name)).get();
  if (!row) throw new Error(`seed: no entity ${name}`);
  return row.id;
}

function ensureProject(db: Writer, entity: string, name: string): string {
  const found = db
    .select({ id: projects.id })
    .from(projects)
    .where(and(eq(projects.entityId, entity), eq(projects.name, name)))
    .get();
  if (found) return found.id;
  return db.insert(projects).values({ id: newId(), entityId: entity, name }).returning().get().id;
}

function ensureCollection(db: Writer, entity: string, projectId: string, name: string): string {
  const found = db
    .select({ id: artifactCollections.id })
    .from(artifactCollections)
    .where(and(eq(artifactCollections.projectId, projectId), eq(artifactCollections.name, name)))
    .get();
  if (found) return found.id;
  return db
    .insert(artifactCollections)
    .values({ id: newId(), entityId: entity, projectId, name, artifactType: 'model' })
    .returning()
    .get().id;
}

function actionId(db: Writer, entity: string, name: string): string {
  const row = db
    .select({ id: actions.id })
    .from(actions)
    .where(and(eq(actions.entityId, entity), eq(actions.name, name)))
    .get();
  if (!row) throw new Error(`seed: no action ${name}`);
  return row.id;
}

export interface AutomationLayout {
  entity: string;
  /** Name of an existing webhook action of the entity that every seeded automation uses. */
  action: string;
  /** Automations that watch `CREATE_ARTIFACT` on this project: each event there matches them. */
  watching: { project: string; count: number };
  /** Automations spread over 200 other projects (and other event types): never matched. */
  elsewhere: number;
}

/**
 * Adds automations to an entity: `watching.count` on one project, `elsewhere` spread over 200
 * other projects, created as `createAutomation` would (enabled, no filters, default payload).
 */
export function seedAutomations(dataDir: string, layout: AutomationLayout): void {
  withDatabase(dataDir, (db) => {
    const entity = entityId(db, layout.entity);
    const action = actionId(db, entity, layout.action);
    db.transaction((tx) => {
      const watched = ensureProject(tx, entity, layout.watching.project);
      const others = Array.from({ length: 200 }, (_, i) =>
        ensureProject(tx, entity, `elsewhere-${i}`),
      );
      const insert = tx
        .insert(automations)
        .values({
          id: sql.placeholder('id'),
          entityId: entity,
          name: sql.placeholder('name'),
          eventType: sql.placeholder('eventType'),
          scopeType: 'PROJECT',
          scopeId: sql.placeholder('scopeId'),
          actionId: action,
        })
        .prepare();
      for (let i = 0; i < layout.watching.count; i += 1) {
        insert.run({
          id: newId(),
          name: `watching-${i}`,
          eventType: 'CREATE_ARTIFACT',
          scopeId: watched,
        });
      }
      const types: EventType[] = ['CREATE_ARTIFACT', 'ADD_ARTIFACT_ALIAS', 'CREATE_ARTIFACT'];
      for (let i = 0; i < layout.elsewhere; i += 1) {
        insert.run({
          id: newId(),
          name: `elsewhere-${i}`,
          eventType: types[i % types.length]!,
          scopeId: others[i % others.length]!,
        });
      }
    });
  });
}

interface RunSpec {
  status: RunStatus;
  createdAt: number;
}

/**
 * Writes events of `automationNames`' project, one event per `automationNames.length` runs
 * (one run per automation, as an emit that matched them all would), with the run statuses and
 * creation times `runAt(i)` gives for run i.
 */
function seedRuns(
  dataDir: string,
  options: {
    entity: string;
    automationNames: readonly string[];
    runs: number;
    runAt: (i: number) => RunSpec;
  },
): void {
  withDatabase(dataDir, (db) => {
    const entity = entityId(db, options.entity);
    const admin = db.select({ id: users.id }).from(users).get()!.id;
    const watching = options.automationNames.map((name) => {
      const row = db
        .select()
        .from(automations)
        .where(and(eq(automations.entityId, entity), eq(automations.name, name)))
        .get();
      if (row?.scopeType !== 'PROJECT') throw new Error(`seed: no project automation ${name}`);
      return row;
    });
    const projectId = watching[0]!.scopeId;
    db.transaction((tx) => {
      const collection = ensureCollection(tx, entity, projectId, 'model');
      const insertEvent = tx
        .insert(artifactEvents)
        .values({
          id: sql.placeholder('id'),
          entityId: entity,
          eventType: 'CREATE_ARTIFACT',
          projectId,
          collectionId: collection,
          collectionName: 'model',
          artifactType: 'model',
          versionIndex: sql.placeholder('versionIndex'),
          author: 'bench',
          createdById: admin,
          createdAt: sql.placeholder('createdAt'),
        })
        .prepare();
      // Placeholders cannot carry null through drizzle's timestamp encoder, so queued and finished
      // runs each get a statement that leaves out the columns they keep null.
      const common = {
        id: sql.placeholder('id'),
        entityId: entity,
        eventId: sql.placeholder('eventId'),
        automationId: sql.placeholder('automationId'),
        automationName: sql.placeholder('automationName'),
        actionId: sql.placeholder('actionId'),
        projectId,
        status: sql.placeholder('status'),
        createdAt: sql.placeholder('createdAt'),
        updatedAt: sql.placeholder('createdAt'),
      };
      const insertQueued = tx
        .insert(triggeredRuns)
        .values({ ...common, attemptCount: 0, nextAttemptAt: sql.placeholder('createdAt') })
        .prepare();
      const insertFinished = tx
        .insert(triggeredRuns)
        .values({
          ...common,
          attemptCount: 1,
          result: sql.placeholder('result'),
          finishedAt: sql.placeholder('finishedAt'),
        })
        .prepare();
      let eventId = '';
      for (let i = 0; i < options.runs; i += 1) {
        const { status, createdAt } = options.runAt(i);
        const automation = watching[i % watching.length]!;
        const at = new Date(createdAt);
        if (i % watching.length === 0) {
          eventId = newId();
          insertEvent.run({ id: eventId, versionIndex: i / watching.length, createdAt: at });
        }
        const row = {
          id: newId(),
          eventId,
          automationId: automation.id,
          automationName: automation.name,
          actionId: automation.actionId,
          status,
          createdAt: at,
        };
        if (status === 'QUEUED') insertQueued.run(row);
        else {
          insertFinished.run({
            ...row,
            result: `${status === 'SUCCEEDED' ? 'Delivered' : 'Failed'}: seeded`,
            finishedAt: new Date(createdAt + 250),
          });
        }
      }
    });
  });
}

/** Points an existing webhook action at another URL (a receiver of the figure's own, say). */
export function pointAction(
  dataDir: string,
  options: { entity: string; action: string; url: string },
): void {
  withDatabase(dataDir, (db) => {
    const id = actionId(db, entityId(db, options.entity), options.action);
    db.update(actions).set({ url: options.url }).where(eq(actions.id, id)).run();
  });
}

/**
 * Queues `count` runs of one automation, one event each, due now: what `count` emits would
 * leave behind if no engine were running.
 */
export function seedQueuedRuns(
  dataDir: string,
  options: {
    entity: string;
    automation: string;
    count: number;
    /** How long ago the last one was created (one millisecond apart); 1 s by default. */
    lastCreatedMsAgo?: number;
  },
): void {
  const now = Date.now() - (options.lastCreatedMsAgo ?? 1_000);
  seedRuns(dataDir, {
    entity: options.entity,
    automationNames: [options.automation],
    runs: options.count,
    runAt: (i) => ({ status: 'QUEUED', createdAt: now - options.count + i }),
  });
}

/**
 * Stores `count` finished runs of the given automations over the last 30 days: one in
 * `1 / failedEvery` FAILED, one in 20 SKIPPED, the rest SUCCEEDED. Attempts are not stored.
 */
export function seedRunHistory(
  dataDir: string,
  options: { entity: string; automations: readonly string[]; count: number; failedEvery: number },
): void {
  const end = Date.now() - 60_000;
  const step = (30 * 24 * 3600 * 1000) / options.count;
  seedRuns(dataDir, {
    entity: options.entity,
    automationNames: options.automations,
    runs: options.count,
    runAt: (i) => ({
      status: i % options.failedEvery === 3 ? 'FAILED' : i % 20 === 7 ? 'SKIPPED' : 'SUCCEEDED',
      createdAt: Math.round(end - (options.count - i) * step),
    }),
  });
}
