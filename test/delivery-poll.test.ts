import { afterEach, describe, expect, it } from 'vitest';
import { createTestApp, fakeClock, type TestApp } from './support/app.js';
import { createAutomation, createProject, createWebhookAction, emit } from './support/fixtures.js';
import { type Receiver, startReceiver } from './support/receiver.js';

let t: TestApp | undefined;
let receiver: Receiver | undefined;

afterEach(async () => {
  await t?.close();
  await receiver?.close();
});

const RUN = `query($id: ID!) { triggeredRun(id: $id) { status nextAttemptAt attempts { statusCode } } }`;

describe('the periodic poll', () => {
  it('delivers a retry that comes due later, with nothing waking the engine', async () => {
    const clock = fakeClock();
    receiver = await startReceiver();
    receiver.enqueue({ status: 503 });
    t = await createTestApp({
      clock,
      env: { TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1', TRIPLINE_DELIVERY_POLL_MS: '20' },
      // Half the ceiling: the retry is due seconds later, never at once.
      app: { delivery: { random: () => 0.5 } },
    });
    await createProject(t, 'p');
    const action = await createWebhookAction(t, { name: 'hook', url: `${receiver.url}/hook` });
    await createAutomation(t, {
      name: 'a',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId: action.id,
    });
    const runId = (await emit(t)).triggeredRuns[0].id;
    await t.app.engine.drain();
    const retrying = (await t.gql(RUN, { id: runId })).data.triggeredRun;
    expect(retrying.status).toBe('RETRYING');
    expect(Date.parse(retrying.nextAttemptAt)).toBeGreaterThan(clock.now().getTime());

    t.app.start();
    // Let the look start() schedules run while the retry is not yet due, so only the poll is left.
    await new Promise((resolve) => setImmediate(resolve));
    clock.advance(60 * 60_000);

    await receiver.waitForRequests(2);
    let run = (await t.gql(RUN, { id: runId })).data.triggeredRun;
    while (run.status === 'RUNNING' || run.status === 'RETRYING') {
      await new Promise((resolve) => setTimeout(resolve, 10));
      run = (await t.gql(RUN, { id: runId })).data.triggeredRun;
    }
    expect(run).toMatchObject({
      status: 'SUCCEEDED',
      attempts: [{ statusCode: 503 }, { statusCode: 200 }],
    });
  });
});
