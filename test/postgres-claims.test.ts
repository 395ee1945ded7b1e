import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { newId } from '../src/ids.js';
import { PASS_OVER_HEAD } from '../src/storage/delivery.js';
import { openPgStorage, type PgStorage } from '../src/storage/pg/storage.js';
import { ON_POSTGRES } from './support/app.js';
import { createTestDatabase, POSTGRES_SERVER_URL, type TestDatabase } from './support/postgres.js';

/** A plan node of `EXPLAIN (ANALYZE, FORMAT JSON)`, as far as this test reads it. */
interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Actual Rows': number;
  'Actual Loops': number;
  'Rows Removed by Filter'?: number;
  Plans?: PlanNode[];
}

/** The rows the plan read from `relation`: those it kept and those its filters dropped. */
function rowsRead(node: PlanNode, relation: string): number {
  const own =
    node['Relation Name'] === relation
      ? (node['Actual Rows'] + (node['Rows Removed by Filter'] ?? 0)) * node['Actual Loops']
      : 0;
  return own + (node.Plans ?? []).reduce((sum, child) => sum + rowsRead(child, relation), 0);
}

/** The plan as indented lines of node, relation and rows, for a failure's message. */
function outline(node: PlanNode, depth = 0): string {
  const rows = `${node['Actual Rows']}×${node['Actual Loops']}`;
  const removed = node['Rows Removed by Filter'] ? ` (-${node['Rows Removed by Filter']})` : '';
  const line = `${'  '.repeat(depth)}${node['Node Type']} ${node['Relation Name'] ?? ''} ${rows}${removed}`;
  return [line, ...(node.Plans ?? []).map((child) => outline(child, depth + 1))].join('\n');
}

// The SQLite claim's plans are checked in delivery-claims.test.ts. PostgreSQL picks plans by
// cost, so this check runs its claim on a backlog of thousands of runs, with statistics, and
// counts what the executed plan read.
describe.runIf(ON_POSTGRES)('claims on PostgreSQL', () => {
  let database: TestDatabase;
  let storage: PgStorage;
  const query = async (text: string, values: unknown[] = []) =>
    (await storage.handle.pool.query(text, values)).rows as Record<string, unknown>[];

  beforeAll(async () => {
    database = await createTestDatabase(POSTGRES_SERVER_URL);
    // One connection, so that its named statements can be read back (pg_prepared_statements).
    storage = await openPgStorage(database.url, { poolSize: 1 });
  }, 60_000);
  afterAll(async () => {
    await storage?.close();
    await database?.drop();
  });

  it('passing over a full destination, reads the other lines by action, not its backlog', async () => {
    const entity = newId();
    const [busy, other] = [newId(), newId()];
    await query(`INSERT INTO entities (id, name) VALUES ($1, 'acme')`, [entity]);
    for (const [id, name] of [
      [busy, 'busy'],
      [other, 'other'],
    ]) {
      await query(
        `INSERT INTO actions (id, entity_id, kind, name, url) VALUES ($1, $2, 'WEBHOOK', $3, 'https://example.com')`,
        [id, entity, name],
      );
    }
    const queue = (action: string | null, count: number, dueAt: number) =>
      query(
        `INSERT INTO triggered_runs (id, entity_id, automation_name, action_id, status, next_attempt_at)
         SELECT gen_random_uuid()::text, $1, 'a', $2, 'QUEUED', $3 FROM generate_series(1, $4)`,
        [entity, action, dueAt, count],
      );
    // The busy destination's backlog fills the head of the line forty times over; behind it, a
    // run of a deleted action and 1,600 runs of another (enough that PostgreSQL's estimates
    // expect them throughout the due index).
    await queue(busy, PASS_OVER_HEAD * 40, 1_000);
    await queue(null, 1, 1_500);
    await queue(other, 1_600, 2_000);
    await queue(other, 1, 9_000);
    await query('ANALYZE triggered_runs');

    const sent: { text: string; values: unknown[] }[] = [];
    const original = pg.Client.prototype.query as (...args: unknown[]) => unknown;
    const spy = vi.spyOn(pg.Client.prototype, 'query').mockImplementation(function (
      this: pg.Client,
      ...args: unknown[]
    ) {
      const [config] = args as [{ name?: string; text?: string; values?: unknown[] }];
      if (config?.name?.startsWith('delivery.claim:passOver')) {
        sent.push({ text: config.text!, values: config.values! });
      }
      return original.apply(this, args);
    } as never);
    const request = {
      owner: 'w1',
      now: new Date(5_000),
      leaseExpiresAt: new Date(65_000),
      limit: 8,
      passOver: [busy],
    };
    let claimed: Awaited<ReturnType<typeof storage.delivery.claimDue>>;
    try {
      claimed = await storage.delivery.claimDue(request);
    } finally {
      spy.mockRestore();
    }
    // The deleted action's run, then the other action's, oldest first.
    expect(claimed.map((run) => [run.run.actionId, run.run.nextAttemptAt?.getTime()])).toEqual([
      [null, 1_500],
      ...Array(7).fill([other, 2_000]),
    ]);
    expect(sent).toHaveLength(1);

    // The same claim again, its plan executed and rolled back: what it read of the runs.
    await query(`UPDATE triggered_runs SET status = 'QUEUED', lease_owner = NULL,
      lease_expires_at = NULL WHERE status = 'RUNNING'`);
    const client = await storage.handle.pool.connect();
    const [{ text, values }] = sent as [{ text: string; values: unknown[] }];
    const literal = (value: unknown) =>
      client.escapeLiteral(Array.isArray(value) ? `{${value.join(',')}}` : String(value));
    try {
      await client.query(`PREPARE claim AS ${text}`);
      // The plan of the claim's first executions, made for its values, and the generic plan a
      // named statement settles on, made without them.
      for (const mode of ['force_custom_plan', 'force_generic_plan']) {
        await client.query(`SET plan_cache_mode = ${mode}`);
        await client.query('BEGIN');
        const explained = await client.query(
          `EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE claim(${values.map(literal).join(', ')})`,
        );
        await client.query('ROLLBACK');
        const plan = (explained.rows[0] as { 'QUERY PLAN': [{ Plan: PlanNode }] })['QUERY PLAN'][0]
          .Plan;
        // The head of the line, each live action's first runs, and the runs taken and loaded:
        // a few hundred rows, where reading past the backlog reads over five thousand.
        const read = rowsRead(plan, 'triggered_runs');
        expect(read, `${mode}\n${outline(plan)}`).toBeLessThan(PASS_OVER_HEAD * 3);
        expect(read, mode).toBeGreaterThanOrEqual(PASS_OVER_HEAD);
      }
    } finally {
      await client.query('DEALLOCATE ALL');
      await client.query('RESET plan_cache_mode');
      client.release();
    }
  });

  it('settles on generic plans for its claims, a few statements for every limit', async () => {
    const claim = (passOver: string[]) =>
      storage.delivery.claimDue({
        owner: 'w2',
        now: new Date(5_000),
        leaseExpiresAt: new Date(65_000),
        limit: 2,
        passOver,
      });
    // PostgreSQL plans a named statement's first five executions for their values, then keeps
    // a generic plan unless it looks dearer than those.
    for (let i = 0; i < 8; i++) {
      expect(await claim([])).toHaveLength(2);
      expect(await claim([newId()])).toHaveLength(2);
    }
    const statements = await query(
      `SELECT name, generic_plans::int AS generic, custom_plans::int AS custom
       FROM pg_prepared_statements
       WHERE name LIKE 'delivery.claim%' AND generic_plans + custom_plans = 8 ORDER BY name`,
    );
    expect(statements).toEqual([
      { name: expect.stringMatching(/^delivery\.claim\b/), generic: 3, custom: 5 },
      { name: expect.stringMatching(/^delivery\.claim:passOver\b/), generic: 3, custom: 5 },
    ]);
    // A cached plan of the claim holds about 1 MB of the connection's memory, so limits share
    // statements: each takes exactly its limit, through the statement of the next power of two.
    for (const limit of [3, 5, 6, 7]) {
      const taken = await storage.delivery.claimDue({
        owner: 'w3',
        now: new Date(5_000),
        leaseExpiresAt: new Date(65_000),
        limit,
        passOver: [],
      });
      expect(taken).toHaveLength(limit);
    }
    const names = await query(
      `SELECT name FROM pg_prepared_statements
       WHERE name LIKE 'delivery.claim:%' AND name NOT LIKE '%passOver%' ORDER BY name`,
    );
    expect(names.map((row) => row.name)).toEqual([
      'delivery.claim:2',
      'delivery.claim:4',
      'delivery.claim:8',
    ]);
  });
});
