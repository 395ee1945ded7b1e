import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Client } from 'graphql-ws';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { serveGraphQLOverWebSocket } from '../src/subscriptions/ws.js';
import { createTestApp, type TestApp } from './support/app.js';
import { createAutomation, createProject, createWebhookAction, emit } from './support/fixtures.js';
import { type Collected, collectRuns, roundTrip, wsClient } from './support/matrix.js';

let t: TestApp;
let url: string;
const clients: Client[] = [];

beforeEach(async () => {
  t = await createTestApp({ env: { TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1' } });
  url = await t.listen();
  await createProject(t, 'p');
  const action = await createWebhookAction(t, { name: 'hook', url: 'http://127.0.0.1:9/hook' });
  await createAutomation(t, {
    name: 'notify',
    eventType: 'CREATE_ARTIFACT',
    scope: { type: 'PROJECT', project: 'p' },
    actionId: action.id,
  });
});

afterEach(async () => {
  for (const client of clients.splice(0)) await client.dispose();
  await t.close();
});

function client(key: string): Client {
  const c = wsClient(url, key);
  clients.push(c);
  return c;
}

const UPDATES = 'subscription { triggeredRunUpdated { id status } }';
const ENTITY_UPDATES = 'subscription { triggeredRunUpdated(entity: "default") { id status } }';

/** Emits one event (the engine is not started, so its run stays QUEUED) and returns the run id. */
async function emitRun(versionIndex: number): Promise<string> {
  const emitted = await emit(t, { versionIndex });
  return emitted.triggeredRuns[0].id;
}

describe('sharing executions', () => {
  it('executes each update once per distinct subscription and sends it to every subscriber', async () => {
    const viewerKey = await t.member('VIEWER');
    const admin = client(t.adminKey);
    const same = [0, 1, 2, 3].map(() => collectRuns(admin, UPDATES));
    const otherDocument = collectRuns(client(t.adminKey), ENTITY_UPDATES);
    const otherViewer = collectRuns(client(viewerKey), UPDATES);
    await t.subscribers(6);

    expect(t.app.hub.size).toBe(6);
    expect(t.app.hub.groups).toBe(3);
    // One pub/sub listener, and so one execution per update, per distinct subscription.
    expect(t.listeners()).toBe(3);

    const runId = await emitRun(1);
    for (const collected of [...same, otherDocument, otherViewer]) {
      expect(await collected.first).toBe(runId);
    }
    await roundTrip(admin);
    for (const collected of same) expect(collected.runIds).toEqual([runId]);
  });

  it('keeps a group running while members leave, and stops it with the last', async () => {
    const a = client(t.adminKey);
    const b = client(t.adminKey);
    const fromA: string[] = [];
    const leaveA = a.subscribe<{ triggeredRunUpdated: { id: string } }>(
      { query: UPDATES },
      {
        next: (m) => fromA.push(m.data?.triggeredRunUpdated.id ?? 'error'),
        error: () => {},
        complete: () => {},
      },
    );
    const fromB = collectRuns(b, UPDATES);
    await t.subscribers(2);
    expect(t.app.hub.groups).toBe(1);

    leaveA();
    await vi.waitFor(() => expect(t.app.hub.size).toBe(1));
    const runId = await emitRun(1);
    expect(await fromB.first).toBe(runId);
    await roundTrip(a);
    expect(fromA).toEqual([]);

    await b.dispose();
    await vi.waitFor(() => expect(t.app.hub.size).toBe(0));
    expect(t.app.hub.groups).toBe(0);
    await vi.waitFor(() => expect(t.listeners()).toBe(0));
  });

  it('stops a revoked key and a removed member at their next update, and no one else', async () => {
    const created = await t.gql(
      `mutation { createApiKey(input: { name: "second" }) { ... on CreateApiKeyPayload { secret: plaintextKey apiKey { id } } } }`,
    );
    const { secret: secondKey, apiKey } = created.data.createApiKey;
    const viewerKey = await t.member('VIEWER');
    const viewerId = (await t.gql('{ viewer { user { id } } }', {}, viewerKey)).data.viewer.user.id;
    const admin = client(t.adminKey);
    const second = client(secondKey);
    const subscribed: Record<string, Collected> = {
      admin: collectRuns(admin, UPDATES),
      second: collectRuns(second, UPDATES),
      viewer: collectRuns(client(viewerKey), UPDATES),
    };
    await t.subscribers(3);
    const before = await emitRun(1);
    for (const collected of Object.values(subscribed)) expect(await collected.first).toBe(before);

    const revoked = await t.gql(
      `mutation($id: ID!) { revokeApiKey(input: { id: $id }) { __typename } }`,
      {
        id: apiKey.id,
      },
    );
    expect(revoked.data.revokeApiKey.__typename).toBe('RevokeApiKeyPayload');
    const removed = await t.gql(
      `mutation($i: RemoveMemberInput!) { removeMember(input: $i) { __typename } }`,
      { i: { entity: 'default', userId: viewerId } },
    );
    expect(removed.data.removeMember.__typename).toBe('RemoveMemberPayload');

    const after = await emitRun(2);
    await vi.waitFor(() => expect(subscribed.admin?.runIds).toEqual([before, after]));
    await roundTrip(admin);
    expect(subscribed.second?.runIds).toEqual([before]);
    expect(subscribed.viewer?.runIds).toEqual([before]);

    // A new operation on the revoked key's open connection is answered UNAUTHENTICATED.
    const refused = await new Promise<unknown>((resolve) =>
      second.subscribe({ query: UPDATES }, { next: () => {}, error: resolve, complete: () => {} }),
    );
    expect(refused).toMatchObject([{ extensions: { code: 'UNAUTHENTICATED' } }]);
  });

  it('answers a refused subscription to each subscriber, and counts nobody', async () => {
    const refused = (c: Client) =>
      new Promise<unknown>((resolve) => {
        c.subscribe(
          { query: 'subscription { triggeredRunUpdated(runId: "not-an-id") { id } }' },
          { next: (m) => resolve(m.errors), error: resolve, complete: () => {} },
        );
      });
    const answers = await Promise.all([refused(client(t.adminKey)), refused(client(t.adminKey))]);
    for (const errors of answers) {
      expect(errors).toMatchObject([{ path: ['triggeredRunUpdated'] }]);
    }
    expect(t.app.hub.size).toBe(0);
    expect(t.app.hub.groups).toBe(0);
  });
});

/** An SSE subscription as the admin: `text` so far, and `until(s)` resolving once it contains `s`. */
async function sseSubscription(query: string) {
  const controller = new AbortController();
  const response = await fetch(`${url}?query=${encodeURIComponent(query)}`, {
    headers: { accept: 'text/event-stream', authorization: `Bearer ${t.adminKey}` },
    signal: controller.signal,
  });
  expect(response.status).toBe(200);
  const reader = response.body!.getReader();
  const stream = { text: '', close: () => controller.abort() };
  const read = (async () => {
    for (;;) {
      const chunk = await reader.read().catch(() => ({ done: true, value: undefined }));
      if (chunk.done) return;
      stream.text += new TextDecoder().decode(chunk.value);
    }
  })();
  return { stream, read };
}

describe('server-sent events', () => {
  it('share an execution per distinct subscription too, apart from WebSocket subscribers', async () => {
    const [a, b] = await Promise.all([sseSubscription(UPDATES), sseSubscription(UPDATES)]);
    const overWs = collectRuns(client(t.adminKey), UPDATES);
    await t.subscribers(3);
    expect(t.app.hub.groups).toBe(2);
    expect(t.listeners()).toBe(2);

    const runId = await emitRun(1);
    expect(await overWs.first).toBe(runId);
    await vi.waitFor(() => {
      for (const { stream } of [a, b]) expect(stream.text).toContain(runId);
    });
    for (const { stream } of [a, b]) stream.close();
    await Promise.all([a.read, b.read]);
    await vi.waitFor(() => expect(t.app.hub.size).toBe(1));
    expect(t.app.hub.groups).toBe(1);
  });
});

/** A raw socket speaking graphql-transport-ws (or `protocol`), with its messages in order. */
function rawSocket(target: string, protocol: string | null = 'graphql-transport-ws') {
  const ws = target.replace(/^http/, 'ws');
  const socket = protocol === null ? new WebSocket(ws) : new WebSocket(ws, protocol);
  const received: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  socket.on('message', (data) => {
    received.push(JSON.parse(String(data)));
    for (const wake of waiters.splice(0)) wake();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.on('close', (code, reason) => resolve({ code, reason: String(reason) })),
  );
  const opened = new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  return {
    socket,
    closed,
    received,
    send: async (message: unknown) => {
      await opened;
      socket.send(typeof message === 'string' ? message : JSON.stringify(message));
    },
    /** Resolves with the `n`th message (from 0) once it has arrived. */
    async message(n: number): Promise<Record<string, unknown>> {
      while (received.length <= n) await new Promise<void>((resolve) => waiters.push(resolve));
      return received[n] as Record<string, unknown>;
    },
  };
}

describe('the graphql-transport-ws protocol', () => {
  const init = () => ({
    type: 'connection_init',
    payload: { authorization: `Bearer ${t.adminKey}` },
  });

  it('acknowledges, answers pings with their payload, runs a query and completes it', async () => {
    const raw = rawSocket(url);
    await raw.send(init());
    expect(await raw.message(0)).toEqual({ type: 'connection_ack' });
    await raw.send({ type: 'ping', payload: { n: 1 } });
    expect(await raw.message(1)).toEqual({ type: 'pong', payload: { n: 1 } });
    await raw.send({
      id: 'q',
      type: 'subscribe',
      payload: { query: '{ viewer { user { name } } }' },
    });
    expect(await raw.message(2)).toEqual({
      id: 'q',
      type: 'next',
      payload: { data: { viewer: { user: { name: 'admin' } } } },
    });
    expect(await raw.message(3)).toEqual({ id: 'q', type: 'complete' });
    raw.socket.close();
  });

  it('sends updates as next frames until the client completes the subscription', async () => {
    const raw = rawSocket(url);
    await raw.send(init());
    await raw.message(0);
    await raw.send({ id: 's', type: 'subscribe', payload: { query: UPDATES } });
    await t.subscribers(1);
    const runId = await emitRun(1);
    expect(await raw.message(1)).toEqual({
      id: 's',
      type: 'next',
      payload: { data: { triggeredRunUpdated: { id: runId, status: 'QUEUED' } } },
    });
    await raw.send({ id: 's', type: 'complete' });
    await vi.waitFor(() => expect(t.app.hub.size).toBe(0));
    await emitRun(2);
    await raw.send({ id: 'q', type: 'subscribe', payload: { query: '{ __typename }' } });
    expect(await raw.message(3)).toEqual({ id: 'q', type: 'complete' });
    expect(raw.received.map((m) => `${m.type} ${m.id ?? ''}`)).toEqual([
      'connection_ack ',
      'next s',
      'next q',
      'complete q',
    ]);
    raw.socket.close();
  });

  it('closes with the codes graphql-ws uses for protocol violations', async () => {
    const withoutProtocol = rawSocket(url, null);
    expect((await withoutProtocol.closed).code).toBe(4406);

    const invalid = rawSocket(url);
    await invalid.send('{"type":"nonsense"}');
    expect((await invalid.closed).code).toBe(4400);

    const early = rawSocket(url);
    await early.send({ id: '1', type: 'subscribe', payload: { query: UPDATES } });
    expect((await early.closed).code).toBe(4401);

    const twice = rawSocket(url);
    await twice.send(init());
    await twice.send(init());
    expect((await twice.closed).code).toBe(4429);

    const reused = rawSocket(url);
    await reused.send(init());
    await reused.message(0);
    await reused.send({ id: '1', type: 'subscribe', payload: { query: UPDATES } });
    await reused.send({ id: '1', type: 'subscribe', payload: { query: UPDATES } });
    expect(await reused.closed).toEqual({ code: 4409, reason: 'Subscriber for 1 already exists' });

    const refused = rawSocket(url);
    await refused.send({ type: 'connection_init', payload: { authorization: 'Bearer tl_nope' } });
    expect((await refused.closed).code).toBe(4403);
  });

  describe('timers', () => {
    let server: Server;
    let close: () => Promise<void>;
    let timedUrl: string;

    beforeEach(async () => {
      server = createServer();
      const ws = serveGraphQLOverWebSocket({
        server,
        path: '/graphql',
        maxPayload: 1024,
        yoga: t.app.yoga,
        hub: t.app.hub,
        logger: t.deps.logger,
        connect: async () => true,
        keepAliveMs: 50,
        connectionInitWaitMs: 50,
      });
      close = () => ws.close();
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      timedUrl = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`;
    });

    afterEach(async () => {
      await close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    });

    it('closes with 4408 when connection_init does not come in time', async () => {
      expect((await rawSocket(timedUrl).closed).code).toBe(4408);
    });

    it('drops a client that stops answering pings, and keeps one that answers', async () => {
      const answering = rawSocket(timedUrl);
      await answering.send(init());
      await answering.message(0);
      const silent = new WebSocket(timedUrl, 'graphql-transport-ws', { autoPong: false });
      silent.on('open', () => silent.send(JSON.stringify(init())));
      const code = await new Promise<number>((resolve) => silent.on('close', resolve));
      // Terminated without a close frame: 1006.
      expect(code).toBe(1006);
      expect(answering.socket.readyState).toBe(WebSocket.OPEN);
      answering.socket.close();
    });
  });
});
