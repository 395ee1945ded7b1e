import type { FormattedExecutionResult } from 'graphql';
import { type Client, createClient } from 'graphql-ws';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createMemoryRateLimitStore } from '../src/limits/rate-limit.js';
import { createTestApp, fakeClock, type TestApp } from './support/app.js';
import { createProject, EMIT } from './support/fixtures.js';
import { tokenBucketCases } from './support/rate-limit-cases.js';

let t: TestApp | undefined;
const clients: Client[] = [];
afterEach(async () => {
  for (const client of clients.splice(0)) await client.dispose();
  await t?.close();
  t = undefined;
});

const clock = fakeClock();

async function app(env: Record<string, string>): Promise<TestApp> {
  t = await createTestApp({ env, clock });
  return t;
}

/** Sends a raw request so the test can read the HTTP status and headers. */
async function send(a: TestApp, query: string, variables: Record<string, unknown>, key: string) {
  const response = await a.app.yoga.fetch('http://localhost/graphql', {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/graphql-response+json',
      authorization: `Bearer ${key}`,
    },
    body: JSON.stringify({ query, variables }),
  });
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary response shapes
  const body = (await response.json()) as { data?: any; errors?: any[] };
  return { status: response.status, retryAfter: response.headers.get('retry-after'), ...body };
}

const CREATE_PROJECT = `mutation($i: CreateProjectInput!) { createProject(input: $i) { __typename } }`;
const project = (a: TestApp, name: string, key = a.adminKey) =>
  send(a, CREATE_PROJECT, { i: { entity: 'default', name } }, key);
const projectNames = async (a: TestApp): Promise<string[]> =>
  (
    await a.gql('{ entity(name: "default") { projects { edges { node { name } } } } }')
  ).data.entity.projects.edges.map((e: { node: { name: string } }) => e.node.name);

const event = (versionIndex: number) => ({
  i: {
    entity: 'default',
    eventType: 'CREATE_ARTIFACT',
    owner: { project: 'p' },
    collection: 'm',
    artifactType: 'model',
    versionIndex,
  },
});
const eventCount = async (a: TestApp): Promise<number> =>
  (await a.gql('{ entity(name: "default") { events { totalCount } } }')).data.entity.events
    .totalCount;

describe('mutation rate limits per API key', () => {
  it('allows TRIPLINE_RATE_LIMIT_MUTATIONS_PER_MINUTE at once, then answers 429 with Retry-After until the bucket refills', async () => {
    const a = await app({ TRIPLINE_RATE_LIMIT_MUTATIONS_PER_MINUTE: '3' });
    for (const name of ['a', 'b', 'c']) expect((await project(a, name)).status).toBe(200);

    const refused = await project(a, 'd');
    expect(refused.status).toBe(429);
    // One token comes back every 60 / 3 = 20 seconds.
    expect(refused.retryAfter).toBe('20');
    expect(refused.data ?? null).toBeNull();
    expect(refused.errors).toEqual([
      {
        message:
          'Rate limit reached: this API key may run 3 mutations per minute (TRIPLINE_RATE_LIMIT_MUTATIONS_PER_MINUTE). Retry after 20 seconds.',
        extensions: {
          code: 'RATE_LIMITED',
          limit: 3,
          retryAfterSeconds: 20,
          requestId: expect.any(String),
        },
      },
    ]);
    expect(await projectNames(a)).toEqual(['a', 'b', 'c']);

    clock.advance(19_000);
    const early = await project(a, 'd');
    expect(early.status).toBe(429);
    expect(early.errors?.[0]?.extensions.retryAfterSeconds).toBe(1);
    clock.advance(1_000);
    expect((await project(a, 'd')).data.createProject.__typename).toBe('CreateProjectPayload');
    expect((await project(a, 'e')).status).toBe(429);
  });

  it('keeps one bucket per API key, and leaves queries alone', async () => {
    const a = await app({ TRIPLINE_RATE_LIMIT_MUTATIONS_PER_MINUTE: '2' });
    // Creating the member is the admin's first mutation.
    const other = await a.member('ADMIN');
    expect((await project(a, 'a')).status).toBe(200);
    expect((await project(a, 'b')).status).toBe(429);
    expect((await project(a, 'b', other)).status).toBe(200);
    for (let i = 0; i < 5; i++) {
      const query = await send(a, '{ viewer { user { name } } }', {}, a.adminKey);
      expect(query.status).toBe(200);
    }
  });

  it('charges every mutation field of an operation, all or nothing', async () => {
    const a = await app({ TRIPLINE_RATE_LIMIT_MUTATIONS_PER_MINUTE: '3' });
    const two = `mutation { x: createProject(input: { entity: "default", name: "x" }) { __typename }
      ...more }
      fragment more on Mutation { y: createProject(input: { entity: "default", name: "y" }) { __typename } __typename }`;
    expect((await send(a, two, {}, a.adminKey)).status).toBe(200);
    expect(await projectNames(a)).toEqual(['x', 'y']);
    const again = await send(
      a,
      two.replaceAll('"x"', '"z"').replaceAll('"y"', '"w"'),
      {},
      a.adminKey,
    );
    expect(again.status).toBe(429);
    expect(again.errors?.[0]?.extensions.retryAfterSeconds).toBe(20);
    expect(await projectNames(a)).toEqual(['x', 'y']);
    expect((await project(a, 'z')).status).toBe(200);
  });

  it('does not charge operations that fail validation', async () => {
    const a = await app({ TRIPLINE_RATE_LIMIT_MUTATIONS_PER_MINUTE: '1' });
    const invalid = await send(a, 'mutation { createProject { __typename } }', {}, a.adminKey);
    expect(invalid.status).toBe(400);
    expect((await project(a, 'a')).status).toBe(200);
  });

  it('limits emitArtifactEvent by TRIPLINE_RATE_LIMIT_EVENTS_PER_MINUTE, apart from other mutations', async () => {
    const a = await app({
      TRIPLINE_RATE_LIMIT_MUTATIONS_PER_MINUTE: '2',
      TRIPLINE_RATE_LIMIT_EVENTS_PER_MINUTE: '3',
    });
    await createProject(a, 'p');
    for (const i of [0, 1, 2]) {
      const ok = await send(a, EMIT, event(i), a.adminKey);
      expect(ok.data.emitArtifactEvent.__typename).toBe('EmitArtifactEventPayload');
    }
    const refused = await send(a, EMIT, event(3), a.adminKey);
    expect(refused.status).toBe(429);
    expect(refused.retryAfter).toBe('20');
    expect(refused.errors?.[0]).toEqual({
      message:
        'Rate limit reached: this API key may run 3 emitArtifactEvent calls per minute (TRIPLINE_RATE_LIMIT_EVENTS_PER_MINUTE). Retry after 20 seconds.',
      extensions: {
        code: 'RATE_LIMITED',
        limit: 3,
        retryAfterSeconds: 20,
        requestId: expect.any(String),
      },
    });
    expect(await eventCount(a)).toBe(3);
    // Events spent none of the mutations bucket, which `p` used one token of.
    expect((await project(a, 'q')).status).toBe(200);
    expect((await project(a, 'r')).status).toBe(429);
  });

  it('turns each limit off with 0', async () => {
    const a = await app({
      TRIPLINE_RATE_LIMIT_MUTATIONS_PER_MINUTE: '0',
      TRIPLINE_RATE_LIMIT_EVENTS_PER_MINUTE: '0',
    });
    await createProject(a, 'p');
    for (let i = 0; i < 20; i++) {
      expect((await project(a, `n${i}`)).status).toBe(200);
      expect((await send(a, EMIT, event(i), a.adminKey)).status).toBe(200);
    }
    expect(await eventCount(a)).toBe(20);
  });

  it('has documented defaults of 600 mutations and 6000 events per minute', async () => {
    const a = await app({});
    expect(a.config.rateLimits).toEqual({ mutationsPerMinute: 600, eventsPerMinute: 6000 });
  });

  it('applies over graphql-ws as well, as a GraphQL error', async () => {
    const a = await app({ TRIPLINE_RATE_LIMIT_MUTATIONS_PER_MINUTE: '1' });
    const url = await a.listen();
    const client = createClient({
      url: url.replace('http', 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${a.adminKey}` },
      retryAttempts: 0,
    });
    clients.push(client);
    const run = (name: string) =>
      new Promise<FormattedExecutionResult>((resolve, reject) => {
        client.subscribe(
          { query: CREATE_PROJECT, variables: { i: { entity: 'default', name } } },
          { next: resolve, error: reject, complete: () => {} },
        );
      });
    expect((await run('a')).data).toEqual({
      createProject: { __typename: 'CreateProjectPayload' },
    });
    const refused = await run('b');
    expect(refused.errors?.[0]?.extensions).toMatchObject({
      code: 'RATE_LIMITED',
      limit: 1,
      retryAfterSeconds: 60,
    });
    expect(await projectNames(a)).toEqual(['a']);
  });
});

describe('the in-memory token bucket store', () => {
  tokenBucketCases(createMemoryRateLimitStore);
});
