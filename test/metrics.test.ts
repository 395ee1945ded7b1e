import { createClient } from 'graphql-ws';
import { afterEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { createMetrics, MAX_OPERATION_NAMES } from '../src/observability/metrics.js';
import { createTelemetry } from '../src/observability/telemetry.js';
import { createTestApp, type TestApp } from './support/app.js';
import { useDeliveryTestbed } from './support/delivery-fixtures.js';
import {
  createAutomation,
  createProject,
  createSecret,
  createWebhookAction,
  emit,
} from './support/fixtures.js';
import { type Receiver, startReceiver } from './support/receiver.js';

/** One sample of the Prometheus text format. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match?.[1] || match[3] === undefined) continue;
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1] as string] = pair[2] as string;
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

/** The value of the sample named `name` whose labels include `labels`; undefined when none. */
function value(
  samples: Sample[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  return samples.find(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  )?.value;
}

async function scrape(t: TestApp, token?: string): Promise<{ status: number; text: string }> {
  const response = await t.app.yoga.fetch('http://localhost/metrics', {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  return { status: response.status, text: await response.text() };
}

const samplesOf = async (t: TestApp) => parse((await scrape(t)).text);

let t: TestApp | undefined;
let receiver: Receiver | undefined;

afterEach(async () => {
  await receiver?.close();
  receiver = undefined;
  await t?.close();
  t = undefined;
});

describe('GET /metrics', () => {
  it('times GraphQL requests by operation name, type and outcome', async () => {
    t = await createTestApp();
    await t.gql('query Hello { __typename }');
    await t.gql('query Hello { __typename }');
    await t.gql('query Hello { __typename }', {}, null);
    await t.gql('query Paged { entity(name: "default") { projects(first: -1) { totalCount } } }');
    await t.gql(
      'mutation Make { createProject(input: { entity: "default", name: "x" }) { __typename } }',
    );
    await t.gql('{ nope }');
    await t.app.yoga.fetch('http://localhost/graphql', {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/graphql-response+json',
        authorization: `Bearer ${t.adminKey}`,
      },
      body: JSON.stringify({ query: 'query Broken {', operationName: 'Broken' }),
    });
    const samples = await samplesOf(t);
    const count = (labels: Record<string, string>) =>
      value(samples, 'tripline_graphql_request_duration_seconds_count', labels);
    expect(count({ operation_name: 'Hello', operation_type: 'query', outcome: 'success' })).toBe(2);
    // Refused at authentication, which comes after parsing: its operation is known.
    expect(count({ operation_name: 'Hello', operation_type: 'query', outcome: 'rejected' })).toBe(
      1,
    );
    // A document that does not parse has only the name sent beside it.
    expect(
      count({ operation_name: 'Broken', operation_type: 'unknown', outcome: 'rejected' }),
    ).toBe(1);
    expect(count({ operation_name: 'Paged', operation_type: 'query', outcome: 'error' })).toBe(1);
    expect(count({ operation_name: 'Make', operation_type: 'mutation', outcome: 'success' })).toBe(
      1,
    );
    expect(count({ operation_name: 'anonymous', outcome: 'rejected' })).toBe(1);
    expect(
      value(samples, 'tripline_graphql_request_duration_seconds_bucket', {
        operation_name: 'Hello',
        outcome: 'success',
        le: '+Inf',
      }),
    ).toBe(2);
  });

  it(`keeps at most ${MAX_OPERATION_NAMES} operation names and counts the rest as "other"`, async () => {
    t = await createTestApp();
    for (let i = 0; i <= MAX_OPERATION_NAMES; i++) await t.gql(`query Op${i} { __typename }`);
    const samples = await samplesOf(t);
    const names = new Set(
      samples
        .filter((s) => s.name === 'tripline_graphql_request_duration_seconds_count')
        .map((s) => s.labels.operation_name),
    );
    expect(names.size).toBe(MAX_OPERATION_NAMES + 1);
    expect(names.has(`Op${MAX_OPERATION_NAMES}`)).toBe(false);
    expect(
      value(samples, 'tripline_graphql_request_duration_seconds_count', {
        operation_name: 'other',
      }),
    ).toBe(1);
  });

  it('counts events ingested, run status changes and delivery attempts by outcome and error class', async () => {
    t = await createTestApp({
      env: {
        TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1',
        TRIPLINE_RETRY_BASE_DELAY_MS: '0',
        TRIPLINE_RETRY_MAX_ATTEMPTS: '2',
      },
    });
    receiver = await startReceiver();
    receiver.enqueue({ status: 503 });
    await createProject(t, 'p');
    const hook = await createWebhookAction(t, { name: 'hook', url: `${receiver.url}/hook` });
    await createAutomation(t, {
      name: 'a',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId: hook.id,
    });
    t.app.start();
    await emit(t, { idempotencyKey: 'once' });
    await emit(t, { idempotencyKey: 'once' });
    await t.app.engine.drain();
    expect(receiver.requests).toHaveLength(2);

    await vi.waitFor(async () => {
      const samples = await samplesOf(t as TestApp);
      expect(value(samples, 'tripline_run_status_changes_total', { status: 'SUCCEEDED' })).toBe(1);
    });
    const samples = await samplesOf(t);
    expect(
      value(samples, 'tripline_events_ingested_total', { event_type: 'CREATE_ARTIFACT' }),
    ).toBe(1);
    for (const [status, times] of [
      ['QUEUED', 1],
      ['RUNNING', 2],
      ['RETRYING', 1],
      ['SUCCEEDED', 1],
    ] as const) {
      expect(value(samples, 'tripline_run_status_changes_total', { status }), status).toBe(times);
    }
    expect(
      value(samples, 'tripline_delivery_attempts_total', {
        outcome: 'http_error',
        error_class: 'HTTP_5XX',
      }),
    ).toBe(1);
    expect(
      value(samples, 'tripline_delivery_attempts_total', {
        outcome: 'success',
        error_class: 'none',
      }),
    ).toBe(1);
    expect(
      value(samples, 'tripline_delivery_attempt_duration_seconds_count', { outcome: 'success' }),
    ).toBe(1);
    expect(value(samples, 'tripline_runs', { status: 'QUEUED' })).toBe(0);
  });

  it('counts rate-limit refusals by limit and subscribers by transport', async () => {
    t = await createTestApp({ env: { TRIPLINE_RATE_LIMIT_MUTATIONS_PER_MINUTE: '1' } });
    await createProject(t, 'p');
    expect(
      (
        await t.gql(
          'mutation { createProject(input: { entity: "default", name: "q" }) { __typename } }',
        )
      ).status,
    ).toBe(429);
    let samples = await samplesOf(t);
    expect(value(samples, 'tripline_rate_limited_total', { limit: 'mutations' })).toBe(1);
    expect(value(samples, 'tripline_subscribers', { transport: 'http' })).toBe(0);

    const url = await t.listen();
    const abort = new AbortController();
    const response = await fetch(
      `${url}?query=${encodeURIComponent('subscription { triggeredRunUpdated { id } }')}`,
      {
        headers: { accept: 'text/event-stream', authorization: `Bearer ${t.adminKey}` },
        signal: abort.signal,
      },
    );
    expect(response.status).toBe(200);
    const reading = response.body?.pipeTo(new WritableStream()).catch(() => {});
    const ws = createClient({
      url: url.replace('http', 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${t.adminKey}` },
      retryAttempts: 0,
    });
    const stop = ws.subscribe(
      { query: 'subscription { triggeredRunUpdated { id } }' },
      { next: () => {}, error: () => {}, complete: () => {} },
    );
    await t.subscribers(2);
    samples = await samplesOf(t);
    expect(value(samples, 'tripline_subscribers', { transport: 'http' })).toBe(1);
    expect(value(samples, 'tripline_subscribers', { transport: 'websocket' })).toBe(1);
    abort.abort();
    await reading;
    stop();
    await ws.dispose();
    await vi.waitFor(async () => {
      const now = await samplesOf(t as TestApp);
      expect(value(now, 'tripline_subscribers', { transport: 'http' })).toBe(0);
      expect(value(now, 'tripline_subscribers', { transport: 'websocket' })).toBe(0);
    });
  });

  it('shows process figures and never a secret, a key or an entity’s names', async () => {
    t = await createTestApp();
    await createProject(t, 'secret-project-name');
    await createSecret(t, 'VERY_SECRET', 'hunter2-value-that-must-not-leak');
    await t.gql('query Hello { entity(name: "default") { name } }');
    const { status, text } = await scrape(t);
    expect(status).toBe(200);
    const names = new Set(parse(text).map((s) => s.name));
    for (const name of [
      'process_cpu_user_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_heap_size_used_bytes',
      'nodejs_eventloop_lag_seconds',
    ]) {
      expect(names.has(name), name).toBe(true);
    }
    for (const text_ of ['secret-project-name', 'hunter2', 'VERY_SECRET', t.adminKey, 'default']) {
      expect(text).not.toContain(text_);
    }
  });

  it('takes the bearer token of TRIPLINE_METRICS_TOKEN when set, and is off with TRIPLINE_METRICS=false', async () => {
    const token = 'metrics-token-0123456789abcdef';
    t = await createTestApp({ env: { TRIPLINE_METRICS_TOKEN: token } });
    expect((await scrape(t)).status).toBe(401);
    expect((await scrape(t, 'wrong-token-0123456789abcdef')).status).toBe(401);
    // An API key is no metrics token.
    expect((await scrape(t, t.adminKey)).status).toBe(401);
    const allowed = await scrape(t, token);
    expect(allowed.status).toBe(200);
    expect(allowed.text).toContain('tripline_delivery_queue_runs');
    await t.close();

    t = await createTestApp({ env: { TRIPLINE_METRICS: 'false' } });
    expect((await scrape(t)).status).toBe(404);
    expect(t.app.telemetry.metrics).toBeUndefined();
  });
});

describe('delivery queue figures', () => {
  const tb = useDeliveryTestbed();

  it('shows runs due now, scheduled later, the age of the oldest due run, and expired leases', async () => {
    const { fx } = tb;
    const metrics = createMetrics(() => fx.storage.delivery.queueDepth(fx.clock.now()));
    const automationId = fx.addAutomation({
      actionId: fx.addWebhookAction({ url: `${tb.receiver.url}/hook` }),
    });
    const start = fx.clock.now().getTime();
    fx.queueRun({ automationId });
    fx.clock.advance(30_000);
    fx.queueRun({ automationId });
    fx.queueRun({ automationId, status: 'RETRYING', nextAttemptAt: new Date(start + 600_000) });
    fx.queueRun({
      automationId,
      status: 'RUNNING',
      leaseOwner: 'gone',
      leaseExpiresAt: new Date(start + 10_000),
    });
    fx.queueRun({
      automationId,
      status: 'RUNNING',
      leaseOwner: 'alive',
      leaseExpiresAt: new Date(start + 600_000),
    });
    fx.queueRun({ automationId, status: 'SUCCEEDED', nextAttemptAt: null });
    fx.clock.advance(60_000);

    const samples = parse(await metrics.render());
    expect(value(samples, 'tripline_delivery_queue_runs', { state: 'due' })).toBe(2);
    expect(value(samples, 'tripline_delivery_queue_runs', { state: 'scheduled' })).toBe(1);
    expect(value(samples, 'tripline_delivery_queue_oldest_due_age_seconds')).toBe(90);
    expect(value(samples, 'tripline_delivery_leases_expired')).toBe(1);
    expect(value(samples, 'tripline_runs', { status: 'QUEUED' })).toBe(2);
    expect(value(samples, 'tripline_runs', { status: 'RETRYING' })).toBe(1);
    expect(value(samples, 'tripline_runs', { status: 'RUNNING' })).toBe(2);
    expect(value(samples, 'tripline_runs', { status: 'SUCCEEDED' })).toBeUndefined();

    fx.clock.advance(600_000);
    await fx.engine().drain();
    const after = parse(await metrics.render());
    expect(value(after, 'tripline_delivery_queue_runs', { state: 'due' })).toBe(0);
    expect(value(after, 'tripline_delivery_queue_oldest_due_age_seconds')).toBe(0);
    expect(value(after, 'tripline_delivery_leases_expired')).toBe(0);
  });

  it('counts a run taken over after its lease expired mid-attempt', async () => {
    const { fx, receiver } = tb;
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    receiver.respond((_, index) => (index === 0 ? held.then(() => ({ status: 500 })) : {}));
    fx.queueRun({
      automationId: fx.addAutomation({
        actionId: fx.addWebhookAction({ url: `${receiver.url}/hook` }),
      }),
    });
    const metrics = createMetrics(() => fx.storage.delivery.queueDepth(fx.clock.now()));
    const telemetry = createTelemetry({ metrics });
    const stalled = fx.engine({ workerId: 'stalled' }).drain();
    await receiver.waitForRequests(1);
    fx.clock.advance(60_001);
    expect(value(parse(await metrics.render()), 'tripline_delivery_leases_expired')).toBe(1);
    await fx.engine({ workerId: 'rescuer', telemetry }).drain();
    release();
    await stalled;
    const samples = parse(await metrics.render());
    expect(value(samples, 'tripline_delivery_leases_expired_total')).toBe(1);
    expect(value(samples, 'tripline_delivery_leases_expired')).toBe(0);
    expect(
      value(samples, 'tripline_delivery_attempts_total', {
        outcome: 'success',
        error_class: 'none',
      }),
    ).toBe(1);
  });
});
