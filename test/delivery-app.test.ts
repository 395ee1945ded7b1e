import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, fakeClock, type TestApp } from './support/app.js';
import {
  createAutomation,
  createProject,
  createWebhookAction,
  emit,
  mutate,
} from './support/fixtures.js';
import { type Receiver, startReceiver } from './support/receiver.js';

let t: TestApp;
let receiver: Receiver;
let actionId: string;
let automationId: string;
const clock = fakeClock();

beforeEach(async () => {
  t = await createTestApp({
    clock,
    env: { TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1', TRIPLINE_RETRY_MAX_ATTEMPTS: '2' },
  });
  receiver = await startReceiver();
  await createProject(t, 'p');
  actionId = (await createWebhookAction(t, { name: 'hook', url: `${receiver.url}/hook` })).id;
  automationId = await createAutomation(t, {
    name: 'a',
    eventType: 'CREATE_ARTIFACT',
    scope: { type: 'PROJECT', project: 'p' },
    actionId,
  });
});

afterEach(async () => {
  await receiver.close();
  await t.close();
});

const RUN = `query($id: ID!) { triggeredRun(id: $id) { status attemptCount result attempts { attemptNumber statusCode } } }`;
const run = async (id: string) => (await t.gql(RUN, { id })).data.triggeredRun;

describe('runs delivered by the app', () => {
  it('re-delivers a failed run on request with the same webhook-id', async () => {
    receiver.enqueue({ status: 400, body: 'bad' });
    const runId = (await emit(t)).triggeredRuns[0].id;
    await t.app.engine.drain();
    expect(await run(runId)).toMatchObject({
      status: 'FAILED',
      attempts: [{ attemptNumber: 1, statusCode: 400 }],
    });

    const retried = await mutate(
      t,
      'mutation($id: ID!) { retryTriggeredRun(input: { id: $id }) { __typename ... on RetryTriggeredRunPayload { run { status } } } }',
      { id: runId },
    );
    expect(retried).toEqual({ __typename: 'RetryTriggeredRunPayload', run: { status: 'QUEUED' } });
    await t.app.engine.drain();
    expect(await run(runId)).toMatchObject({
      status: 'SUCCEEDED',
      attempts: [
        { attemptNumber: 1, statusCode: 400 },
        { attemptNumber: 2, statusCode: 200 },
      ],
    });
    const ids = receiver.requests.map((r) => r.headers['webhook-id']);
    expect(ids).toHaveLength(2);
    expect(ids[0]).toBe(ids[1]);
    expect(
      await mutate(
        t,
        'mutation($id: ID!) { retryTriggeredRun(input: { id: $id }) { __typename } }',
        { id: runId },
        await t.member('VIEWER'),
      ),
    ).toEqual({
      __typename: 'PermissionDeniedError',
    });
  });

  it('skips runs whose automation was disabled before delivery', async () => {
    const runId = (await emit(t)).triggeredRuns[0].id;
    await mutate(
      t,
      'mutation($i: UpdateAutomationInput!) { updateAutomation(input: $i) { __typename } }',
      { i: { id: automationId, enabled: false } },
    );
    await t.app.engine.drain();
    expect(await run(runId)).toMatchObject({ status: 'SKIPPED', attempts: [] });
    expect(receiver.requests).toHaveLength(0);
  });

  it('fails after the configured attempts and disables the action on 410', async () => {
    receiver.respond(() => ({ status: 503 }));
    const runId = (await emit(t)).triggeredRuns[0].id;
    await t.app.engine.drain();
    expect((await run(runId)).status).toBe('RETRYING');
    clock.advance(60 * 60_000);
    await t.app.engine.drain();
    expect(await run(runId)).toMatchObject({ status: 'FAILED', attemptCount: 2 });

    receiver.respond(() => ({ status: 410 }));
    const gone = (await emit(t, { versionIndex: 1 })).triggeredRuns[0].id;
    await t.app.engine.drain();
    expect((await run(gone)).status).toBe('FAILED');
    const action = await t.gql(
      'query($id: ID!) { node(id: $id) { ... on Action { enabled disabledReason } } }',
      { id: actionId },
    );
    expect(action.data.node.enabled).toBe(false);
    expect(action.data.node.disabledReason).toMatch(/410/);
    const audit = await t.gql(
      '{ entity(name: "default") { auditLog(action: ACTION_DISABLED) { edges { node { actor { name } details } } } } }',
    );
    expect(audit.data.entity.auditLog.edges).toHaveLength(1);
    expect(audit.data.entity.auditLog.edges[0].node.actor).toBeNull();
    expect(audit.data.entity.auditLog.edges[0].node.details.reason).toMatch(/410/);
    // The run as the API names it, so `triggeredRun(id:)` finds it.
    expect(audit.data.entity.auditLog.edges[0].node.details.runId).toBe(gone);
  });
});
