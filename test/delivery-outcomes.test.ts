// biome-ignore-all lint/suspicious/noTemplateCurlyInString: templates hold literal ${…} variables.
import { eq } from 'drizzle-orm';
import { describe, expect, it, onTestFinished } from 'vitest';
import { generateSigningSecret, verifySignature } from '../src/delivery/signing.js';
import type { SlackMessage } from '../src/delivery/slack.js';
import { publicId } from '../src/ids.js';
import { actions, automations, triggeredRuns } from '../src/storage/sqlite/schema.js';
import {
  deliveryConfig,
  useDeliveryTestbed,
  type WebhookActionInput,
} from './support/delivery-fixtures.js';
import { RECEIVER_CA, startReceiver } from './support/receiver.js';

const tb = useDeliveryTestbed();

/** A webhook action and automation pointing at the receiver; returns a function queuing runs. */
function webhookSetup(options: Partial<WebhookActionInput> & { payloadTemplate?: string } = {}) {
  const { payloadTemplate, ...action } = options;
  const actionId = tb.fx.addWebhookAction({ url: `${tb.receiver.url}/hook`, ...action });
  const automationId = tb.fx.addAutomation({ actionId, payloadTemplate: payloadTemplate ?? null });
  return { actionId, automationId, queue: () => tb.fx.queueRun({ automationId }) };
}

describe('delivery outcomes', () => {
  it('delivers a signed request a de-duplicating receiver accepts once, also on re-delivery', async () => {
    const signingSecret = generateSigningSecret();
    const seen = new Set<string>();
    tb.receiver.respond((request) => {
      if (
        !verifySignature({
          secret: signingSecret,
          headers: request.headers,
          body: request.body,
          now: tb.fx.clock.now(),
        })
      ) {
        return { status: 401, body: 'bad signature' };
      }
      const id = String(request.headers['webhook-id']);
      if (seen.has(id)) return { status: 200, body: 'duplicate' };
      seen.add(id);
      return { status: 202, body: 'accepted' };
    });
    const { queue } = webhookSetup({ signingSecret });
    const runId = queue();
    const engine = tb.fx.engine();
    await engine.drain();

    expect(tb.fx.run(runId)).toMatchObject({
      status: 'SUCCEEDED',
      attemptCount: 1,
      result: 'Delivered: HTTP 202 from receiver',
      leaseOwner: null,
    });
    expect(tb.fx.run(runId).finishedAt).toEqual(tb.fx.clock.now());
    expect(tb.fx.published(runId)).toEqual(['RUNNING', 'SUCCEEDED']);
    expect(tb.fx.attempts(runId)).toMatchObject([
      {
        attemptNumber: 1,
        statusCode: 202,
        errorClass: null,
        responseBody: 'accepted',
        startedAt: tb.fx.clock.now(),
      },
    ]);

    // A re-delivery puts the run back in the queue, as retryTriggeredRun does.
    tb.fx.db
      .update(triggeredRuns)
      .set({
        status: 'QUEUED',
        attemptCount: 0,
        nextAttemptAt: tb.fx.clock.now(),
        finishedAt: null,
      })
      .run();
    await engine.drain();
    const webhookId = publicId('run', runId);
    expect(tb.receiver.requests.map((r) => r.headers['webhook-id'])).toEqual([
      webhookId,
      webhookId,
    ]);
    expect(tb.fx.attempts(runId).map((a) => [a.attemptNumber, a.responseBody])).toEqual([
      [1, 'accepted'],
      [2, 'duplicate'],
    ]);
  });

  it('retries 5xx with the backoff schedule, then succeeds', async () => {
    tb.receiver.enqueue({ status: 503, body: 'busy' }, { status: 500 });
    const { queue } = webhookSetup();
    const runId = queue();
    const engine = tb.fx.engine({ random: () => 0.5 });
    const start = tb.fx.clock.now().getTime();

    await engine.drain();
    expect(tb.fx.run(runId)).toMatchObject({
      status: 'RETRYING',
      attemptCount: 1,
      result: 'HTTP 503 from receiver; retrying in 0.5s',
      finishedAt: null,
    });
    expect(tb.fx.run(runId).nextAttemptAt?.getTime()).toBe(start + 500);

    tb.fx.clock.advance(499);
    await engine.drain();
    expect(tb.receiver.requests).toHaveLength(1);

    tb.fx.clock.advance(1);
    await engine.drain();
    expect(tb.fx.run(runId)).toMatchObject({ status: 'RETRYING', attemptCount: 2 });
    expect(tb.fx.run(runId).nextAttemptAt?.getTime()).toBe(start + 500 + 1_000);

    tb.fx.clock.advance(1_000);
    await engine.drain();
    expect(tb.fx.run(runId)).toMatchObject({ status: 'SUCCEEDED', attemptCount: 3 });
    expect(tb.fx.published(runId)).toEqual([
      'RUNNING',
      'RETRYING',
      'RUNNING',
      'RETRYING',
      'RUNNING',
      'SUCCEEDED',
    ]);
    const attempts = tb.fx.attempts(runId);
    expect(attempts.map((a) => [a.attemptNumber, a.statusCode])).toEqual([
      [1, 503],
      [2, 500],
      [3, 200],
    ]);
    expect(attempts.map((a) => a.startedAt.getTime() - start)).toEqual([0, 500, 1_500]);
    expect(new Set(tb.receiver.requests.map((r) => r.headers['webhook-id']))).toEqual(
      new Set([publicId('run', runId)]),
    );
  });

  it('fails the run once attempts are exhausted', async () => {
    tb.receiver.respond(() => ({ status: 502 }));
    const { queue } = webhookSetup();
    const runId = queue();
    // A zero base delay makes every retry due at once, so one drain runs the whole schedule.
    await tb.fx
      .engine({ config: deliveryConfig({ retry: { maxAttempts: 3, baseDelayMs: 0 } }) })
      .drain();
    expect(tb.fx.run(runId)).toMatchObject({
      status: 'FAILED',
      attemptCount: 3,
      result: 'HTTP 502 from receiver; gave up after 3 attempts',
      nextAttemptAt: null,
    });
    expect(tb.fx.attempts(runId)).toHaveLength(3);
    expect(tb.fx.published(runId).at(-1)).toBe('FAILED');
  });

  it('honours Retry-After on 429, clamped to maxRetryAfterMs', async () => {
    tb.receiver.enqueue(
      { status: 429, headers: { 'retry-after': '120' } },
      { status: 429, headers: { 'retry-after': '86400' } },
    );
    const { queue } = webhookSetup();
    const runId = queue();
    const engine = tb.fx.engine({
      config: deliveryConfig({ retry: { maxRetryAfterMs: 300_000 } }),
    });
    const start = tb.fx.clock.now().getTime();
    await engine.drain();
    expect(tb.fx.run(runId).nextAttemptAt?.getTime()).toBe(start + 120_000);
    expect(tb.fx.run(runId).result).toBe('HTTP 429 from receiver; retrying in 120.0s');
    tb.fx.clock.advance(120_000);
    await engine.drain();
    expect(tb.fx.run(runId).nextAttemptAt?.getTime()).toBe(start + 120_000 + 300_000);
  });

  it('disables the action on 410 and fails the run; later runs for it are skipped', async () => {
    tb.receiver.enqueue({ status: 410, body: 'gone' });
    const { queue, actionId } = webhookSetup();
    const first = queue();
    const engine = tb.fx.engine();
    await engine.drain();
    expect(tb.fx.run(first)).toMatchObject({
      status: 'FAILED',
      result: 'Gone (410): action disabled',
    });
    expect(tb.fx.action(actionId)).toMatchObject({ enabled: false });
    expect(tb.fx.action(actionId).disabledReason).toMatch(/410 Gone/);

    const second = queue();
    await engine.drain();
    expect(tb.fx.run(second)).toMatchObject({ status: 'SKIPPED' });
    expect(tb.fx.run(second).result).toMatch(
      /^Skipped: the action is disabled \(The receiver answered 410/,
    );
    expect(tb.receiver.requests).toHaveLength(1);
  });

  it('does not follow a 301 and fails the run', async () => {
    tb.receiver.enqueue({ status: 301, headers: { location: `${tb.receiver.url}/moved` } });
    const { queue } = webhookSetup();
    const runId = queue();
    await tb.fx.engine().drain();
    expect(tb.fx.run(runId)).toMatchObject({
      status: 'FAILED',
      attemptCount: 1,
      result: 'HTTP 301 from receiver (redirects are not followed)',
    });
    expect(tb.receiver.requests.map((r) => r.path)).toEqual(['/hook']);
  });

  it('times out a receiver that hangs, and retries', async () => {
    tb.receiver.enqueue({ hang: true });
    const { queue } = webhookSetup();
    const runId = queue();
    const engine = tb.fx.engine({ config: deliveryConfig({ timeoutMs: 200 }) });
    await engine.drain();
    expect(tb.fx.run(runId)).toMatchObject({ status: 'RETRYING', attemptCount: 1 });
    expect(tb.fx.run(runId).result).toBe(
      'Timed out: No response within the 200ms deadline; retrying in 0.5s',
    );
    const [attempt] = tb.fx.attempts(runId);
    expect(attempt).toMatchObject({ errorClass: 'TIMEOUT', statusCode: null, responseBody: null });
    expect(attempt?.durationMs).toBeGreaterThanOrEqual(150);

    tb.fx.clock.advance(500);
    await engine.drain();
    expect(tb.fx.run(runId).status).toBe('SUCCEEDED');
  });

  it('retries after the receiver resets the connection', async () => {
    tb.receiver.enqueue({ destroy: true });
    const { queue } = webhookSetup();
    const runId = queue();
    const engine = tb.fx.engine();
    await engine.drain();
    expect(tb.fx.run(runId).status).toBe('RETRYING');
    expect(tb.fx.attempts(runId)[0]).toMatchObject({
      errorClass: 'NETWORK_ERROR',
      statusCode: null,
    });
    tb.fx.clock.advance(500);
    await engine.drain();
    expect(tb.fx.run(runId)).toMatchObject({ status: 'SUCCEEDED', attemptCount: 2 });
  });

  it('stores an echoing receiver body with secrets and auth headers redacted', async () => {
    tb.receiver.respond((request) => ({
      status: 200,
      body: JSON.stringify({ headers: request.headers, body: request.text }),
    }));
    tb.fx.addSecret('API_KEY', 'key-live-123456');
    const { queue } = webhookSetup({
      accessToken: 'bearer-token-987',
      signingSecret: generateSigningSecret(),
      payloadTemplate: '{"key":"${API_KEY}","version":"${artifact_version_string}"}',
    });
    const runId = queue();
    await tb.fx.engine().drain();
    expect(tb.receiver.requests[0]?.json()).toEqual({
      key: 'key-live-123456',
      version: 'acme/vision/resnet:production',
    });
    const stored = tb.fx.attempts(runId)[0]?.responseBody ?? '';
    expect(stored).toContain('resnet:production');
    expect(stored).not.toContain('key-live-123456');
    expect(stored).not.toContain('bearer-token-987');
    expect(stored).not.toContain(
      String(tb.receiver.requests[0]?.headers['webhook-signature']).slice(3),
    );
    expect(stored).toContain('"authorization":"[redacted]"');
  });

  it('fails without sending when the payload is too large', async () => {
    const { actionId } = webhookSetup();
    const automationId = tb.fx.addAutomation({ actionId });
    const runId = tb.fx.queueRun({
      automationId,
      event: { metadata: { blob: 'b'.repeat(4_000) } },
    });
    await tb.fx.engine({ config: deliveryConfig({ maxPayloadBytes: 1_024 }) }).drain();
    expect(tb.fx.run(runId)).toMatchObject({ status: 'FAILED', attemptCount: 1 });
    expect(tb.fx.run(runId).result).toMatch(/^Payload too large: /);
    expect(tb.fx.attempts(runId)[0]?.errorClass).toBe('PAYLOAD_TOO_LARGE');
    expect(tb.receiver.requests).toHaveLength(0);
  });

  it('refuses a private destination without retrying', async () => {
    const actionId = tb.fx.addWebhookAction({ url: 'http://10.20.30.40/hook' });
    const runId = tb.fx.queueRun({ automationId: tb.fx.addAutomation({ actionId }) });
    await tb.fx.engine({ config: deliveryConfig({ allowList: [] }) }).drain();
    expect(tb.fx.run(runId)).toMatchObject({ status: 'FAILED', attemptCount: 1 });
    expect(tb.fx.run(runId).result).toMatch(
      /^Destination refused: Refused to connect to 10\.20\.30\.40/,
    );
    expect(tb.fx.attempts(runId)[0]?.errorClass).toBe('SSRF_BLOCKED');
  });

  it('fails a webhook action that has no URL as not deliverable', async () => {
    const actionId = tb.fx.addWebhookAction({ url: '' });
    const runId = tb.fx.queueRun({ automationId: tb.fx.addAutomation({ actionId }) });
    await tb.fx.engine().drain();
    expect(tb.fx.run(runId)).toMatchObject({
      status: 'FAILED',
      result: 'Not deliverable: The webhook action has no URL',
    });
    expect(tb.fx.attempts(runId)[0]?.errorClass).toBe('CONFIGURATION_ERROR');
  });

  it('posts the Slack message an incoming webhook expects', async () => {
    const slack = await startReceiver(undefined, { tls: true });
    onTestFinished(() => slack.close());
    const actionId = tb.fx.addSlackAction({ url: `${slack.url}/services/T1/B2/abc` });
    tb.fx.addSecret('ONCALL', 'sam');
    const automationId = tb.fx.addAutomation({
      actionId,
      slackTitle: 'Linked ${artifact_version_string}',
      slackMessage: 'Ping ${ONCALL}: ${artifact_type} ${artifact_collection_name} was linked',
      slackSeverity: 'ERROR',
    });
    const runId = tb.fx.queueRun({
      automationId,
      event: { eventType: 'LINK_ARTIFACT', inRegistry: true, alias: null, versionIndex: 7 },
    });
    await tb.fx.engine({ ca: RECEIVER_CA }).drain();
    expect(tb.fx.run(runId).status).toBe('SUCCEEDED');
    const message = slack.requests[0]!.json<SlackMessage>();
    expect(message.text).toMatch(
      /^:rotating_light: \[Error\] Linked acme\/model-registry\/resnet:v7/,
    );
    expect(message.blocks.map((b) => b.type)).toEqual(['header', 'context', 'section', 'section']);
    expect(message.blocks[2]).toMatchObject({
      text: { text: 'Ping sam: model resnet was linked' },
    });
    expect(JSON.stringify(message.blocks[3])).toContain('*Registry*\\nmodel-registry');
    expect(JSON.stringify(message.blocks[3])).toContain('*Alias*\\n—');
  });
});

describe('rules shared with saving actions', () => {
  it('refuses a stored reserved header instead of silently dropping it', async () => {
    const { queue } = webhookSetup({ headers: { 'X-Team': 'ml', 'Transfer-Encoding': 'chunked' } });
    const runId = queue();
    await tb.fx.engine().drain();
    expect(tb.fx.run(runId).status).toBe('FAILED');
    expect(tb.fx.attempts(runId)).toMatchObject([
      {
        errorClass: 'CONFIGURATION_ERROR',
        errorMessage: expect.stringMatching(/Transfer-Encoding header cannot be sent.*framing/),
      },
    ]);
    expect(tb.receiver.requests).toHaveLength(0);
  });

  it('refuses a Slack URL that is not https, without sending it the token', async () => {
    const actionId = tb.fx.addSlackAction({ url: `${tb.receiver.url}/services/T1/B2/abc` });
    const runId = tb.fx.queueRun({ automationId: tb.fx.addAutomation({ actionId }) });
    await tb.fx.engine().drain();
    expect(tb.fx.run(runId).status).toBe('FAILED');
    const [attempt] = tb.fx.attempts(runId);
    expect(attempt).toMatchObject({ errorClass: 'CONFIGURATION_ERROR' });
    expect(attempt?.errorMessage).toMatch(/not an https URL/);
    expect(attempt?.errorMessage).not.toContain('abc');
    expect(tb.receiver.requests).toHaveLength(0);
  });
});

describe('skipped runs', () => {
  it.each([
    ['the automation is disabled', 'Skipped: the automation is disabled'],
    ['the automation was deleted', 'Skipped: the automation was deleted'],
    ['the action is disabled', 'Skipped: the action is disabled'],
    ['the action was deleted', 'Skipped: the action was deleted'],
  ])('skips when %s', async (situation, result) => {
    const { actionId, automationId } = webhookSetup();
    let runId: string;
    if (situation === 'the automation is disabled') {
      tb.fx.db
        .update(automations)
        .set({ enabled: false })
        .where(eq(automations.id, automationId))
        .run();
      runId = tb.fx.queueRun({ automationId });
    } else if (situation === 'the automation was deleted') {
      runId = tb.fx.queueRun({ automationId: null, actionId });
    } else if (situation === 'the action is disabled') {
      tb.fx.db.update(actions).set({ enabled: false }).where(eq(actions.id, actionId)).run();
      runId = tb.fx.queueRun({ automationId });
    } else {
      runId = tb.fx.queueRun({ automationId, actionId: null });
    }
    await tb.fx.engine().drain();
    expect(tb.fx.run(runId)).toMatchObject({ status: 'SKIPPED', result, attemptCount: 0 });
    expect(tb.fx.run(runId).finishedAt).not.toBeNull();
    expect(tb.fx.published(runId)).toEqual(['RUNNING', 'SKIPPED']);
    expect(tb.fx.attempts(runId)).toHaveLength(0);
    expect(tb.receiver.requests).toHaveLength(0);
  });
});
