import { eq } from 'drizzle-orm';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { createDeliveryEngine } from '../src/delivery/engine.js';
import { publicId } from '../src/ids.js';
import { createDecryptedSecrets } from '../src/modules/secrets/decrypted.js';
import { secrets as secretsTable, triggeredRuns } from '../src/storage/sqlite/schema.js';
import { openSqliteStorage } from '../src/storage/sqlite/storage.js';
import { deferred, deliveryConfig, useDeliveryTestbed } from './support/delivery-fixtures.js';
import { startReceiver } from './support/receiver.js';

const tb = useDeliveryTestbed();

function automation(): string {
  const actionId = tb.fx.addWebhookAction({ url: `${tb.receiver.url}/hook` });
  return tb.fx.addAutomation({ actionId });
}

describe('claiming', () => {
  it('leaves runs due later alone', async () => {
    const automationId = automation();
    const later = tb.fx.queueRun({
      automationId,
      nextAttemptAt: new Date(tb.fx.clock.now().getTime() + 1_000),
    });
    await tb.fx.engine().drain();
    expect(tb.fx.run(later).status).toBe('QUEUED');
    expect(tb.receiver.requests).toHaveLength(0);
  });

  it("reclaims a crashed worker's run once its lease expires", async () => {
    const automationId = automation();
    const now = tb.fx.clock.now().getTime();
    const expired = tb.fx.queueRun({
      automationId,
      status: 'RUNNING',
      leaseOwner: 'crashed-worker',
      leaseExpiresAt: new Date(now - 1),
    });
    const held = tb.fx.queueRun({
      automationId,
      status: 'RUNNING',
      leaseOwner: 'live-worker',
      leaseExpiresAt: new Date(now + 30_000),
    });
    const engine = tb.fx.engine({ workerId: 'rescuer' });
    await engine.drain();
    expect(tb.fx.run(expired)).toMatchObject({ status: 'SUCCEEDED', leaseOwner: null });
    expect(tb.fx.run(held)).toMatchObject({ status: 'RUNNING', leaseOwner: 'live-worker' });

    tb.fx.clock.advance(30_000);
    await engine.drain();
    expect(tb.fx.run(held).status).toBe('SUCCEEDED');
    expect(tb.receiver.requests.map((r) => r.headers['webhook-id'])).toEqual([
      publicId('run', expired),
      publicId('run', held),
    ]);
  });

  it('drops the result of an attempt that outlived its lease, which stays INTERRUPTED in the history', async () => {
    const gate = deferred();
    tb.receiver.respond((_, index) =>
      index === 0 ? gate.promise.then(() => ({ status: 500 })) : { status: 200, body: 'second' },
    );
    const runId = tb.fx.queueRun({ automationId: automation() });
    const slow = tb.fx.engine({ workerId: 'slow' });
    const slowDrained = slow.drain();
    await tb.receiver.waitForRequests(1);
    tb.fx.clock.advance(60_000);
    await tb.fx.engine({ workerId: 'fast' }).drain();
    expect(tb.fx.run(runId)).toMatchObject({ status: 'SUCCEEDED', attemptCount: 2 });
    gate.resolve();
    await slowDrained;
    expect(tb.fx.run(runId)).toMatchObject({ status: 'SUCCEEDED', attemptCount: 2 });
    expect(tb.fx.attempts(runId)).toMatchObject([
      { attemptNumber: 1, errorClass: 'INTERRUPTED', statusCode: null, durationMs: null },
      { attemptNumber: 2, errorClass: null, statusCode: 200, responseBody: 'second' },
    ]);
  });

  it('lets two workers on separate connections share the queue without double delivery', async () => {
    const automationId = automation();
    const runs = Array.from({ length: 12 }, () => tb.fx.queueRun({ automationId }));
    const other = openSqliteStorage(tb.fx.file);
    try {
      const first = tb.fx.engine({ workerId: 'a', config: deliveryConfig({ concurrency: 3 }) });
      const second = createDeliveryEngine({
        store: other.delivery,
        decrypted: createDecryptedSecrets(tb.fx.secretBox),
        clock: tb.fx.clock,
        logger: tb.fx.logger,
        config: deliveryConfig({ concurrency: 3 }),
        onRunUpdated: () => {},
        workerId: 'b',
      });
      await Promise.all([first.drain(), second.drain()]);
      await second.stop(0);
    } finally {
      await other.close();
    }
    const ids = tb.receiver.requests.map((r) => String(r.headers['webhook-id']));
    expect(ids.sort()).toEqual(runs.map((id) => publicId('run', id)).sort());
    for (const runId of runs) expect(tb.fx.attempts(runId)).toHaveLength(1);
  });

  it('runs at most `concurrency` attempts at once, and at most half of them to one destination', async () => {
    const gate = deferred();
    const other = await startReceiver(() => gate.promise.then(() => ({ status: 204 })));
    onTestFinished(() => other.close());
    tb.receiver.respond(() => gate.promise.then(() => ({ status: 204 })));
    const first = Array.from({ length: 5 }, () => tb.fx.queueRun({ automationId: automation() }));
    const otherAutomation = tb.fx.addAutomation({
      actionId: tb.fx.addWebhookAction({ url: `${other.url}/hook` }),
    });
    const second = Array.from({ length: 5 }, () =>
      tb.fx.queueRun({ automationId: otherAutomation }),
    );
    const engine = tb.fx.engine({ config: deliveryConfig({ concurrency: 3 }) });
    const drained = engine.drain();
    await tb.receiver.waitForRequests(2);
    await other.waitForRequests(1);
    const running = tb.fx.db
      .select()
      .from(triggeredRuns)
      .all()
      .filter((r) => r.status === 'RUNNING');
    expect(running).toHaveLength(3);
    expect(tb.receiver.requests).toHaveLength(2);
    expect(other.requests).toHaveLength(1);
    gate.resolve();
    await drained;
    for (const runId of [...first, ...second]) expect(tb.fx.run(runId).status).toBe('SUCCEEDED');
    expect(tb.receiver.requests).toHaveLength(5);
    expect(other.requests).toHaveLength(5);
  });
});

describe('starting attempts in the claim', () => {
  it("starts each attempt in its claim's commit, and none for a run it skips", async () => {
    const delivered = [automation(), automation()].map((automationId) =>
      tb.fx.queueRun({ automationId }),
    );
    const disabled = tb.fx.addAutomation({
      actionId: tb.fx.addWebhookAction({ url: `${tb.receiver.url}/hook` }),
      enabled: false,
    });
    const skipped = tb.fx.queueRun({ automationId: disabled });
    const startAttempt = vi.spyOn(tb.fx.storage.delivery, 'startAttempt');
    const claimedAt = tb.fx.clock.now();
    await tb.fx.engine().drain();
    expect(startAttempt).not.toHaveBeenCalled();
    for (const runId of delivered) {
      expect(tb.fx.run(runId)).toMatchObject({ status: 'SUCCEEDED', attemptCount: 1 });
      expect(tb.fx.attempts(runId)).toMatchObject([{ startedAt: claimedAt, statusCode: 200 }]);
    }
    expect(tb.fx.run(skipped).status).toBe('SKIPPED');
    expect(tb.fx.attempts(skipped)).toEqual([]);
    expect(tb.receiver.requests.map((r) => r.headers['webhook-timestamp'])).toEqual([
      String(Math.floor(claimedAt.getTime() / 1000)),
      String(Math.floor(claimedAt.getTime() / 1000)),
    ]);
  });

  it('gives back the slots of runs chosen for in a claim the store made again', async () => {
    const automationId = automation();
    const runs = Array.from({ length: 20 }, () => tb.fx.queueRun({ automationId }));
    const store = tb.fx.storage.delivery;
    const claimDue = store.claimDue.bind(store);
    // As a rolled-back group commit does: the store asks about runs it then does not claim.
    const claims = vi.spyOn(store, 'claimDue').mockImplementation((request, choose) =>
      claimDue(request, (run) => {
        const choice = choose!(run);
        choose!({ ...run, id: `${run.id}-again` });
        return choice;
      }),
    );
    const engine = tb.fx.engine({ config: deliveryConfig({ concurrency: 4 }) });
    await engine.drain();
    for (const runId of runs) expect(tb.fx.run(runId).status).toBe('SUCCEEDED');
    // Nothing is in flight, so no destination holds a slot and a claim passes nothing over.
    const before = claims.mock.calls.length;
    await engine.drain();
    expect(claims.mock.calls[before]?.[0].passOver).toEqual([]);
  });
});

describe('sharing slots', () => {
  it('claims as many runs as it has free slots at once', async () => {
    const other = await startReceiver();
    onTestFinished(() => other.close());
    const first = automation();
    const second = tb.fx.addAutomation({
      actionId: tb.fx.addWebhookAction({ url: `${other.url}/hook` }),
    });
    for (const automationId of [first, second, first, second]) tb.fx.queueRun({ automationId });
    const claimDue = vi.spyOn(tb.fx.storage.delivery, 'claimDue');
    await tb.fx.engine({ config: deliveryConfig({ concurrency: 4 }) }).drain();
    const [batch] = await Promise.all(claimDue.mock.results.map((result) => result.value));
    expect(batch).toHaveLength(4);
    expect(tb.receiver.requests).toHaveLength(2);
    expect(other.requests).toHaveLength(2);
  });

  it('lends idle slots to a lone destination that answers promptly', async () => {
    const gate = deferred();
    tb.receiver.respond((_, index) =>
      index === 0 ? { status: 200 } : gate.promise.then(() => ({ status: 200 })),
    );
    const automationId = automation();
    const engine = tb.fx.engine({ config: deliveryConfig({ concurrency: 4 }) });
    // One prompt answer shows the destination is healthy.
    tb.fx.queueRun({ automationId });
    await engine.drain();
    const runs = Array.from({ length: 20 }, () => tb.fx.queueRun({ automationId }));
    const drained = engine.drain();
    // Its share is 2 of the 4 slots; with nobody else waiting it may use all 4.
    await tb.receiver.waitForRequests(1 + 4);
    expect(runs.map((id) => tb.fx.run(id).status).filter((s) => s === 'RUNNING')).toHaveLength(4);
    gate.resolve();
    await drained;
    for (const runId of runs) expect(tb.fx.run(runId).status).toBe('SUCCEEDED');
  });

  it('gives the slots a destination borrowed to another destination whose runs wait', async () => {
    const arrivals: string[] = [];
    const gates = Array.from({ length: 12 }, () => deferred());
    tb.receiver.respond((_, index) => {
      arrivals.push('lender');
      return index === 0 ? { status: 200 } : gates[index]!.promise.then(() => ({ status: 200 }));
    });
    const other = await startReceiver(() => {
      arrivals.push('other');
      return { status: 200 };
    });
    onTestFinished(() => other.close());
    const automationId = automation();
    const engine = tb.fx.engine({ config: deliveryConfig({ concurrency: 4 }) });
    tb.fx.queueRun({ automationId });
    await engine.drain();
    for (let i = 0; i < 6; i++) tb.fx.queueRun({ automationId });
    const drained = engine.drain();
    await tb.receiver.waitForRequests(1 + 4);
    const otherAutomation = tb.fx.addAutomation({
      actionId: tb.fx.addWebhookAction({ url: `${other.url}/hook` }),
    });
    tb.fx.queueRun({ automationId: otherAutomation });
    tb.fx.queueRun({ automationId: otherAutomation });
    // New runs are queued (as `wake` or the poll would tell the engine); then two slots free up.
    const again = engine.drain();
    gates[1]!.resolve();
    gates[2]!.resolve();
    await other.waitForRequests(2);
    for (const gate of gates) gate.resolve();
    await Promise.all([drained, again]);
    // The older runs of the lender wait until the newer runs of the other destination went out.
    expect(arrivals.slice(0, 7)).toEqual([...Array(5).fill('lender'), 'other', 'other']);
    expect(arrivals).toHaveLength(9);
  });
});

describe('start and wake', () => {
  it('delivers a run queued after start when woken', async () => {
    const automationId = automation();
    const engine = tb.fx.engine({ config: deliveryConfig({ pollIntervalMs: 60_000 }) });
    engine.start();
    const runId = tb.fx.queueRun({ automationId });
    engine.wake();
    await tb.fx.waitForStatus(runId, 'SUCCEEDED');
    expect(tb.fx.published(runId)).toEqual(['RUNNING', 'SUCCEEDED']);
  });

  it('finds due runs by polling', async () => {
    const automationId = automation();
    const engine = tb.fx.engine({ config: deliveryConfig({ pollIntervalMs: 10 }) });
    engine.start();
    const runId = tb.fx.queueRun({ automationId });
    await tb.fx.waitForStatus(runId, 'SUCCEEDED');
  });
});

describe('stop', () => {
  it('aborts an attempt that outlives the grace period and releases its run', async () => {
    tb.receiver.enqueue({ hang: true });
    const automationId = automation();
    const runId = tb.fx.queueRun({ automationId });
    const engine = tb.fx.engine({
      workerId: 'stopping',
      config: deliveryConfig({ timeoutMs: 30_000 }),
    });
    const drained = engine.drain();
    await tb.receiver.waitForRequests(1);
    await engine.stop(0);
    await drained;
    expect(tb.fx.run(runId)).toMatchObject({
      status: 'QUEUED',
      leaseOwner: null,
      leaseExpiresAt: null,
      attemptCount: 0,
      nextAttemptAt: tb.fx.clock.now(),
    });
    expect(tb.fx.published(runId)).toEqual(['RUNNING', 'QUEUED']);
    // Shown in the history, but not counted: the server stopped, the receiver did not fail.
    expect(tb.fx.attempts(runId)).toMatchObject([{ attemptNumber: 1, errorClass: 'ABORTED' }]);

    // After a restart the same run goes out again with the same webhook-id.
    await tb.fx.engine({ workerId: 'restarted' }).drain();
    expect(tb.fx.run(runId)).toMatchObject({ status: 'SUCCEEDED', attemptCount: 1 });
    const webhookId = publicId('run', runId);
    expect(tb.receiver.requests.map((r) => r.headers['webhook-id'])).toEqual([
      webhookId,
      webhookId,
    ]);
  });

  it('puts a released retry back to RETRYING, keeping its attempt count', async () => {
    tb.receiver.enqueue({ status: 503 }, { hang: true });
    const runId = tb.fx.queueRun({ automationId: automation() });
    const engine = tb.fx.engine({ config: deliveryConfig({ timeoutMs: 30_000 }) });
    await engine.drain();
    tb.fx.clock.advance(500);
    const drained = engine.drain();
    await tb.receiver.waitForRequests(2);
    await engine.stop(0);
    await drained;
    expect(tb.fx.run(runId)).toMatchObject({
      status: 'RETRYING',
      attemptCount: 1,
      leaseOwner: null,
    });
    expect(tb.fx.published(runId)).toEqual(['RUNNING', 'RETRYING', 'RUNNING', 'RETRYING']);
  });

  it('lets in-flight attempts finish within the grace period and claims nothing new', async () => {
    const gate = deferred();
    tb.receiver.respond(() => gate.promise.then(() => ({ status: 200, body: 'late but fine' })));
    const automationId = automation();
    const first = tb.fx.queueRun({ automationId });
    const engine = tb.fx.engine();
    const drained = engine.drain();
    await tb.receiver.waitForRequests(1);
    const stopped = engine.stop(10_000);
    const second = tb.fx.queueRun({ automationId });
    gate.resolve();
    await stopped;
    await drained;
    expect(tb.fx.run(first)).toMatchObject({ status: 'SUCCEEDED' });
    expect(tb.fx.attempts(first)[0]?.responseBody).toBe('late but fine');
    await engine.drain();
    expect(tb.fx.run(second).status).toBe('QUEUED');
    expect(engine.stop(0)).toBe(stopped);
  });
});

describe('secrets', () => {
  it('opens each secret version once across deliveries, and a resealed secret anew', async () => {
    const opened: string[] = [];
    const box = tb.fx.secretBox;
    const decrypted = createDecryptedSecrets({
      seal: (value, id) => box.seal(value, id),
      open: (ciphertext, id) => {
        opened.push(id);
        return box.open(ciphertext, id);
      },
    });
    const actionId = tb.fx.addWebhookAction({
      url: `${tb.receiver.url}/hook`,
      accessToken: 'token-one',
      signingSecret: 'whsec_c2lnbmluZy1zZWNyZXQtb25lLWZvci10ZXN0cw==',
    });
    const automationId = tb.fx.addAutomation({ actionId });
    for (let i = 0; i < 5; i++) tb.fx.queueRun({ automationId });
    await tb.fx.engine({ decrypted }).drain();
    expect(tb.receiver.requests).toHaveLength(5);
    // Two secrets (access token and signing secret), each opened once for five deliveries.
    expect(opened).toHaveLength(2);
    expect(new Set(opened).size).toBe(2);

    // A rotation elsewhere (another process) writes a new envelope: the cache misses it.
    const [tokenId] = tb.fx.db
      .select({ id: secretsTable.id })
      .from(secretsTable)
      .where(eq(secretsTable.name, 'ACCESS_TOKEN_1'))
      .all()
      .map((row) => row.id);
    if (!tokenId) throw new Error('no access token secret');
    tb.fx.db
      .update(secretsTable)
      .set({ ciphertext: box.seal('token-two', tokenId) })
      .where(eq(secretsTable.id, tokenId))
      .run();
    tb.fx.queueRun({ automationId });
    await tb.fx.engine({ decrypted }).drain();
    expect(opened).toHaveLength(3);
    expect(tb.receiver.requests.at(-1)?.headers.authorization).toBe('Bearer token-two');
  });
});
