import { afterEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from './support/app.js';
import {
  createAutomation,
  createProject,
  createWebhookAction,
  emit,
  mutate,
} from './support/fixtures.js';
import { type Receiver, startReceiver } from './support/receiver.js';

let t: TestApp | undefined;
const receivers: Receiver[] = [];

afterEach(async () => {
  await t?.close();
  t = undefined;
  for (const receiver of receivers.splice(0)) await receiver.close();
});

async function receiver(...args: Parameters<typeof startReceiver>): Promise<Receiver> {
  const started = await startReceiver(...args);
  receivers.push(started);
  return started;
}

/** A receiver that answers 200 at once, then sends its 40-byte body one byte every 100 ms. */
const dripping = () => receiver(() => ({ drip: { bytes: 40, everyMs: 100 } }));

const RUN = `query($id: ID!) { triggeredRun(id: $id) { status attemptCount result
  attempts { attemptNumber statusCode errorClass errorMessage durationMs } } }`;

/** Reads a run through the API until `done` holds; the test's timeout bounds the wait. */
async function runUntil(app: TestApp, id: string, done: (run: { status: string }) => boolean) {
  for (;;) {
    const run = (await app.gql(RUN, { id })).data.triggeredRun;
    if (done(run)) return run;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** An automation on project `p` for CREATE_ARTIFACT in `collection`, delivering to `url`. */
async function deliverTo(app: TestApp, name: string, collection: string, url: string) {
  const action = await createWebhookAction(app, { name, url });
  await createAutomation(app, {
    name,
    eventType: 'CREATE_ARTIFACT',
    scope: { type: 'PROJECT', project: 'p' },
    filter: { collectionName: collection },
    actionId: action.id,
  });
  return action.id;
}

describe('the delivery deadline', () => {
  it('aborts an attempt whose receiver drips its body past the deadline, records TIMEOUT and retries', async () => {
    const drip = await dripping();
    t = await createTestApp({
      env: { TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1', TRIPLINE_DELIVERY_TIMEOUT_MS: '1500' },
      // Jitter at its middle: a retry drawn near zero would come due within drain() itself.
      app: { delivery: { random: () => 0.5 } },
    });
    await createProject(t, 'p');
    await deliverTo(t, 'drip', 'my-model', `${drip.url}/hook`);
    const runId = (await emit(t)).triggeredRuns[0].id;
    await t.app.engine.drain();
    const run = (await t.gql(RUN, { id: runId })).data.triggeredRun;
    expect(run).toMatchObject({ status: 'RETRYING', attemptCount: 1 });
    expect(run.attempts).toMatchObject([
      {
        attemptNumber: 1,
        statusCode: null,
        errorClass: 'TIMEOUT',
        errorMessage:
          'The receiver answered HTTP 200 but did not finish its body within the 1500ms deadline',
      },
    ]);
    expect(run.result).toMatch(/^Timed out: .*; retrying in/);
  });

  it('holds testAction to the same deadline', async () => {
    const drip = await dripping();
    t = await createTestApp({
      env: { TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1', TRIPLINE_DELIVERY_TIMEOUT_MS: '1500' },
    });
    const action = await createWebhookAction(t, { name: 'drip', url: `${drip.url}/hook` });
    const result = await mutate(
      t,
      `mutation($i: TestActionInput!) { testAction(input: $i) {
        __typename ... on TestActionPayload { response { __typename success statusCode errorClass errorMessage } } } }`,
      { i: { id: action.id } },
    );
    expect(result.response).toEqual({
      __typename: 'ActionTestResponse',
      success: false,
      statusCode: null,
      errorClass: 'TIMEOUT',
      errorMessage:
        'The receiver answered HTTP 200 but did not finish its body within the 1500ms deadline',
    });
  });
});

describe('slots shared between destinations', () => {
  it('keeps delivering to a healthy receiver while another hangs on every request', async () => {
    const hanging = await receiver(() => ({ hang: true }));
    const healthy = await receiver();
    t = await createTestApp({
      env: {
        TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1',
        TRIPLINE_DELIVERY_CONCURRENCY: '2',
        // Far beyond the test's own timeout: only a fair share of slots can let the healthy
        // receiver through while the hanging one holds its requests.
        TRIPLINE_DELIVERY_TIMEOUT_MS: '30000',
      },
    });
    await createProject(t, 'p');
    await deliverTo(t, 'stuck', 'slow', `${hanging.url}/hook`);
    await deliverTo(t, 'fine', 'fast', `${healthy.url}/hook`);
    t.app.start();
    const stuck: string[] = [];
    for (let version = 0; version < 3; version++) {
      stuck.push(
        (await emit(t, { collection: 'slow', versionIndex: version })).triggeredRuns[0].id,
      );
    }
    await hanging.waitForRequests(1);
    const fine = (await emit(t, { collection: 'fast' })).triggeredRuns[0].id;

    const delivered = await runUntil(
      t,
      fine,
      (run) => run.status !== 'QUEUED' && run.status !== 'RUNNING',
    );
    expect(delivered).toMatchObject({ status: 'SUCCEEDED', attempts: [{ statusCode: 200 }] });
    expect(healthy.requests).toHaveLength(1);
    // The hanging receiver holds its share, one of the two slots, and still hangs.
    expect(hanging.requests).toHaveLength(1);
    const statuses = await Promise.all(
      stuck.map(async (id) => (await t!.gql(RUN, { id })).data.triggeredRun.status),
    );
    expect(statuses.sort()).toEqual(['QUEUED', 'QUEUED', 'RUNNING']);
  });
});
