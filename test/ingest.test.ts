import { eq } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { newId } from '../src/ids.js';
import type { NewArtifactEvent } from '../src/storage/events.js';
import { RUNS_PER_INSERT } from '../src/storage/sqlite/events.js';
import {
  artifactCollections,
  automations,
  entities,
  projects,
  triggeredRuns,
  users,
} from '../src/storage/sqlite/schema.js';
import { openSqliteStorage } from '../src/storage/sqlite/storage.js';
import { createTestApp, sqliteOnly, type TestApp } from './support/app.js';
import { createAutomation, createProject, createWebhookAction, emit } from './support/fixtures.js';

// On PostgreSQL these arrange or inspect rows through the SQLite handles; see sqliteOnly.
sqliteOnly(
  'inserts its runs in multi-row statements of a fixed size, each shape prepared once',
  'reads the candidate automations with one statement through automations_match_idx',
  'settles a repeated idempotency key by the unique index when two calls race',
  'stores nothing when the collection holds another artifact type',
);

let t: TestApp;
beforeEach(async () => {
  t = await createTestApp();
  await createProject(t, 'p');
});
afterEach(() => t.close());

/** Stored ids of the `default` entity and its project `p`. */
function storedIds() {
  const entity = t.storage.db.select().from(entities).where(eq(entities.name, 'default')).get();
  const project = t.storage.db.select().from(projects).where(eq(projects.name, 'p')).get();
  if (!entity || !project) throw new Error('fixtures missing');
  return { entityId: entity.id, projectId: project.id };
}

/** `count` enabled automations watching CREATE_ARTIFACT on project `p`, copies of one created through the API. */
async function watchers(count: number): Promise<void> {
  const actionId = (await createWebhookAction(t, { name: 'hook', url: 'https://example.com/h' }))
    .id;
  await createAutomation(t, {
    name: 'watcher-0',
    eventType: 'CREATE_ARTIFACT',
    scope: { type: 'PROJECT', project: 'p' },
    actionId,
  });
  const model = t.storage.db.select().from(automations).get();
  if (!model) throw new Error('automation not stored');
  for (let i = 1; i < count; i += 1) {
    t.storage.db
      .insert(automations)
      .values({
        ...model,
        id: newId(),
        name: `watcher-${i}`,
        createdAt: new Date(model.createdAt.getTime() + i),
      })
      .run();
  }
}

/** Records every statement the driver prepares from now on, and how often each runs. */
function watchStatements() {
  const prepared: { text: string; runs: number }[] = [];
  const original = t.storage.sqlite.prepare.bind(t.storage.sqlite);
  const spy = vi.spyOn(t.storage.sqlite, 'prepare').mockImplementation((text: string) => {
    const statement = original(text);
    const entry = { text, runs: 0 };
    prepared.push(entry);
    const run = statement.run.bind(statement);
    statement.run = ((...args: Parameters<typeof run>) => {
      entry.runs += 1;
      return run(...args);
    }) as typeof statement.run;
    return statement;
  });
  return { prepared, restore: () => spy.mockRestore() };
}

const valuesIn = (text: string) => (text.match(/\(\?, @entityId/g) ?? []).length;

describe('recording an event', () => {
  it('inserts its runs in multi-row statements of a fixed size, each shape prepared once', async () => {
    const count = 2 * RUNS_PER_INSERT + 3;
    await watchers(count);
    const statements = watchStatements();
    const first = await emit(t, { versionIndex: 1 });
    const inserts = statements.prepared.filter((s) => /insert into triggered_runs/i.test(s.text));
    expect(inserts.map((s) => valuesIn(s.text)).sort((a, b) => a - b)).toEqual([
      3,
      RUNS_PER_INSERT,
    ]);
    expect(inserts.map((s) => s.runs).sort()).toEqual([1, 2]);

    // What recording an event prepares (other services still build their queries per call).
    const recording = () =>
      statements.prepared.filter((s) => /insert into|"scope_id" in/i.test(s.text)).length;
    const preparedByFirst = recording();
    const second = await emit(t, { versionIndex: 2 });
    statements.restore();
    // The second event reuses every statement of the first.
    expect(recording()).toBe(preparedByFirst);
    expect(inserts.map((s) => s.runs).sort()).toEqual([2, 4]);

    for (const emitted of [first, second]) {
      expect(emitted.triggeredRuns).toHaveLength(count);
      expect(new Set(emitted.triggeredRuns.map((r: { id: string }) => r.id)).size).toBe(count);
      expect(emitted.triggeredRuns.every((r: { status: string }) => r.status === 'QUEUED')).toBe(
        true,
      );
    }
    const stored = t.storage.db
      .select()
      .from(triggeredRuns)
      .where(eq(triggeredRuns.eventId, first.event.id.replace(/^evt_/, '')))
      .all();
    expect(stored).toHaveLength(count);
    expect(new Set(stored.map((r) => r.automationName)).size).toBe(count);
    expect(stored.every((r) => r.status === 'QUEUED' && r.attemptCount === 0)).toBe(true);
  });

  it('reads the candidate automations with one statement through automations_match_idx', async () => {
    await watchers(3);
    const statements = watchStatements();
    await emit(t);
    statements.restore();
    const reads = statements.prepared.filter((s) => /"scope_id" in/.test(s.text));
    expect(reads).toHaveLength(1);
    const plan = t.storage.sqlite
      .prepare(`EXPLAIN QUERY PLAN ${reads[0]!.text}`)
      .all('entity-id', 'project-id', 'collection-id', 'CREATE_ARTIFACT', 1) as {
      detail: string;
    }[];
    expect(plan.map((step) => step.detail).join('\n')).toContain(
      'USING INDEX automations_match_idx (scope_id=? AND event_type=? AND enabled=?)',
    );
  });

  it('settles a repeated idempotency key by the unique index when two calls race', async () => {
    await watchers(6);
    const { entityId, projectId } = storedIds();
    const event = (collectionName: string): NewArtifactEvent => ({
      entityId,
      eventType: 'CREATE_ARTIFACT',
      owner: { kind: 'project', id: projectId },
      collectionName,
      artifactType: 'model',
      versionIndex: 0,
      alias: null,
      tag: null,
      author: 'ci',
      metadata: null,
      idempotencyKey: 'build-7',
      createdById: t.storage.db.select().from(users).get()!.id,
      createdAt: new Date(),
    });
    // A second connection, as a second server process would hold: both calls passed the service's
    // look-up of the key before either had committed.
    const other = openSqliteStorage(t.config.databaseFile);
    try {
      const winner = await t.storage.events.recordEvent(event('first'), () => true);
      const loser = await other.events.recordEvent(event('second'), () => true);
      expect(winner.outcome).toBe('recorded');
      expect(loser.outcome).toBe('replayed');
      if (winner.outcome === 'artifactTypeMismatch' || loser.outcome === 'artifactTypeMismatch') {
        throw new Error('unexpected outcome');
      }
      expect(loser.event.id).toBe(winner.event.id);
      // The same runs in the same order: oldest automation first, as they were queued.
      expect(loser.runs.map((r) => r.id)).toEqual(winner.runs.map((r) => r.id));
      expect(winner.runs.map((r) => r.automationName)).toEqual(
        Array.from({ length: 6 }, (_, i) => `watcher-${i}`),
      );
    } finally {
      await other.close();
    }
    // The loser's transaction left nothing behind, not even its new collection.
    const collections = t.storage.db.select().from(artifactCollections).all();
    expect(collections.map((c) => c.name)).toEqual(['first']);
  });

  it('stores nothing when the collection holds another artifact type', async () => {
    await watchers(1);
    await emit(t, { collection: 'weights' });
    const refused = await emit(t, { collection: 'weights', artifactType: 'dataset' });
    expect(refused).toMatchObject({ __typename: 'ValidationError', field: 'input.artifactType' });
    expect(refused.message).toContain('"model"');
    expect(t.storage.db.select().from(triggeredRuns).all()).toHaveLength(1);
  });
});
