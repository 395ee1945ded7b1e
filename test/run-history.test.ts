import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type IdKind, publicId } from '../src/ids.js';
import type { RunStatus } from '../src/storage/events.js';
import {
  automations,
  entities,
  projects,
  registries,
  trainingRuns,
  triggeredRuns,
  users,
} from '../src/storage/sqlite/schema.js';
import { createTestApp, ON_POSTGRES, type TestApp } from './support/app.js';
import {
  createAutomation,
  createProject,
  createRegistry,
  createWebhookAction,
  mutate,
} from './support/fixtures.js';

// One data set for every test here: tests only read it.
let t: TestApp;
let ids: {
  entity: string;
  project: string;
  registry: string;
  automations: string[];
  events: string[];
  trainingRun: string;
};
const START = Date.parse('2026-01-01T00:00:00Z');
const STATUSES: RunStatus[] = ['QUEUED', 'RUNNING', 'RETRYING', 'SUCCEEDED', 'FAILED', 'SKIPPED'];

// SQLite-only: seeds its history through storage.db and checks SQLite's query plans; skipped on
// PostgreSQL (see ON_POSTGRES), where the storage contract test covers run paging. Artifact events
// leave a run's training run and its project or registry null, and run events its event and
// registry, so every nullable owner has runs without it beside its own.
beforeAll(async () => {
  if (ON_POSTGRES) return;
  t = await createTestApp();
  await createProject(t, 'p');
  await createRegistry(t, 'r');
  const actionId = (await createWebhookAction(t, { name: 'hook', url: 'https://example.com/h' }))
    .id;
  for (const [name, scope, eventType] of [
    ['on-project-1', { type: 'PROJECT', project: 'p' }, 'CREATE_ARTIFACT'],
    ['on-project-2', { type: 'PROJECT', project: 'p' }, 'CREATE_ARTIFACT'],
    ['on-registry', { type: 'REGISTRY', registry: 'r' }, 'LINK_ARTIFACT'],
  ] as const) {
    await createAutomation(t, { name, scope, eventType, actionId });
  }
  const db = t.storage.db;
  const one = <T>(row: T | undefined): T => {
    if (row === undefined) throw new Error('fixture missing');
    return row;
  };
  ids = {
    entity: one(db.select().from(entities).where(eq(entities.name, 'default')).get()).id,
    project: one(db.select().from(projects).where(eq(projects.name, 'p')).get()).id,
    registry: one(db.select().from(registries).where(eq(registries.name, 'r')).get()).id,
    automations: db
      .select()
      .from(automations)
      .all()
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((a) => a.id),
    events: [],
    trainingRun: '',
  };
  const admin = one(db.select().from(users).get()).id;
  // 45 events, three per millisecond, so runs share creation times and the id orders them.
  for (let i = 0; i < 45; i += 1) {
    const inRegistry = i % 3 === 2;
    const recorded = await t.storage.events.recordEvent(
      {
        entityId: ids.entity,
        eventType: inRegistry ? 'LINK_ARTIFACT' : 'CREATE_ARTIFACT',
        owner: inRegistry
          ? { kind: 'registry', id: ids.registry }
          : { kind: 'project', id: ids.project },
        collectionName: 'model',
        artifactType: 'model',
        versionIndex: i,
        alias: null,
        tag: null,
        author: 'ci',
        metadata: null,
        idempotencyKey: null,
        createdById: admin,
        createdAt: new Date(START + Math.floor(i / 3)),
      },
      () => true,
    );
    if (recorded.outcome !== 'recorded') throw new Error(recorded.outcome);
    ids.events.push(recorded.event.id);
  }
  // Two RUN_STATE automations fire on each report of FINISHED: 16 runs of training run `r1`, and
  // 4 of `r2` beside them.
  for (const name of ['on-run-1', 'on-run-2']) {
    await mutate(
      t,
      `mutation($i: CreateAutomationInput!) { createAutomation(input: $i) { __typename } }`,
      {
        i: {
          entity: 'default',
          name,
          scope: { project: 'p' },
          eventType: 'RUN_STATE',
          runCondition: { state: { states: ['FINISHED'] } },
          cooldownSeconds: 0,
          action: { actionId },
        },
      },
    );
  }
  for (const [run, reports] of [
    ['r1', 8],
    ['r2', 2],
  ] as const) {
    for (let i = 0; i < reports; i += 1) {
      for (const state of ['RUNNING', 'FINISHED']) {
        await mutate(
          t,
          `mutation($i: ReportRunStateInput!) { reportRunState(input: $i) { __typename } }`,
          { i: { entity: 'default', project: 'p', run, state } },
        );
      }
    }
  }
  ids.trainingRun = one(db.select().from(trainingRuns).where(eq(trainingRuns.name, 'r1')).get()).id;
  // Statuses spread unevenly over the runs, as a delivery history would leave them.
  const runs = db.select().from(triggeredRuns).all();
  runs.forEach((run, i) => {
    db.update(triggeredRuns)
      .set({ status: STATUSES[(i * 7 + (i % 5)) % STATUSES.length]! })
      .where(eq(triggeredRuns.id, run.id))
      .run();
  });
});
afterAll(() => t?.close());

/** The text of every statement prepared since the data was seeded (each is prepared once). */
const prepared: string[] = [];
beforeAll(() => {
  if (ON_POSTGRES) return;
  const original = t.storage.sqlite.prepare.bind(t.storage.sqlite);
  vi.spyOn(t.storage.sqlite, 'prepare').mockImplementation((text: string) => {
    prepared.push(text);
    return original(text);
  });
});

type Owner = 'entity' | 'project' | 'registry' | 'automation' | 'event' | 'trainingRun';

const OWNER_KIND: Record<Owner, IdKind> = {
  entity: 'entity',
  project: 'project',
  registry: 'registry',
  automation: 'automation',
  event: 'event',
  trainingRun: 'trainingRun',
};
const OWNER_TYPE: Record<Owner, string> = {
  entity: 'Entity',
  project: 'Project',
  registry: 'Registry',
  automation: 'Automation',
  event: 'ArtifactEvent',
  trainingRun: 'Run',
};
const OWNER_COLUMN = {
  entity: 'entityId',
  project: 'projectId',
  registry: 'registryId',
  automation: 'automationId',
  event: 'eventId',
  trainingRun: 'trainingRunId',
} as const;

interface Filter {
  statuses?: RunStatus[];
  automationId?: string;
  createdAfter?: string;
  createdBefore?: string;
}

function storedId(owner: Owner): string {
  switch (owner) {
    case 'entity':
      return ids.entity;
    case 'project':
      return ids.project;
    case 'registry':
      return ids.registry;
    case 'automation':
      return ids.automations[0]!;
    case 'event':
      return ids.events[4]!;
    case 'trainingRun':
      return ids.trainingRun;
  }
}

/** The run ids the list should show, newest first, computed from every stored run. */
function expected(owner: Owner, filter: Filter): string[] {
  const automationId = filter.automationId?.replace(/^auto_/, '');
  return t.storage.db
    .select()
    .from(triggeredRuns)
    .all()
    .filter(
      (run) =>
        run[OWNER_COLUMN[owner]] === storedId(owner) &&
        (!filter.statuses || filter.statuses.includes(run.status)) &&
        (!automationId || run.automationId === automationId) &&
        (!filter.createdAfter || run.createdAt >= new Date(filter.createdAfter)) &&
        (!filter.createdBefore || run.createdAt <= new Date(filter.createdBefore)),
    )
    .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : -1))
    .map((run) => publicId('run', run.id));
}

interface Page {
  totalCount: number;
  edges: { node: { id: string; status: string } }[];
  pageInfo: {
    startCursor: string | null;
    endCursor: string | null;
    hasNextPage: boolean;
    hasPreviousPage: boolean;
  };
}

async function page(
  owner: Owner,
  filter: Filter,
  args: { first?: number; after?: string | null; last?: number; before?: string | null },
): Promise<Page> {
  const res = await t.gql(
    `query($id: ID!, $filter: TriggeredRunFilter, $first: Int, $after: String, $last: Int, $before: String) {
      node(id: $id) { ... on ${OWNER_TYPE[owner]} {
        triggeredRuns(filter: $filter, first: $first, after: $after, last: $last, before: $before) {
          totalCount edges { node { id status } }
          pageInfo { startCursor endCursor hasNextPage hasPreviousPage } } } } }`,
    { id: publicId(OWNER_KIND[owner], storedId(owner)), filter, ...args },
  );
  expect(res.errors).toBeUndefined();
  return res.data.node.triggeredRuns;
}

const at = (ms: number) => new Date(START + ms).toISOString();

const CASES: [Owner, Filter][] = [
  ['entity', {}],
  ['entity', { statuses: ['FAILED'] }],
  ['entity', { statuses: ['FAILED', 'SKIPPED', 'QUEUED'] }],
  ['entity', { statuses: ['SUCCEEDED', 'FAILED'], createdAfter: at(3), createdBefore: at(11) }],
  ['entity', { createdAfter: at(5) }],
  ['entity', { createdBefore: at(5) }],
  ['project', { statuses: ['RUNNING', 'RETRYING'] }],
  ['registry', {}],
  ['registry', { statuses: ['FAILED'], createdBefore: at(9) }],
  ['automation', { statuses: ['QUEUED', 'FAILED'] }],
  ['event', {}],
  ['project', {}],
  ['project', { statuses: ['FAILED'] }],
  ['registry', { statuses: ['SUCCEEDED'] }],
  ['automation', {}],
  ['event', { statuses: ['SUCCEEDED', 'FAILED', 'SKIPPED'] }],
  ['trainingRun', {}],
  ['trainingRun', { statuses: ['SUCCEEDED'] }],
  ['trainingRun', { statuses: ['FAILED', 'SKIPPED'], createdAfter: at(0) }],
];

describe.skipIf(ON_POSTGRES)('run history', () => {
  it.each(CASES)('pages %s runs %j forwards and backwards, newest first', async (owner, f) => {
    const filter: Filter = { ...f };
    const want = expected(owner, filter);
    expect(want.length).toBeGreaterThan(0);

    const forwards: string[] = [];
    let after: string | null = null;
    for (let n = 0; n < 100; n += 1) {
      const p: Page = await page(owner, filter, { first: 4, after });
      expect(p.totalCount).toBe(want.length);
      forwards.push(...p.edges.map((e) => e.node.id));
      expect(p.pageInfo.hasPreviousPage).toBe(after !== null);
      if (!p.pageInfo.hasNextPage) break;
      after = p.pageInfo.endCursor;
    }
    expect(forwards).toEqual(want);

    const backwards: string[] = [];
    let before: string | null = null;
    for (let n = 0; n < 100; n += 1) {
      const p: Page = await page(owner, filter, { last: 3, before });
      backwards.unshift(...p.edges.map((e) => e.node.id));
      expect(p.pageInfo.hasNextPage).toBe(before !== null);
      if (!p.pageInfo.hasPreviousPage) break;
      before = p.pageInfo.startCursor;
    }
    expect(backwards).toEqual(want);
  });

  it('narrows an owner to one automation, and finds nothing for another automation', async () => {
    const second = publicId('automation', ids.automations[1]!);
    const want = expected('entity', { automationId: second });
    expect(want.length).toBeGreaterThan(0);
    expect((await page('entity', { automationId: second }, { first: 100 })).edges).toHaveLength(
      want.length,
    );
    const other = await page('automation', { automationId: second }, { first: 10 });
    expect(other.totalCount).toBe(0);
    expect(other.edges).toEqual([]);
  });

  it('reads every page from its owner index in list order, never sorting or scanning', async () => {
    for (const [owner, filter] of CASES) {
      const first = await page(owner, filter, { first: 2 });
      await page(owner, filter, { first: 2, after: first.pageInfo.endCursor });
      await page(owner, filter, { last: 2, before: first.pageInfo.endCursor });
    }
    const second = publicId('automation', ids.automations[1]!);
    await page('entity', { automationId: second }, { first: 2 });
    const original = t.storage.sqlite.prepare.bind(t.storage.sqlite);
    // Pages and counts; not the test's own reads of every run.
    const history = prepared.filter(
      (text) => /from "triggered_runs" where/.test(text) && /order by|count\(/.test(text),
    );
    expect(history.length).toBeGreaterThan(20);
    const read = new Set<string>();
    for (const text of history) {
      const plan = (
        original(`EXPLAIN QUERY PLAN ${text}`).all(
          ...Array((text.match(/\?/g) ?? []).length).fill(1),
        ) as { detail: string }[]
      ).map((step) => step.detail);
      // The owner the query leads with: the others are written `+column = ?`, kept off their index.
      const lead = /(?<!\+)"triggered_runs"\."(\w+)_id" = \?/.exec(text)?.[1];
      expect(lead, text).toBeDefined();
      const reads = plan.filter((step) => /^(SEARCH|SCAN)/.test(step));
      expect(reads.length, text).toBeGreaterThan(0);
      for (const step of reads) {
        // Searched by the owner: a partial index (every owner's but the entity's) only serves a
        // query whose conditions imply the index's `owner IS NOT NULL`.
        const index = new RegExp(
          `^SEARCH triggered_runs USING (?:COVERING )?INDEX (triggered_runs_${lead}_(?:status_)?created_idx) \\(${lead}_id=\\?`,
        ).exec(step);
        expect(index, `${text}\n${step}`).not.toBeNull();
        read.add(index![1]!);
      }
      expect(plan.join('\n'), text).not.toContain('TEMP B-TREE');
      // A status filter reads the owner's status index.
      if (/"status" = \?/.test(text))
        expect(plan.join('\n'), text).toContain('_status_created_idx');
    }
    // Every history index serves some query here, with and without a status filter.
    const indexes = (
      original(
        `SELECT name FROM sqlite_master WHERE tbl_name = 'triggered_runs' AND name LIKE '%created_idx'`,
      ).all() as { name: string }[]
    ).map((row) => row.name);
    expect(indexes).toHaveLength(12);
    expect([...read].sort()).toEqual(indexes.sort());
  });
});
