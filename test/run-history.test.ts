import { eq } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type IdKind, publicId } from '../src/ids.js';
import type { RunFilter, RunOwner, RunStatus } from '../src/storage/events.js';
import type { PgStorage } from '../src/storage/pg/storage.js';
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

/**
 * A project `p` and a registry `r` with their automations: two on the project's and one on the
 * registry's artifact events, and two RUN_STATE automations of the project that fire (with no
 * cooldown) on every report of FINISHED.
 */
async function createOwners(app: TestApp): Promise<void> {
  await createProject(app, 'p');
  await createRegistry(app, 'r');
  const actionId = (await createWebhookAction(app, { name: 'hook', url: 'https://example.com/h' }))
    .id;
  for (const [name, scope, eventType] of [
    ['on-project-1', { type: 'PROJECT', project: 'p' }, 'CREATE_ARTIFACT'],
    ['on-project-2', { type: 'PROJECT', project: 'p' }, 'CREATE_ARTIFACT'],
    ['on-registry', { type: 'REGISTRY', registry: 'r' }, 'LINK_ARTIFACT'],
  ] as const) {
    await createAutomation(app, { name, scope, eventType, actionId });
  }
  for (const name of ['on-run-1', 'on-run-2']) {
    await mutate(
      app,
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
}

/**
 * Records `count` artifact events through the storage layer, every third in the registry, the
 * others in the project, created at `createdAt(i)`; returns their ids.
 */
async function recordEvents(
  app: TestApp,
  owners: { entity: string; project: string; registry: string; admin: string },
  count: number,
  createdAt: (i: number) => Date,
): Promise<string[]> {
  const events: string[] = [];
  for (let i = 0; i < count; i += 1) {
    const inRegistry = i % 3 === 2;
    const recorded = await app.storage.events.recordEvent(
      {
        entityId: owners.entity,
        eventType: inRegistry ? 'LINK_ARTIFACT' : 'CREATE_ARTIFACT',
        owner: inRegistry
          ? { kind: 'registry', id: owners.registry }
          : { kind: 'project', id: owners.project },
        collectionName: 'model',
        artifactType: 'model',
        versionIndex: i,
        alias: null,
        tag: null,
        author: 'ci',
        metadata: null,
        idempotencyKey: null,
        createdById: owners.admin,
        createdAt: createdAt(i),
      },
      () => true,
    );
    if (recorded.outcome !== 'recorded') throw new Error(recorded.outcome);
    events.push(recorded.event.id);
  }
  return events;
}

/** Reports each training run RUNNING then FINISHED `times` times: two runs queued each time. */
async function finishRuns(app: TestApp, runs: readonly (readonly [string, number])[]) {
  for (const [run, times] of runs) {
    for (let i = 0; i < times; i += 1) {
      for (const state of ['RUNNING', 'FINISHED']) {
        await mutate(
          app,
          `mutation($i: ReportRunStateInput!) { reportRunState(input: $i) { __typename } }`,
          { i: { entity: 'default', project: 'p', run, state } },
        );
      }
    }
  }
}

// SQLite-only: seeds its history through storage.db and checks SQLite's query plans; skipped on
// PostgreSQL (see ON_POSTGRES), where the storage contract test covers run paging and the last
// test here PostgreSQL's plans. Artifact events leave a run's training run and its project or
// registry null, and run events its event and registry, so every nullable owner has runs
// without it beside its own.
beforeAll(async () => {
  if (ON_POSTGRES) return;
  t = await createTestApp();
  await createOwners(t);
  const db = t.storage.db;
  const one = <T>(row: T | undefined): T => {
    if (row === undefined) throw new Error('fixture missing');
    return row;
  };
  const entity = one(db.select().from(entities).where(eq(entities.name, 'default')).get()).id;
  const project = one(db.select().from(projects).where(eq(projects.name, 'p')).get()).id;
  const registry = one(db.select().from(registries).where(eq(registries.name, 'r')).get()).id;
  const admin = one(db.select().from(users).get()).id;
  // 45 events, three per millisecond, so runs share creation times and the id orders them.
  const at3PerMs = (i: number) => new Date(START + Math.floor(i / 3));
  const events = await recordEvents(t, { entity, project, registry, admin }, 45, at3PerMs);
  // 16 runs of training run `r1`, and 4 of `r2` beside them.
  await finishRuns(t, [
    ['r1', 8],
    ['r2', 2],
  ]);
  ids = {
    entity,
    project,
    registry,
    automations: db
      .select()
      .from(automations)
      .all()
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((a) => a.id),
    events,
    trainingRun: one(db.select().from(trainingRuns).where(eq(trainingRuns.name, 'r1')).get()).id,
  };
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
          `^SEARCH triggered_runs USING (?:COVERING )?INDEX (triggered_runs_${lead}_status_created_idx) \\(${lead}_id=\\?( AND status=\\?)?`,
        ).exec(step);
        expect(index, `${text}\n${step}`).not.toBeNull();
        // A page reads ranges of one status each; a count may read the owner's whole range.
        if (/order by/.test(text)) expect(index![2], `${text}\n${step}`).toBeDefined();
        read.add(index![1]!);
      }
      expect(plan.join('\n'), text).not.toContain('TEMP B-TREE');
      // A page without a status filter reads one range per status and merges them in order.
      if (/order by/.test(text) && (text.match(/"status" = \?/g) ?? []).length !== 1)
        expect(plan.join('\n'), text).toContain('MERGE (UNION ALL)');
    }
    // The owners' status indexes are the only history indexes, and each serves some query here:
    // a run recorded writes one history entry per owner.
    const indexes = (
      original(
        `SELECT name FROM sqlite_master WHERE tbl_name = 'triggered_runs' AND name LIKE '%created_idx'`,
      ).all() as { name: string }[]
    ).map((row) => row.name);
    expect(indexes).toHaveLength(6);
    expect([...read].sort()).toEqual(indexes.sort());
  });
});

// PostgreSQL picks plans by cost, so its check runs on a few thousand runs with statistics. It
// reads the generic plan of each history statement: the one a named statement settles on after
// its first executions, planned without the owner's id, so a partial index serves it only when
// `owner = $1` alone implies the index's condition.
describe.runIf(ON_POSTGRES)('run history on PostgreSQL', () => {
  let app: TestApp;
  let pool: pg.Pool;
  const owners: RunOwner[] = [];
  const query = async <T>(text: string): Promise<T[]> => (await pool.query(text)).rows as T[];

  beforeAll(async () => {
    app = await createTestApp();
    pool = (app.storage as unknown as PgStorage).handle.pool;
    await createOwners(app);
    const id = async (text: string) => (await query<{ id: string }>(text))[0]!.id;
    const entity = await id(`SELECT id FROM entities WHERE name = 'default'`);
    const project = await id(`SELECT id FROM projects WHERE name = 'p'`);
    const registry = await id(`SELECT id FROM registries WHERE name = 'r'`);
    const admin = await id('SELECT id FROM users LIMIT 1');
    // 2,500 runs of 1,500 events, and 20 runs of each of 10 training runs.
    const events = await recordEvents(
      app,
      { entity, project, registry, admin },
      1500,
      (i) => new Date(START + i),
    );
    await finishRuns(
      app,
      Array.from({ length: 10 }, (_, i) => [`r${i}`, 10] as const),
    );
    await query(
      `UPDATE triggered_runs SET status = (ARRAY['${STATUSES.join("','")}'])[1 + (seq * 7 + seq % 5) % 6]`,
    );
    // Twenty copies of each run (same owners, statuses and times), so that reading an owner's
    // runs by index is what the planner's costs favour, as on a real history.
    const columns = `entity_id, event_id, run_event_id, training_run_id, automation_id,
      automation_name, action_id, project_id, registry_id, status, attempt_count, next_attempt_at,
      lease_owner, lease_expires_at, result, created_at, updated_at, finished_at`;
    await query(
      `INSERT INTO triggered_runs (id, ${columns})
       SELECT id || '-' || copy, ${columns} FROM triggered_runs, generate_series(1, 20) copy`,
    );
    await query('ANALYZE triggered_runs');
    owners.push(
      { kind: 'entity', id: entity },
      { kind: 'project', id: project },
      { kind: 'registry', id: registry },
      {
        kind: 'automation',
        id: await id(`SELECT id FROM automations WHERE name = 'on-project-1'`),
      },
      { kind: 'event', id: events[700]! },
      { kind: 'trainingRun', id: await id(`SELECT id FROM training_runs WHERE name = 'r3'`) },
    );
  }, 120_000);
  afterAll(() => app?.close());

  it("reads every page from its owner's index in list order, never sorting", async () => {
    // The statements the storage layer sends for pages of each owner, with their values.
    const sent = new Map<string, unknown[]>();
    const original = pg.Client.prototype.query as (...args: unknown[]) => unknown;
    const send = vi.spyOn(pg.Client.prototype, 'query').mockImplementation(function (
      this: pg.Client,
      ...args: unknown[]
    ) {
      const [config, values] = args as [{ text?: string; values?: unknown[] }, unknown];
      if (config?.text && /from "triggered_runs" where .* order by/.test(config.text)) {
        sent.set(config.text, config.values ?? (values as unknown[]));
      }
      return original.apply(this, args);
    } as never);
    try {
      const pages = async (owner: RunOwner, filter: RunFilter) => {
        const from = { after: null, before: null, backward: false, limit: 5 };
        const last = (await app.storage.runs.pageRuns(owner, filter, from)).at(-1);
        // The statement is the same whatever the bound; an owner may have no run of a status.
        const position = last ? [last.createdAt.getTime(), last.id] : [START, ''];
        const bound = { position, inclusive: false };
        await app.storage.runs.pageRuns(owner, filter, { ...from, after: bound });
        await app.storage.runs.pageRuns(owner, filter, { ...from, before: bound, backward: true });
      };
      for (const owner of owners) {
        for (const statuses of [null, ['FAILED'], ['FAILED', 'SKIPPED']] as const) {
          await pages(owner, { statuses });
        }
      }
      await pages(owners[0]!, { automationId: owners[3]!.id });
    } finally {
      send.mockRestore();
    }
    expect(sent.size).toBeGreaterThan(40);

    const client = await pool.connect();
    const read = new Set<string>();
    try {
      await client.query('SET plan_cache_mode = force_generic_plan');
      let n = 0;
      for (const [text, values] of sent) {
        const name = `history_${n++}`;
        await client.query(`PREPARE ${name} AS ${text}`);
        const args = values.map((value) => client.escapeLiteral(String(value))).join(', ');
        const plan = (await client.query(`EXPLAIN EXECUTE ${name}(${args})`)).rows
          .map((row: Record<string, string>) => row['QUERY PLAN'])
          .join('\n');
        // The narrowest owner comes first (see the PostgreSQL run store).
        const lead = /"triggered_runs"\."(\w+)_id" = \$/.exec(text)?.[1];
        const scans = [...plan.matchAll(/Index (?:Only )?Scan(?: Backward)? using (\w+) /g)].map(
          (m) => m[1]!,
        );
        // One range of the owner's status index per status read, merged in list order.
        const arms = (text.match(/"status" = \$/g) ?? []).length;
        expect(arms, text).toBeGreaterThan(0);
        expect(scans, `${text}\n${plan}`).toEqual(
          Array(arms).fill(`triggered_runs_${lead}_status_created_idx`),
        );
        if (arms > 1) expect(plan, text).toContain('Merge Append');
        read.add(scans[0]!);
        // No sort node (a Merge Append's "Sort Key" names the order it keeps), no scan of the table.
        expect(plan, text).not.toMatch(/(^|->) *(Incremental )?Sort +\(|Seq Scan/m);
      }
    } finally {
      await client.query('DEALLOCATE ALL');
      await client.query('RESET plan_cache_mode');
      client.release();
    }
    const indexes = await query<{ indexname: string }>(
      `SELECT indexname FROM pg_indexes WHERE tablename = 'triggered_runs' AND indexname LIKE '%created_idx'`,
    );
    expect(indexes).toHaveLength(6);
    expect([...read].sort()).toEqual(indexes.map((row) => row.indexname).sort());
  });
});
