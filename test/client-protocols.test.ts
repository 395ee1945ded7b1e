import { createHash } from 'node:crypto';
import { ApolloClient, ApolloLink, gql, HttpLink, InMemoryCache } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';
import { createClient as createSSEClient, type Client as SSEClient } from 'graphql-sse';
import { createClient as createWSClient, type Client as WSClient } from 'graphql-ws';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { createTestApp, type TestApp } from './support/app.js';
import { createAutomation, createProject, createWebhookAction, emit } from './support/fixtures.js';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

let t: TestApp;
let url: string;
const cleanups: (() => unknown)[] = [];

async function start(env: Record<string, string> = {}): Promise<void> {
  t = await createTestApp({ env });
  url = await t.listen();
  await createProject(t, 'p');
  const action = await createWebhookAction(t, { name: 'hook', url: 'https://hooks.example/x' });
  await createAutomation(t, {
    name: 'notify',
    eventType: 'CREATE_ARTIFACT',
    scope: { type: 'PROJECT', project: 'p' },
    actionId: action.id,
  });
}

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await t.close();
});

/** Every request a client sent: method, whether it carried the query text, and the status. */
interface Sent {
  method: string;
  withQuery: boolean;
  status: number;
}

/** A `fetch` that records what it sends in `sent`. */
function recordingFetch(sent: Sent[]): typeof fetch {
  return async (input, init) => {
    const request = new Request(input, init);
    const body = request.method === 'GET' ? '' : await request.clone().text();
    const response = await fetch(request);
    sent.push({
      method: request.method,
      withQuery: body.includes('"query"') || new URL(request.url).searchParams.has('query'),
      status: response.status,
    });
    return response;
  };
}

const bearer = () => `Bearer ${t.adminKey}`;

/** A GraphQL request straight over HTTP, as curl would send it. */
async function post(body: unknown, key: string | null = t.adminKey) {
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(key ? { authorization: `Bearer ${key}` } : {}),
    },
    body: JSON.stringify(body),
  });
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary response shapes
  return { status: response.status, body: (await response.json()) as any };
}

async function get(params: Record<string, unknown>, key: string | null = t.adminKey) {
  const search = new URLSearchParams(
    Object.entries(params).map(([name, value]) => [
      name,
      typeof value === 'string' ? value : JSON.stringify(value),
    ]),
  );
  const response = await fetch(`${url}?${search}`, {
    headers: key ? { authorization: `Bearer ${key}` } : {},
  });
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary response shapes
  return { status: response.status, body: (await response.json()) as any };
}

const persisted = (query: string) => ({
  persistedQuery: { version: 1, sha256Hash: sha256(query) },
});

describe('automatic persisted queries', () => {
  beforeEach(() => start());

  const VIEWER = '{ viewer { user { name } } }';

  it('answers an unknown hash with PERSISTED_QUERY_NOT_FOUND, and registers a query sent with its hash', async () => {
    const unknown = await post({ extensions: persisted(VIEWER) });
    expect(unknown.status).toBe(404);
    expect(unknown.body.errors).toMatchObject([
      { message: 'PersistedQueryNotFound', extensions: { code: 'PERSISTED_QUERY_NOT_FOUND' } },
    ]);

    const registered = await post({ query: VIEWER, extensions: persisted(VIEWER) });
    expect(registered).toMatchObject({ status: 200, body: { data: { viewer: { user: {} } } } });

    const byPost = await post({ extensions: persisted(VIEWER) });
    const byGet = await get({ extensions: persisted(VIEWER) });
    expect(byPost.body).toEqual(registered.body);
    expect(byGet).toEqual({ status: 200, body: registered.body });
  });

  it('registers over GET too, and refuses a hash that is not the query’s', async () => {
    const query = '{ entity(name: "default") { name } }';
    expect((await get({ extensions: persisted(query) })).body.errors[0].extensions.code).toBe(
      'PERSISTED_QUERY_NOT_FOUND',
    );
    expect((await get({ query, extensions: persisted(query) })).body.data).toEqual({
      entity: { name: 'default' },
    });
    expect((await get({ extensions: persisted(query) })).body.data).toEqual({
      entity: { name: 'default' },
    });

    const mismatch = await post({ query: VIEWER, extensions: persisted(query) });
    expect(mismatch.status).toBe(400);
    expect(mismatch.body.errors[0].extensions.code).toBe('PERSISTED_QUERY_MISMATCH');
  });

  it('needs a valid API key before the store is read or written', async () => {
    await post({ query: VIEWER, extensions: persisted(VIEWER) });
    const lookup = await post({ extensions: persisted(VIEWER) }, null);
    expect(lookup.status).toBe(401);
    expect(lookup.body.errors[0].extensions.code).toBe('UNAUTHENTICATED');

    const query = '{ viewer { entities { role } } }';
    const register = await post({ query, extensions: persisted(query) }, 'tl_not-a-key');
    expect(register.status).toBe(401);
    expect((await post({ extensions: persisted(query) })).status).toBe(404);
  });

  it('keeps at most TRIPLINE_PERSISTED_QUERIES_MAX_BYTES of queries, dropping the least recently used', async () => {
    await t.close();
    await start({ TRIPLINE_PERSISTED_QUERIES_MAX_BYTES: '1024' });
    // Each query with its hash takes a little over 200 bytes: five fit, six do not.
    const queries = Array.from(
      { length: 6 },
      (_, i) => `query Q${i} { viewer { user { name } } } # ${'x'.repeat(100)}`,
    );
    for (const query of queries.slice(0, 5)) {
      expect((await post({ query, extensions: persisted(query) })).status).toBe(200);
    }
    // Using the first again makes the second the least recently used.
    expect((await post({ extensions: persisted(queries[0]!) })).status).toBe(200);
    await post({ query: queries[5], extensions: persisted(queries[5]!) });

    expect((await post({ extensions: persisted(queries[1]!) })).status).toBe(404);
    for (const query of [queries[0]!, ...queries.slice(2)]) {
      expect((await post({ extensions: persisted(query) })).status).toBe(200);
    }
  });

  it.each([
    ['POST', false, ['POST', 'POST', 'POST']],
    ['GET for hashed queries', true, ['GET', 'POST', 'GET']],
  ])('works with Apollo Client’s persisted-query link (%s)', async (_mode, useGET, methods) => {
    const sent: Sent[] = [];
    const client = () =>
      new ApolloClient({
        cache: new InMemoryCache(),
        link: ApolloLink.from([
          new PersistedQueryLink({ sha256, useGETForHashedQueries: useGET }),
          new HttpLink({
            uri: url,
            headers: { authorization: bearer() },
            fetch: recordingFetch(sent),
          }),
        ]),
      });
    const query = gql`
      query ApolloViewer {
        viewer {
          user {
            name
          }
        }
      }
    `;
    const first = await client().query({ query });
    // A second client knows nothing of the first: it sends the hash alone, which the server knows.
    const second = await client().query({ query });

    expect(first.data).toEqual({
      viewer: { __typename: 'Viewer', user: { __typename: 'User', name: 'admin' } },
    });
    expect(second.data).toEqual(first.data);
    expect(sent.map((s) => s.method)).toEqual(methods);
    expect(sent.map((s) => s.withQuery)).toEqual([false, true, false]);
    expect(sent.map((s) => s.status)).toEqual([404, 200, 200]);

    const mutation = gql`
      mutation ApolloProject($input: CreateProjectInput!) {
        createProject(input: $input) {
          __typename
        }
      }
    `;
    const created = await client().mutate({
      mutation,
      variables: { input: { entity: 'default', name: 'from-apollo' } },
    });
    expect(created.data).toEqual({ createProject: { __typename: 'CreateProjectPayload' } });
    // Mutations never go over GET: the hash alone, then the text, both POSTed.
    expect(sent.slice(3).map((s) => [s.method, s.withQuery])).toEqual([
      ['POST', false],
      ['POST', true],
    ]);
  });
});

const SUBSCRIPTION = 'subscription { triggeredRunUpdated { id status } }';

interface Update {
  id: string;
  status: string;
}

/** Subscribes with `client` and resolves with the first update, then unsubscribes. */
function firstUpdate(client: SSEClient | WSClient): Promise<Update> {
  return new Promise((resolve, reject) => {
    const unsubscribe = client.subscribe<{ triggeredRunUpdated: Update }>(
      { query: SUBSCRIPTION },
      {
        next: (result) => {
          if (result.errors) return reject(new Error(JSON.stringify(result.errors)));
          const update = result.data?.triggeredRunUpdated;
          if (!update) return;
          unsubscribe();
          resolve(update);
        },
        error: reject,
        complete: () => {},
      },
    );
  });
}

/** Emits a CREATE_ARTIFACT event once one subscriber listens; returns the id of its run. */
async function emitWhenListening(): Promise<string> {
  await t.subscribers(1);
  const emitted = await emit(t);
  return emitted.triggeredRuns[0].id;
}

describe('GraphQL over server-sent events, with the stock graphql-sse client', () => {
  beforeEach(() => start());

  function sseClient(singleConnection: boolean, sent: Sent[] = [], key = t.adminKey): SSEClient {
    const client = createSSEClient({
      url,
      singleConnection,
      headers: { Authorization: `Bearer ${key}` },
      retryAttempts: 0,
      fetchFn: recordingFetch(sent),
    });
    cleanups.push(() => client.dispose());
    return client;
  }

  it('streams triggeredRunUpdated in distinct connections mode', async () => {
    const sent: Sent[] = [];
    const update = firstUpdate(sseClient(false, sent));
    const runId = await emitWhenListening();
    expect(await update).toEqual({ id: runId, status: 'QUEUED' });
    expect(sent[0]).toMatchObject({ method: 'POST', status: 200 });
  });

  it('streams triggeredRunUpdated in single connection mode: reserve, open, run, stop', async () => {
    const sent: Sent[] = [];
    const update = firstUpdate(sseClient(true, sent));
    const runId = await emitWhenListening();
    expect(await update).toEqual({ id: runId, status: 'QUEUED' });
    // Unsubscribing stops the operation with DELETE.
    await vi.waitFor(() => expect(sent.map((s) => s.method)).toContain('DELETE'));
    expect(sent.map((s) => [s.method, s.status])).toEqual([
      ['PUT', 201],
      ['GET', 200],
      ['POST', 202],
      ['DELETE', 200],
    ]);
  });

  it('refuses every single-connection request without a valid key', async () => {
    const sent: Sent[] = [];
    const refused = firstUpdate(sseClient(true, sent, 'tl_not-a-key'));
    await expect(refused).rejects.toThrow();
    expect(sent).toEqual([{ method: 'PUT', withQuery: false, status: 401 }]);
  });
});

describe('the single connection mode, request by request', () => {
  beforeEach(() => start({ TRIPLINE_MAX_REQUEST_BYTES: '4096' }));

  const headers = (key: string, token?: string) => ({
    authorization: `Bearer ${key}`,
    ...(token ? { 'x-graphql-event-stream-token': token } : {}),
  });

  async function reserve(key = t.adminKey): Promise<string> {
    const response = await fetch(url, { method: 'PUT', headers: headers(key) });
    expect(response.status).toBe(201);
    return response.text();
  }

  /** Opens the stream of `token` and collects its text until it contains `until`. */
  async function open(token: string) {
    const controller = new AbortController();
    cleanups.push(() => controller.abort());
    const response = await fetch(url, {
      headers: { ...headers(t.adminKey, token), accept: 'text/event-stream' },
      signal: controller.signal,
    });
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    let text = '';
    return {
      async until(part: string): Promise<string> {
        while (!text.includes(part)) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`the stream ended without ${part}: ${text}`);
          text += new TextDecoder().decode(value);
        }
        return text;
      },
    };
  }

  function run(token: string, operationId: string, query: string, key = t.adminKey) {
    return fetch(url, {
      method: 'POST',
      headers: { ...headers(key, token), 'content-type': 'application/json' },
      body: JSON.stringify({ query, extensions: { operationId } }),
    });
  }

  it('runs an operation onto the stream and stops it on DELETE', async () => {
    const token = await reserve();
    const stream = await open(token);
    expect((await run(token, 'runs', SUBSCRIPTION)).status).toBe(202);
    const runId = await emitWhenListening();
    expect(await stream.until(runId)).toContain('"id":"runs"');

    const stop = await fetch(`${url}?operationId=runs`, {
      method: 'DELETE',
      headers: headers(t.adminKey, token),
    });
    expect(stop.status).toBe(200);
    expect(await stream.until('event: complete')).toContain('data: {"id":"runs"}');
  });

  it('answers a syntax error on the stream, as a result of the operation', async () => {
    const token = await reserve();
    const stream = await open(token);
    expect((await run(token, 'bad', 'subscription {')).status).toBe(202);
    expect(await stream.until('event: complete')).toContain('Syntax Error');
  });

  it('serves a token only to the key that reserved it', async () => {
    const token = await reserve();
    const other = await t.member('ADMIN');
    const foreign = await run(token, 'x', SUBSCRIPTION, other);
    expect(foreign.status).toBe(404);
    const peek = await fetch(url, {
      headers: { ...headers(other, token), accept: 'text/event-stream' },
    });
    expect(peek.status).toBe(404);
    const stop = await fetch(`${url}?operationId=x`, {
      method: 'DELETE',
      headers: headers(other, token),
    });
    expect(stop.status).toBe(404);
    const noKey = await fetch(url, { method: 'PUT' });
    expect(noKey.status).toBe(401);
    expect(await noKey.json()).toMatchObject({
      errors: [{ extensions: { code: 'UNAUTHENTICATED' } }],
    });
  });

  it('bounds an operation’s body by TRIPLINE_MAX_REQUEST_BYTES', async () => {
    const token = await reserve();
    const response = await run(token, 'big', `${SUBSCRIPTION} # ${'x'.repeat(5000)}`);
    expect(response.status).toBe(413);
    expect(await response.json()).toMatchObject({
      errors: [{ extensions: { code: 'REQUEST_TOO_LARGE' } }],
    });
  });

  it('drops a reservation whose stream is not opened in time', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    cleanups.push(() => vi.useRealTimers());
    const kept = await reserve();
    const dropped = await reserve();
    await open(kept);
    vi.advanceTimersByTime(30_000);
    vi.useRealTimers();
    await vi.waitFor(async () =>
      expect((await run(dropped, 'late', SUBSCRIPTION)).status).toBe(404),
    );
    expect((await run(kept, 'on-time', SUBSCRIPTION)).status).toBe(202);
  });
});

describe('graphql-ws connection params', () => {
  beforeEach(() => start());

  function wsClient(connectionParams: Record<string, unknown>): WSClient {
    const client = createWSClient({
      url: url.replace('http', 'ws'),
      webSocketImpl: WebSocket,
      connectionParams,
      retryAttempts: 0,
    });
    cleanups.push(() => client.dispose());
    return client;
  }

  it.each([
    ['{ authorization }', () => ({ authorization: bearer() })],
    ['{ Authorization }', () => ({ Authorization: bearer() })],
    ['{ headers: { Authorization } }', () => ({ headers: { Authorization: bearer() } })],
    ['{ headers: { authorization } }', () => ({ headers: { authorization: bearer() } })],
  ])('accepts the key as %s', async (_form, params) => {
    const update = firstUpdate(wsClient(params()));
    const runId = await emitWhenListening();
    expect(await update).toEqual({ id: runId, status: 'QUEUED' });
  });

  it('closes with 4403 when the key in headers is not valid', async () => {
    const client = wsClient({ headers: { Authorization: 'Bearer tl_not-a-key' } });
    const closed = new Promise<number>((resolve) =>
      client.on('closed', (event) => resolve((event as { code: number }).code)),
    );
    await expect(firstUpdate(client)).rejects.toBeDefined();
    expect(await closed).toBe(4403);
  });
});
