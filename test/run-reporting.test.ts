import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { migrationsFolder } from '../src/storage/sqlite/database.js';
import { openSqliteStorage } from '../src/storage/sqlite/storage.js';
import { createTestApp, fakeClock, type TestApp } from './support/app.js';
import { createProject, createWebhookAction, mutate } from './support/fixtures.js';
import { type Receiver, startReceiver } from './support/receiver.js';

let t: TestApp;
let receiver: Receiver;
let hookId: string;
const clock = fakeClock();

beforeEach(async () => {
  t = await createTestApp({ clock, env: { TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1' } });
  receiver = await startReceiver();
  await createProject(t, 'vision');
  hookId = (await createWebhookAction(t, { name: 'hook', url: `${receiver.url}/hook` })).id;
});

afterEach(async () => {
  await receiver.close();
  await t.close();
});

const ERRORS =
  '... on Error { message ... on ValidationError { field } ... on NotFoundError { field } }';
const REPORT = `mutation($i: ReportRunStateInput!) { reportRunState(input: $i) { __typename
  ... on ReportRunStatePayload { replayed run { id name state reportedBy { name } } triggeredRuns { id } }
  ${ERRORS} } }`;
const LOG = `mutation($i: LogRunMetricsInput!) { logRunMetrics(input: $i) { __typename
  ... on LogRunMetricsPayload { replayed acceptedPoints run { id } triggeredRuns { id } }
  ${ERRORS} } }`;

const report = (run: string, state: string, extra = {}) =>
  mutate(t, REPORT, { i: { entity: 'default', project: 'vision', run, state, ...extra } });
const log = (run: string, points: unknown[], extra = {}) =>
  mutate(t, LOG, { i: { entity: 'default', project: 'vision', run, points, ...extra } });

const RUNS = `query($after: String) { entity(name: "default") { projects(first: 1) { edges { node {
  runs(first: 2, after: $after) { totalCount pageInfo { hasNextPage endCursor }
    edges { node { name state metrics { name latestValue latestStep pointCount } } } } } } } } }`;

async function runsPage(after?: string) {
  const res = await t.gql(RUNS, { after });
  expect(res.errors).toBeUndefined();
  return res.data.entity.projects.edges[0].node.runs;
}

describe('reporting runs', () => {
  it('creates a run on its first report, stores CRASHED as FAILED, and names who reported it', async () => {
    const first = await report('r1', 'RUNNING');
    expect(first).toMatchObject({
      __typename: 'ReportRunStatePayload',
      replayed: false,
      run: { name: 'r1', state: 'RUNNING', reportedBy: { name: expect.any(String) } },
    });
    const crashed = await report('r1', 'CRASHED');
    expect(crashed.run).toMatchObject({ id: first.run.id, state: 'FAILED' });
    const node = await t.gql('query($id: ID!) { node(id: $id) { ... on Run { name state } } }', {
      id: first.run.id,
    });
    expect(node.data.node).toEqual({ name: 'r1', state: 'FAILED' });
  });

  it('lists the project runs newest first with keyset paging, and the latest value per metric', async () => {
    for (const name of ['a', 'b', 'c']) {
      clock.advance(1000);
      await report(name, 'RUNNING');
    }
    await log('c', [
      { step: 0, name: 'loss', value: 2 },
      { step: 1, name: 'loss', value: 1.5 },
      { step: 0, name: 'acc', value: 0.5 },
    ]);
    const page1 = await runsPage();
    expect(page1.totalCount).toBe(3);
    expect(page1.edges.map((e: { node: { name: string } }) => e.node.name)).toEqual(['c', 'b']);
    expect(page1.edges[0].node.metrics).toEqual([
      { name: 'acc', latestValue: 0.5, latestStep: 0, pointCount: 1 },
      { name: 'loss', latestValue: 1.5, latestStep: 1, pointCount: 2 },
    ]);
    expect(page1.pageInfo.hasNextPage).toBe(true);
    const page2 = await runsPage(page1.pageInfo.endCursor);
    expect(page2.edges.map((e: { node: { name: string } }) => e.node.name)).toEqual(['a']);
  });

  it('refuses metrics for a run that was never reported, and bad names', async () => {
    expect(await log('ghost', [{ step: 0, name: 'loss', value: 1 }])).toMatchObject({
      __typename: 'NotFoundError',
      field: 'input.run',
    });
    expect(await report(' padded', 'RUNNING')).toMatchObject({
      __typename: 'ValidationError',
      field: 'input.run',
    });
    expect(
      await mutate(t, REPORT, {
        i: { entity: 'default', project: 'nope', run: 'r', state: 'RUNNING' },
      }),
    ).toMatchObject({ __typename: 'NotFoundError', field: 'input.project' });
  });

  it('refuses an infinite value in the request, naming the point', async () => {
    await report('r', 'RUNNING');
    // JSON has no NaN or Infinity; 1e999 parses to Infinity, which GraphQL's Float refuses.
    const res = await t.app.yoga.fetch('http://localhost/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${t.adminKey}` },
      body: `{"query": ${JSON.stringify(LOG)}, "variables": {"i": {"entity": "default", "project": "vision", "run": "r", "points": [{"step": 0, "name": "loss", "value": 1}, {"step": 1, "name": "loss", "value": 1e999}]}}}`,
    });
    const body = (await res.json()) as { errors: { message: string }[] };
    expect(body.errors[0]!.message).toContain('points[1].value');
    expect(body.errors[0]!.message).toContain('Infinity');
    const page = await runsPage();
    expect(page.edges[0].node.metrics).toEqual([]);
  });

  it('refuses run event types in emitArtifactEvent', async () => {
    const r = await mutate(
      t,
      `mutation($i: EmitArtifactEventInput!) { emitArtifactEvent(input: $i) { __typename ${ERRORS} } }`,
      {
        i: {
          entity: 'default',
          eventType: 'RUN_STATE',
          owner: { project: 'vision' },
          collection: 'c',
          artifactType: 'model',
          versionIndex: 0,
        },
      },
    );
    expect(r).toMatchObject({ __typename: 'ValidationError', field: 'input.eventType' });
    expect(r.message).toContain('reportRunState');
  });
});

describe('idempotency', () => {
  it('replays a metrics call sent twice with one key: points counted once, one run, one delivery', async () => {
    await mutate(
      t,
      `mutation($i: CreateAutomationInput!) { createAutomation(input: $i) { __typename } }`,
      {
        i: {
          entity: 'default',
          name: 'avg',
          eventType: 'RUN_METRIC',
          scope: { project: 'vision' },
          action: { actionId: hookId },
          runCondition: {
            metric: {
              metric: 'loss',
              aggregation: 'AVERAGE',
              window: 2,
              comparison: 'GT',
              threshold: 1,
            },
          },
        },
      },
    );
    await report('r', 'RUNNING', { idempotencyKey: 'start-r' });
    const again = await report('r', 'RUNNING', { idempotencyKey: 'start-r' });
    expect(again.replayed).toBe(true);
    const points = [
      { step: 0, name: 'loss', value: 2 },
      { step: 1, name: 'loss', value: 2 },
    ];
    const first = await log('r', points, { idempotencyKey: 'batch-1' });
    expect(first).toMatchObject({ replayed: false, acceptedPoints: 2 });
    expect(first.triggeredRuns).toHaveLength(1);
    const second = await log('r', points, { idempotencyKey: 'batch-1' });
    expect(second).toEqual({ ...first, replayed: true });
    // Without the key, the points are at steps already logged: none is accepted again.
    const third = await log('r', points);
    expect(third).toMatchObject({ replayed: false, acceptedPoints: 0, triggeredRuns: [] });
    await t.app.engine.drain();
    expect(receiver.requests).toHaveLength(1);
    expect((await runsPage()).edges[0].node.metrics).toEqual([
      { name: 'loss', latestValue: 2, latestStep: 1, pointCount: 2 },
    ]);
  });
});

describe('run automations are checked when saved', () => {
  const CREATE = `mutation($i: CreateAutomationInput!) { createAutomation(input: $i) { __typename ${ERRORS} } }`;
  const create = (input: Record<string, unknown>) =>
    mutate(t, CREATE, {
      i: {
        entity: 'default',
        name: 'x',
        scope: { project: 'vision' },
        action: { actionId: hookId },
        ...input,
      },
    });

  it('names the field of each mistake', async () => {
    const metric = { metric: { metric: 'loss', comparison: 'GT', threshold: 1 } };
    await mutate(
      t,
      'mutation($i: CreateArtifactCollectionInput!) { createArtifactCollection(input: $i) { __typename } }',
      {
        i: {
          entity: 'default',
          owner: { project: 'vision' },
          name: 'resnet',
          artifactType: 'model',
        },
      },
    );
    const cases: [Record<string, unknown>, string][] = [
      [{ eventType: 'RUN_METRIC' }, 'input.runCondition'],
      [{ eventType: 'RUN_STATE', runCondition: metric }, 'input.runCondition.metric'],
      [
        {
          eventType: 'RUN_METRIC',
          runCondition: metric,
          scope: { projectCollection: { project: 'vision', collection: 'resnet' } },
        },
        'input.scope',
      ],
      [
        { eventType: 'RUN_METRIC', runCondition: metric, filter: { artifactType: 'model' } },
        'input.filter.artifactType',
      ],
      [
        { eventType: 'CREATE_ARTIFACT', filter: { runNamePattern: 'x' } },
        'input.filter.runNamePattern',
      ],
      [
        { eventType: 'RUN_METRIC', runCondition: metric, filter: { runNamePattern: '(a' } },
        'input.filter.runNamePattern',
      ],
      [
        { eventType: 'RUN_METRIC', runCondition: metric, cooldownSeconds: -5 },
        'input.cooldownSeconds',
      ],
      [
        {
          eventType: 'RUN_METRIC',
          runCondition: { metric: { ...metric.metric, aggregation: 'MAX', window: 500 } },
        },
        'input.runCondition.metric.window',
      ],
    ];
    for (const [input, field] of cases) {
      const r = await create(input);
      expect(r, JSON.stringify(input)).toMatchObject({
        __typename: expect.stringMatching(/Error$/),
        field,
      });
    }
  });

  it('shows the condition and the cooldown, defaulting to 24 hours', async () => {
    const r = await mutate(
      t,
      `mutation($i: CreateAutomationInput!) { createAutomation(input: $i) { ... on CreateAutomationPayload { automation {
        cooldownSeconds filter { runNamePattern }
        runCondition { __typename ... on RunMetricChangeCondition { metric aggregation window changeType direction amount } } } } } }`,
      {
        i: {
          entity: 'default',
          name: 'chg',
          eventType: 'RUN_METRIC_CHANGE',
          scope: { entity: true },
          filter: { runNamePattern: '^sweep' },
          action: { actionId: hookId },
          runCondition: {
            metricChange: { metric: 'acc', window: 5, direction: 'INCREASE', amount: 0.1 },
          },
        },
      },
    );
    expect(r.automation).toEqual({
      cooldownSeconds: 86400,
      filter: { runNamePattern: '^sweep' },
      runCondition: {
        __typename: 'RunMetricChangeCondition',
        metric: 'acc',
        aggregation: 'AVERAGE',
        window: 5,
        changeType: 'ABSOLUTE',
        direction: 'INCREASE',
        amount: 0.1,
      },
    });
  });
});

describe('updating a run automation', () => {
  const UPDATE = `mutation($i: UpdateAutomationInput!) { updateAutomation(input: $i) { __typename
    ... on UpdateAutomationPayload { automation { eventType cooldownSeconds runCondition { __typename } } }
    ${ERRORS} } }`;

  it('keeps the condition when left out, and clears it only when asked', async () => {
    const created = await mutate(
      t,
      `mutation($i: CreateAutomationInput!) { createAutomation(input: $i) {
        ... on CreateAutomationPayload { automation { id } } } }`,
      {
        i: {
          entity: 'default',
          name: 'failing',
          eventType: 'RUN_STATE',
          scope: { project: 'vision' },
          action: { actionId: hookId },
          runCondition: { state: { states: ['FAILED'] } },
        },
      },
    );
    const id = created.automation.id;
    expect(await mutate(t, UPDATE, { i: { id, cooldownSeconds: 60 } })).toMatchObject({
      automation: { cooldownSeconds: 60, runCondition: { __typename: 'RunStateCondition' } },
    });
    expect(await mutate(t, UPDATE, { i: { id, eventType: 'CREATE_ARTIFACT' } })).toMatchObject({
      __typename: 'ValidationError',
      field: 'input.runCondition',
    });
    expect(
      await mutate(t, UPDATE, {
        i: { id, eventType: 'CREATE_ARTIFACT', runCondition: null, cooldownSeconds: null },
      }),
    ).toMatchObject({
      automation: { eventType: 'CREATE_ARTIFACT', cooldownSeconds: null, runCondition: null },
    });
  });
});

describe('migration', () => {
  it('keeps every triggered run and attempt when 0006 rebuilds triggered_runs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tripline-migrate-'));
    try {
      const folder = join(dir, 'migrations');
      cpSync(migrationsFolder, folder, { recursive: true });
      const journalFile = join(folder, 'meta', '_journal.json');
      const journal = JSON.parse(readFileSync(journalFile, 'utf8'));
      const upTo = journal.entries.findIndex((e: { tag: string }) => e.tag === '0006_run_events');
      writeFileSync(
        journalFile,
        JSON.stringify({ ...journal, entries: journal.entries.slice(0, upTo) }),
      );
      const file = join(dir, 'db.sqlite');
      const old = openSqliteStorage(file, { migrate: false });
      migrate(old.db, { migrationsFolder: folder });
      old.sqlite.exec(`
        INSERT INTO entities (id, name) VALUES ('e', 'acme');
        INSERT INTO projects (id, entity_id, name) VALUES ('p', 'e', 'vision');
        INSERT INTO actions (id, entity_id, kind, name) VALUES ('a', 'e', 'NO_OP', 'noop');
        INSERT INTO artifact_events (id, entity_id, event_type, project_id, collection_name, artifact_type, version_index, author)
          VALUES ('ev', 'e', 'CREATE_ARTIFACT', 'p', 'c', 'model', 0, 'al');
        INSERT INTO triggered_runs (id, entity_id, event_id, automation_name, action_id, project_id, status, next_attempt_at)
          VALUES ('run', 'e', 'ev', 'auto', 'a', 'p', 'QUEUED', 5);
        INSERT INTO delivery_attempts (id, run_id, attempt_number, started_at) VALUES ('at', 'run', 1, 1);`);
      old.sqlite.close();

      const migrated = openSqliteStorage(file);
      try {
        const run = migrated.sqlite
          .prepare('SELECT id, event_id, run_event_id, due_at FROM triggered_runs')
          .all();
        expect(run).toEqual([{ id: 'run', event_id: 'ev', run_event_id: null, due_at: 5 }]);
        expect(migrated.sqlite.prepare('SELECT id FROM delivery_attempts').all()).toEqual([
          { id: 'at' },
        ]);
      } finally {
        migrated.sqlite.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
