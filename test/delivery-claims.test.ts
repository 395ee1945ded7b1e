// biome-ignore-all lint/suspicious/noTemplateCurlyInString: templates hold literal ${…} variables.
import { eq } from 'drizzle-orm';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { type ClaimRequest, PASS_OVER_HEAD } from '../src/storage/delivery.js';
import { deliveryAttempts, triggeredRuns } from '../src/storage/sqlite/schema.js';
import { openSqliteStorage } from '../src/storage/sqlite/storage.js';
import { useDeliveryTestbed } from './support/delivery-fixtures.js';

const tb = useDeliveryTestbed();

function claim(overrides: Partial<ClaimRequest> = {}) {
  const now = tb.fx.clock.now();
  return tb.fx.storage.delivery.claimDue({
    owner: 'w1',
    now,
    leaseExpiresAt: new Date(now.getTime() + 60_000),
    limit: 10,
    passOver: [],
    ...overrides,
  });
}

function automation(): { actionId: string; automationId: string } {
  const actionId = tb.fx.addWebhookAction({ url: `${tb.receiver.url}/hook` });
  return { actionId, automationId: tb.fx.addAutomation({ actionId }) };
}

const at = (offsetMs: number) => new Date(tb.fx.clock.now().getTime() + offsetMs);

describe('claimDue', () => {
  it('takes due runs oldest first, up to the limit, and leases them', async () => {
    const { automationId } = automation();
    const second = tb.fx.queueRun({ automationId, nextAttemptAt: at(-10) });
    const first = tb.fx.queueRun({ automationId, nextAttemptAt: at(-20) });
    const third = tb.fx.queueRun({ automationId, status: 'RETRYING', nextAttemptAt: at(0) });
    tb.fx.queueRun({ automationId, nextAttemptAt: at(1) });
    const claimed = await claim({ limit: 2 });
    expect(claimed.map((run) => run.id)).toEqual([first, second]);
    expect(tb.fx.run(first)).toMatchObject({
      status: 'RUNNING',
      leaseOwner: 'w1',
      leaseExpiresAt: at(60_000),
    });
    expect((await claim()).map((run) => run.id)).toEqual([third]);
    expect(await claim()).toEqual([]);
  });

  it('takes a RUNNING run again once its lease expired, and never a finished one', async () => {
    const { automationId } = automation();
    const expired = tb.fx.queueRun({
      automationId,
      status: 'RUNNING',
      leaseOwner: 'gone',
      leaseExpiresAt: at(-1),
    });
    tb.fx.queueRun({ automationId, status: 'RUNNING', leaseOwner: 'alive', leaseExpiresAt: at(1) });
    for (const status of ['SUCCEEDED', 'FAILED', 'SKIPPED'] as const) {
      tb.fx.queueRun({ automationId, status, nextAttemptAt: at(-100) });
    }
    const claimed = await claim();
    expect(claimed.map((run) => run.id)).toEqual([expired]);
    expect(tb.fx.run(expired).leaseOwner).toBe('w1');
  });

  it('passes over the runs of the given actions and takes those behind them', async () => {
    const busy = automation();
    const other = automation();
    tb.fx.queueRun({ automationId: busy.automationId, nextAttemptAt: at(-30) });
    tb.fx.queueRun({ automationId: busy.automationId, nextAttemptAt: at(-20) });
    const behind = tb.fx.queueRun({ automationId: other.automationId, nextAttemptAt: at(-10) });
    const claimed = await claim({ limit: 1, passOver: [busy.actionId] });
    expect(claimed.map((run) => run.id)).toEqual([behind]);
  });

  it('reads the due runs from their index, never sorting the backlog', async () => {
    const prepare = vi.spyOn(tb.fx.storage.sqlite, 'prepare');
    const busy = automation();
    const other = automation();
    // A full destination's backlog, longer than the head of the line a passing-over claim reads
    // in line, so that the claim reads by action.
    for (let i = 0; i <= PASS_OVER_HEAD; i++) {
      tb.fx.queueRun({ automationId: busy.automationId, nextAttemptAt: at(-1_000) });
    }
    const behind = tb.fx.queueRun({ automationId: other.automationId });
    const deleted = tb.fx.queueRun({ automationId: null, actionId: null });
    tb.fx.queueRun({ automationId: other.automationId, nextAttemptAt: at(1) });
    const passing = await claim({ passOver: [busy.actionId] });
    expect(passing.map((run) => run.id)).toEqual([behind, deleted]);
    expect(await claim({ limit: 1 })).toHaveLength(1);
    const reads = prepare.mock.calls
      .map(([text]) => text)
      .filter((text) => /FROM triggered_runs\s+WHERE due_at <= @now|WITH RECURSIVE/.test(text));
    prepare.mockRestore();
    const plans = reads.map((text) =>
      (
        tb.fx.storage.sqlite
          .prepare(`EXPLAIN QUERY PLAN ${text}`)
          .all({ owner: 'w', leaseExpiresAt: 0, now: 0, limit: 1, head: 1, passOver: '[]' }) as {
          detail: string;
        }[]
      )
        .map((step) => step.detail)
        .join('\n'),
    );
    // The plain claim, the head of the line and its count, and the lines by action.
    expect(plans).toHaveLength(4);
    const inLine = plans.filter((plan) => !plan.includes('RECURSIVE'));
    const [byAction] = plans.filter((plan) => plan.includes('RECURSIVE'));
    expect(inLine).toHaveLength(3);
    for (const plan of inLine) {
      expect(plan).toMatch(
        /SEARCH triggered_runs USING INDEX triggered_runs_due_idx \(due_at<\?\)/,
      );
      expect(plan).not.toMatch(/TEMP B-TREE/);
    }
    // Each action's line is read from its head; the due index, where a passed-over backlog
    // would be read in full, is not read at all. Only the heads picked are sorted.
    expect(byAction).toMatch(
      /SEARCH \w+ USING INDEX triggered_runs_action_due_idx \(action_id=\? AND due_at<\?\)/,
    );
    expect(byAction).not.toMatch(/triggered_runs_due_idx|SCAN triggered_runs/);
  });

  it('loads everything an attempt needs with the run', async () => {
    tb.fx.addSecret('API_KEY', 'k-1');
    tb.fx.addSecret('UNUSED', 'u-1');
    const actionId = tb.fx.addWebhookAction({
      url: `${tb.receiver.url}/hook`,
      accessToken: 'token-1',
      headers: { 'X-Team': 'ml' },
    });
    const automationId = tb.fx.addAutomation({
      actionId,
      name: 'promote',
      payloadTemplate: '{"key":"${API_KEY}"}',
    });
    const runId = tb.fx.queueRun({
      automationId,
      event: { inRegistry: true, alias: 'prod', versionIndex: 7, metadata: { a: 1 } },
    });
    tb.fx.db
      .insert(deliveryAttempts)
      .values({ id: 'open-1', runId, attemptNumber: 1, startedAt: tb.fx.clock.now() })
      .run();
    tb.fx.db
      .update(triggeredRuns)
      .set({ attemptCount: 1 })
      .where(eq(triggeredRuns.id, runId))
      .run();
    const [run] = await claim();
    expect(run).toMatchObject({
      id: runId,
      run: { attemptCount: 1, actionId },
      openAttempts: 1,
      event: {
        eventType: 'ADD_ARTIFACT_ALIAS',
        alias: 'prod',
        versionIndex: 7,
        metadata: { a: 1 },
        entityName: tb.fx.entityName,
        projectName: null,
        registryName: tb.fx.registryName,
      },
      automation: { id: automationId, name: 'promote', enabled: true },
      action: { id: actionId, kind: 'WEBHOOK', enabled: true, headers: { 'X-Team': 'ml' } },
    });
    // The action's token and the secret its template names; not the entity's other secrets.
    expect(run?.secrets.map((secret) => secret.name).sort()).toEqual(['ACCESS_TOKEN_1', 'API_KEY']);
  });
});

describe('unclaim', () => {
  it('puts runs back as they were, in their place in line, unless another owner holds them', async () => {
    const { automationId } = automation();
    const queued = tb.fx.queueRun({ automationId, nextAttemptAt: at(-20) });
    const retrying = tb.fx.queueRun({
      automationId,
      status: 'RETRYING',
      attemptCount: 2,
      nextAttemptAt: at(-10),
    });
    await claim();
    await tb.fx.storage.delivery.unclaim('someone-else', [queued], tb.fx.clock.now());
    expect(tb.fx.run(queued).status).toBe('RUNNING');
    await tb.fx.storage.delivery.unclaim('w1', [queued, retrying], tb.fx.clock.now());
    expect(tb.fx.run(queued)).toMatchObject({ status: 'QUEUED', leaseOwner: null });
    expect(tb.fx.run(retrying)).toMatchObject({ status: 'RETRYING', attemptCount: 2 });
    expect((await claim()).map((run) => run.id)).toEqual([queued, retrying]);
  });
});

describe('attempt writes', () => {
  const ok = { durationMs: 5, statusCode: 200, errorClass: null, errorMessage: null } as const;
  const succeeded = { status: 'SUCCEEDED', result: 'Delivered', nextAttemptAt: null } as const;

  it('are committed when they resolve, and one that fails in a batch fails alone', async () => {
    const { automationId } = automation();
    const runs = [tb.fx.queueRun({ automationId }), tb.fx.queueRun({ automationId })];
    await claim();
    const store = tb.fx.storage.delivery;
    const [first, second] = await Promise.all(
      runs.map((runId) => store.startAttempt({ runId, owner: 'w1' }, tb.fx.clock.now())),
    );
    tb.fx.storage.sqlite.exec(`CREATE TRIGGER refuse BEFORE UPDATE ON delivery_attempts
      WHEN NEW.id = '${second!.id}' BEGIN SELECT RAISE(ABORT, 'refused'); END`);
    const other = openSqliteStorage(tb.fx.file);
    onTestFinished(() => other.close());
    const results = await Promise.allSettled(
      [first!, second!].map((attempt, index) =>
        store.finishAttempt(
          { runId: runs[index]!, owner: 'w1' },
          attempt.id,
          { ...ok, responseBody: `body ${index}` },
          succeeded,
          tb.fx.clock.now(),
        ),
      ),
    );
    expect(results.map((result) => result.status)).toEqual(['fulfilled', 'rejected']);
    // Another connection sees the first write at once, and nothing of the second.
    const statuses = other.sqlite
      .prepare('SELECT status FROM triggered_runs WHERE id IN (?, ?) ORDER BY id = ?')
      .pluck()
      .all(runs[0], runs[1], runs[1]);
    expect(statuses).toEqual(['SUCCEEDED', 'RUNNING']);
  });

  it('drop the result of an attempt whose lease another owner took', async () => {
    const { automationId } = automation();
    const runId = tb.fx.queueRun({ automationId });
    await claim();
    const store = tb.fx.storage.delivery;
    const attempt = await store.startAttempt({ runId, owner: 'w1' }, tb.fx.clock.now());
    tb.fx.clock.advance(60_000);
    await claim({ owner: 'w2' });
    const late = await store.finishAttempt(
      { runId, owner: 'w1' },
      attempt!.id,
      { ...ok, responseBody: 'late' },
      succeeded,
      tb.fx.clock.now(),
    );
    expect(late).toBeNull();
    expect(tb.fx.run(runId)).toMatchObject({ status: 'RUNNING', leaseOwner: 'w2' });
    expect(await store.startAttempt({ runId, owner: 'w1' }, tb.fx.clock.now())).toBeNull();
    const next = await store.startAttempt({ runId, owner: 'w2' }, tb.fx.clock.now());
    expect(next).toMatchObject({ attemptNumber: 2, run: { attemptCount: 2 } });
    expect(tb.fx.attempts(runId)).toMatchObject([
      { attemptNumber: 1, errorClass: 'INTERRUPTED', durationMs: null, responseBody: null },
      { attemptNumber: 2, errorClass: null, durationMs: null },
    ]);
  });
});

describe('queueDepth', () => {
  it('counts the live runs by status, what is due, and expired leases', async () => {
    const { automationId } = automation();
    tb.fx.queueRun({ automationId, nextAttemptAt: at(-5_000) });
    tb.fx.queueRun({
      automationId,
      status: 'RETRYING',
      attemptCount: 1,
      nextAttemptAt: at(-1_000),
    });
    tb.fx.queueRun({ automationId, status: 'RETRYING', attemptCount: 1, nextAttemptAt: at(9_000) });
    tb.fx.queueRun({ automationId, status: 'RUNNING', leaseOwner: 'a', leaseExpiresAt: at(-1) });
    tb.fx.queueRun({ automationId, status: 'RUNNING', leaseOwner: 'b', leaseExpiresAt: at(1) });
    tb.fx.queueRun({ automationId, status: 'SUCCEEDED', nextAttemptAt: null });
    expect(await tb.fx.storage.delivery.queueDepth(tb.fx.clock.now())).toEqual({
      byStatus: { QUEUED: 1, RUNNING: 2, RETRYING: 2 },
      dueNow: 2,
      scheduled: 1,
      oldestDueAgeSeconds: 5,
      leaseExpired: 1,
    });
  });
});
