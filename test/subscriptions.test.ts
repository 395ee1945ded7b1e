import { type Client, createClient } from 'graphql-ws';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { createTestApp, fakeClock, type TestApp } from './support/app.js';
import { createAutomation, createProject, createWebhookAction, emit } from './support/fixtures.js';
import { type Receiver, startReceiver } from './support/receiver.js';

let t: TestApp;
let url: string;
let receiver: Receiver;
const clock = fakeClock();
const clients: Client[] = [];

beforeEach(async () => {
  t = await createTestApp({
    clock,
    env: { TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1', TRIPLINE_RETRY_BASE_DELAY_MS: '1000' },
    app: { delivery: { random: () => 1 } },
  });
  url = await t.listen();
  receiver = await startReceiver();
  await createProject(t, 'p');
  const action = await createWebhookAction(t, { name: 'hook', url: `${receiver.url}/hook` });
  await createAutomation(t, {
    name: 'notify',
    eventType: 'CREATE_ARTIFACT',
    scope: { type: 'PROJECT', project: 'p' },
    actionId: action.id,
  });
});

afterEach(async () => {
  for (const client of clients.splice(0)) await client.dispose();
  await receiver.close();
  await t.close();
});

function wsClient(key: string | null): Client {
  const client = createClient({
    url: url.replace('http', 'ws'),
    webSocketImpl: WebSocket,
    connectionParams: key ? { authorization: `Bearer ${key}` } : {},
    retryAttempts: 0,
    lazy: false,
    // Failures surface through the `closed` event and the sinks; keep test output quiet.
    onNonLazyError: () => {},
  });
  clients.push(client);
  return client;
}

interface Update {
  id: string;
  status: string;
  automationName: string;
}

/** Subscribes and collects updates; `until` resolves when `done` first holds. */
function collect(client: Client, query: string, done: (updates: Update[]) => boolean) {
  const updates: Update[] = [];
  let resolve: () => void = () => {};
  let reject: (e: unknown) => void = () => {};
  const until = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  client.subscribe<{ triggeredRunUpdated: Update }>(
    { query },
    {
      next: (message) => {
        if (message.errors) reject(new Error(JSON.stringify(message.errors)));
        const update = message.data?.triggeredRunUpdated;
        if (update) updates.push(update);
        if (done(updates)) resolve();
      },
      error: reject,
      complete: () => {},
    },
  );
  return { updates, until };
}

const SUBSCRIPTION = 'subscription { triggeredRunUpdated { id status automationName } }';
const finished = (updates: Update[]) =>
  updates.some((u) => ['SUCCEEDED', 'FAILED'].includes(u.status));

describe('triggeredRunUpdated over graphql-ws', () => {
  it('streams every state of a run, in order, and nothing to another entity', async () => {
    receiver.enqueue({ status: 503 });
    const admin = collect(wsClient(t.adminKey), SUBSCRIPTION, finished);
    const strangerKey = await t.stranger();
    const stranger = collect(wsClient(strangerKey), SUBSCRIPTION, (u) => u.length > 0);
    await t.subscribers(2);

    const emitted = await emit(t);
    const runId = emitted.triggeredRuns[0].id;
    await t.app.engine.drain();
    clock.advance(1_000);
    await t.app.engine.drain();
    await admin.until;

    expect(admin.updates.map((u) => u.status)).toEqual([
      'QUEUED',
      'RUNNING',
      'RETRYING',
      'RUNNING',
      'SUCCEEDED',
    ]);
    expect(new Set(admin.updates.map((u) => u.id))).toEqual(new Set([runId]));
    expect(receiver.requests).toHaveLength(2);
    expect(stranger.updates).toEqual([]);
  });

  it('streams each state as the delivery wrote it, without reading the run again', async () => {
    receiver.enqueue({ status: 503 });
    const client = wsClient(t.adminKey);
    const updates: { status: string; attemptCount: number; result: string | null }[] = [];
    let done: () => void = () => {};
    const until = new Promise<void>((resolve) => {
      done = resolve;
    });
    client.subscribe<{
      triggeredRunUpdated: { status: string; attemptCount: number; result: string | null };
    }>(
      { query: 'subscription { triggeredRunUpdated { status attemptCount result } }' },
      {
        next: (message) => {
          const update = message.data?.triggeredRunUpdated;
          if (update) updates.push(update);
          if (update?.status === 'SUCCEEDED') done();
        },
        error: () => {},
        complete: () => {},
      },
    );
    await t.subscribers(1);
    const reads = vi.spyOn(t.storage.runs, 'getRun');
    await emit(t);
    await t.app.engine.drain();
    clock.advance(1_000);
    await t.app.engine.drain();
    await until;
    expect(updates).toEqual([
      { status: 'QUEUED', attemptCount: 0, result: null },
      { status: 'RUNNING', attemptCount: 0, result: null },
      { status: 'RETRYING', attemptCount: 1, result: 'HTTP 503 from receiver; retrying in 1.0s' },
      {
        status: 'RUNNING',
        attemptCount: 1,
        result: 'HTTP 503 from receiver; retrying in 1.0s',
      },
      { status: 'SUCCEEDED', attemptCount: 2, result: 'Delivered: HTTP 200 from receiver' },
    ]);
    expect(reads).not.toHaveBeenCalled();
  });

  it('filters by run, automation and event', async () => {
    const first = await emit(t, { versionIndex: 1 });
    const firstRun = first.triggeredRuns[0].id;
    const byRun = collect(
      wsClient(t.adminKey),
      `subscription { triggeredRunUpdated(runId: "${firstRun}") { id status automationName } }`,
      finished,
    );
    await t.subscribers(1);
    await emit(t, { versionIndex: 2 });
    await t.app.engine.drain();
    await byRun.until;
    expect(byRun.updates.every((u) => u.id === firstRun)).toBe(true);
    expect(byRun.updates.map((u) => u.status)).toEqual(['RUNNING', 'SUCCEEDED']);
  });

  it('refuses a connection without a valid key', async () => {
    const client = wsClient('tl_not-a-key');
    const closed = new Promise<number>((resolve) =>
      client.on('closed', (event) => resolve((event as { code: number }).code)),
    );
    expect(await closed).toBe(4403);
  });
});

describe('triggeredRunUpdated over server-sent events', () => {
  it('streams updates to an SSE client with the same authentication', async () => {
    const controller = new AbortController();
    const response = await fetch(`${url}?query=${encodeURIComponent(SUBSCRIPTION)}`, {
      headers: { accept: 'text/event-stream', authorization: `Bearer ${t.adminKey}` },
      signal: controller.signal,
    });
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    let text = '';
    const read = (async () => {
      while (!text.includes('SUCCEEDED')) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
    })();
    // The subscription is live once the server has sent its first bytes (a keep-alive ping).
    await emit(t);
    await t.app.engine.drain();
    await read;
    controller.abort();
    expect(text).toContain('"status":"QUEUED"');
    expect(text.indexOf('RUNNING')).toBeLessThan(text.indexOf('SUCCEEDED'));

    const refused = await fetch(`${url}?query=${encodeURIComponent(SUBSCRIPTION)}`, {
      headers: { accept: 'text/event-stream' },
    });
    expect(refused.status).toBe(401);
  });
});
