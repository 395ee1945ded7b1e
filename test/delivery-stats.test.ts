import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, fakeClock, type TestApp } from './support/app.js';
import { createAutomation, createProject, createWebhookAction, emit } from './support/fixtures.js';
import { type Receiver, startReceiver } from './support/receiver.js';

let t: TestApp;
let receiver: Receiver;
const clock = fakeClock();

beforeEach(async () => {
  clock.set(Date.parse('2026-01-01T00:00:00Z'));
  t = await createTestApp({
    clock,
    env: { TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1', TRIPLINE_RETRY_MAX_ATTEMPTS: '1' },
  });
  receiver = await startReceiver();
  await createProject(t, 'p');
  const hook = await createWebhookAction(t, { name: 'hook', url: `${receiver.url}/hook` });
  await createAutomation(t, {
    name: 'a',
    eventType: 'CREATE_ARTIFACT',
    scope: { type: 'PROJECT', project: 'p' },
    actionId: hook.id,
  });
});

afterEach(async () => {
  await receiver.close();
  await t.close();
});

const STATS = `query($minutes: Int) { entity(name: "default") { deliveryStats(minutes: $minutes) {
  since until truncated
  attempts { startedAt durationMs statusCode errorClass outcome }
  backlog { queued running retrying total } } } }`;

describe('deliveryStats', () => {
  it("answers the window's attempts newest first, by outcome, and the backlog", async () => {
    receiver.enqueue({ status: 200 }, { status: 500 });
    await emit(t);
    await t.app.engine.drain();
    clock.advance(30 * 60_000);
    const failed = (await emit(t)).triggeredRuns[0].id;
    await t.app.engine.drain();
    const run = await t.gql(
      'query($id: ID!) { node(id: $id) { ... on TriggeredRun { result } } }',
      {
        id: failed,
      },
    );
    expect(run.data.node.result).toBe('HTTP 500 from receiver; gave up after 1 attempt');
    clock.advance(31 * 60_000);
    await emit(t); // queued, not delivered: the backlog

    const { data } = await t.gql(STATS, {});
    const stats = data.entity.deliveryStats;
    expect(stats.until).toBe('2026-01-01T01:01:00.000Z');
    expect(stats.since).toBe('2026-01-01T00:01:00.000Z');
    // The first attempt (at 00:00) is outside the last hour.
    expect(stats.attempts).toEqual([
      {
        startedAt: '2026-01-01T00:30:00.000Z',
        durationMs: expect.any(Number),
        statusCode: 500,
        errorClass: null,
        outcome: 'HTTP_ERROR',
      },
    ]);
    expect(stats.truncated).toBe(false);
    expect(stats.backlog).toEqual({ queued: 1, running: 0, retrying: 0, total: 1 });

    const wide = (await t.gql(STATS, { minutes: 120 })).data.entity.deliveryStats;
    expect(wide.attempts.map((a: { outcome: string }) => a.outcome)).toEqual([
      'HTTP_ERROR',
      'SUCCEEDED',
    ]);
  });

  it("counts only the entity's own attempts, for any member, and refuses a window out of range", async () => {
    receiver.enqueue({ status: 200 });
    await emit(t);
    await t.app.engine.drain();
    const viewer = await t.member('VIEWER');
    const seen = await t.gql(STATS, {}, viewer);
    expect(seen.data.entity.deliveryStats.attempts).toHaveLength(1);

    const stranger = await t.stranger();
    const other = await t.gql(
      'query { entity(name: "other") { deliveryStats { attempts { outcome } backlog { total } } } }',
      {},
      stranger,
    );
    expect(other.data.entity.deliveryStats).toEqual({ attempts: [], backlog: { total: 0 } });
    expect((await t.gql(STATS, {}, stranger)).data.entity).toBeNull();

    const refused = await t.gql(STATS, { minutes: 0 });
    expect(refused.errors?.[0]?.extensions).toMatchObject({
      code: 'INVALID_ARGUMENT',
      argument: 'minutes',
    });
  });
});
