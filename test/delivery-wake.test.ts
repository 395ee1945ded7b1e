import { describe, expect, it, onTestFinished } from 'vitest';
import type { DeliveryStore } from '../src/storage/delivery.js';
import { createTestApp } from './support/app.js';
import { deferred, deliveryConfig, useDeliveryTestbed } from './support/delivery-fixtures.js';
import { createAutomation, createProject, createWebhookAction, emit } from './support/fixtures.js';
import { startReceiver } from './support/receiver.js';

const tb = useDeliveryTestbed();

/**
 * The next turn of the event loop. A wake claims in the turn after it (`setImmediate`), so after
 * this a claim it made has started.
 */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * A store counting `claimDue` calls. `idle()` resolves once no claim or hand-back is under way
 * and none started during a turn of the event loop: the engine's fill is over.
 */
function countingStore(store: DeliveryStore): {
  store: DeliveryStore;
  claims: () => number;
  idle: () => Promise<void>;
} {
  let claims = 0;
  let started = 0;
  let pending = 0;
  let settled = deferred();
  const track = <T>(operation: Promise<T>): Promise<T> => {
    started++;
    pending++;
    return operation.finally(() => {
      if (--pending === 0) settled.resolve();
    });
  };
  return {
    store: {
      ...store,
      claimDue(request, choose) {
        claims++;
        return track(store.claimDue(request, choose));
      },
      unclaim(owner, runIds, now) {
        return track(store.unclaim(owner, runIds, now));
      },
    },
    claims: () => claims,
    async idle() {
      for (;;) {
        if (pending > 0) {
          settled = deferred();
          await settled.promise;
        }
        const seen = started;
        await nextTurn();
        if (pending === 0 && started === seen) return;
      }
    },
  };
}

describe('wake', () => {
  it('claims nothing when every woken action belongs to a destination held at its share', async () => {
    // The first request is held until the test lets it fail; every other one hangs.
    const firstEnds = deferred();
    const hanging = await startReceiver((_, index) =>
      index === 0 ? firstEnds.promise.then(() => ({ destroy: true })) : { hang: true },
    );
    onTestFinished(() => hanging.close());
    const hangingAction = tb.fx.addWebhookAction({ url: `${hanging.url}/hook` });
    const hangingAutomation = tb.fx.addAutomation({ actionId: hangingAction });
    const promptAction = tb.fx.addWebhookAction({ url: `${tb.receiver.url}/hook` });
    const promptAutomation = tb.fx.addAutomation({ actionId: promptAction });
    for (let i = 0; i < 20; i++) tb.fx.queueRun({ automationId: hangingAutomation });

    const counted = countingStore(tb.fx.storage.delivery);
    const engine = tb.fx.engine({
      store: counted.store,
      // Four slots, two per destination; no poll and no timeout within the test.
      config: deliveryConfig({ concurrency: 4, pollIntervalMs: 600_000, timeoutMs: 30_000 }),
    });
    engine.start();
    await hanging.waitForRequests(2);
    await counted.idle();
    const learnt = counted.claims();
    expect(learnt).toBeGreaterThan(0);

    // More runs of the hanging destination's action: its share is full, so nothing is claimed.
    for (let i = 0; i < 3; i++) {
      tb.fx.queueRun({ automationId: hangingAutomation });
      engine.wake([hangingAction, hangingAction]);
      await nextTurn();
    }
    expect(counted.claims()).toBe(learnt);

    // Another action, a run without an action, or anything at all: the engine looks.
    for (const actionIds of [[hangingAction, promptAction], [null], undefined]) {
      const before = counted.claims();
      engine.wake(actionIds);
      await nextTurn();
      expect(counted.claims()).toBeGreaterThan(before);
      // The look found nothing new: the hanging destination's runs are skipped again.
      await counted.idle();
      const after = counted.claims();
      engine.wake([hangingAction]);
      await nextTurn();
      expect(counted.claims()).toBe(after);
    }

    // A run of another destination queued later goes out at once.
    const prompt = tb.fx.queueRun({ automationId: promptAutomation });
    engine.wake([promptAction]);
    await tb.fx.waitForStatus(prompt, 'SUCCEEDED');

    // A slot of the hanging destination freed: its next run is claimed and sent.
    await counted.idle();
    const beforeRelease = counted.claims();
    firstEnds.resolve();
    await hanging.waitForRequests(3);
    expect(counted.claims()).toBeGreaterThan(beforeRelease);
    expect(hanging.requests).toHaveLength(3);
    await counted.idle();
    const relearnt = counted.claims();
    engine.wake([hangingAction]);
    await nextTurn();
    expect(counted.claims()).toBe(relearnt);
  });
});

describe("a run's end", () => {
  it('claims nothing when the claim that took the run took all that was due', async () => {
    const ends = deferred();
    const held = await startReceiver(() => ends.promise.then(() => ({ status: 200 })));
    onTestFinished(() => held.close());
    const action = tb.fx.addWebhookAction({ url: `${held.url}/hook` });
    const automation = tb.fx.addAutomation({ actionId: action });
    const run = tb.fx.queueRun({ automationId: automation });

    const counted = countingStore(tb.fx.storage.delivery);
    const engine = tb.fx.engine({
      store: counted.store,
      config: deliveryConfig({ concurrency: 4, pollIntervalMs: 600_000, timeoutMs: 30_000 }),
    });
    engine.start();
    await held.waitForRequests(1);
    await counted.idle();
    const claims = counted.claims();

    // The claim took the only due run with room to spare: its end frees a slot nothing waits for.
    ends.resolve();
    await tb.fx.waitForStatus(run, 'SUCCEEDED');
    await counted.idle();
    expect(counted.claims()).toBe(claims);

    // A run queued afterwards still goes out at once.
    const next = tb.fx.queueRun({ automationId: automation });
    engine.wake([action]);
    await tb.fx.waitForStatus(next, 'SUCCEEDED');
    expect(counted.claims()).toBeGreaterThan(claims);
  });

  it('claims a retry due at once without waiting for the poll', async () => {
    const flaky = await startReceiver((_, index) => (index === 0 ? { status: 503 } : {}));
    onTestFinished(() => flaky.close());
    const action = tb.fx.addWebhookAction({ url: `${flaky.url}/hook` });
    const run = tb.fx.queueRun({ automationId: tb.fx.addAutomation({ actionId: action }) });

    const engine = tb.fx.engine({
      // Full jitter drawn at 0: the retry is due as soon as the failed attempt ends.
      random: () => 0,
      config: deliveryConfig({ concurrency: 4, pollIntervalMs: 600_000, timeoutMs: 30_000 }),
    });
    engine.start();
    await tb.fx.waitForStatus(run, 'SUCCEEDED');
    expect(tb.fx.attempts(run).map((attempt) => attempt.statusCode)).toEqual([503, 200]);
  });
});

describe('the app', () => {
  it("wakes the engine with the queued runs' actions, so events for a hanging receiver claim nothing", async () => {
    const hanging = await startReceiver(() => ({ hang: true }));
    onTestFinished(() => hanging.close());
    const t = await createTestApp({
      env: {
        TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1',
        TRIPLINE_DELIVERY_CONCURRENCY: '2',
        TRIPLINE_DELIVERY_TIMEOUT_MS: '30000',
        TRIPLINE_DELIVERY_POLL_MS: '600000',
      },
    });
    onTestFinished(() => t.close());
    await createProject(t, 'p');
    const deliverTo = async (collection: string, url: string) => {
      const action = await createWebhookAction(t, { name: collection, url });
      await createAutomation(t, {
        name: collection,
        eventType: 'CREATE_ARTIFACT',
        scope: { type: 'PROJECT', project: 'p' },
        filter: { collectionName: collection },
        actionId: action.id,
      });
    };
    await deliverTo('stuck', `${hanging.url}/hook`);
    await deliverTo('fine', `${tb.receiver.url}/hook`);
    for (let version = 0; version < 3; version++) {
      await emit(t, { collection: 'stuck', versionIndex: version });
    }
    // The engine holds this very store: count its claims from here on.
    const { delivery } = t.storage;
    const counted = countingStore({ ...delivery });
    delivery.claimDue = counted.store.claimDue;
    delivery.unclaim = counted.store.unclaim;
    const { engine } = t.app;
    const wake = engine.wake;
    const woken: (readonly (string | null)[] | undefined)[] = [];
    let awoken = deferred();
    engine.wake = (actionIds) => {
      woken.push(actionIds);
      wake(actionIds);
      awoken.resolve();
    };
    t.app.start();
    await hanging.waitForRequests(1);
    await counted.idle();
    const learnt = counted.claims();

    awoken = deferred();
    await emit(t, { collection: 'stuck', versionIndex: 3 });
    await awoken.promise;
    await nextTurn();
    expect(woken).toEqual([[expect.any(String)]]);
    expect(counted.claims()).toBe(learnt);

    await emit(t, { collection: 'fine' });
    await tb.receiver.waitForRequests(1);
    expect(counted.claims()).toBeGreaterThan(learnt);
    expect(hanging.requests).toHaveLength(1);
  });
});
