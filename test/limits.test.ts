import { getIntrospectionQuery } from 'graphql';
import { type Client, createClient } from 'graphql-ws';
import { afterEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { createTestApp, type GraphQLResponse, type TestApp } from './support/app.js';
import { createProject, createWebhookAction, emit } from './support/fixtures.js';

let t: TestApp | undefined;
const clients: Client[] = [];
afterEach(async () => {
  for (const client of clients.splice(0)) await client.dispose();
  await t?.close();
  t = undefined;
});

async function app(env: Record<string, string> = {}): Promise<TestApp> {
  t = await createTestApp({ env });
  return t;
}

/** POSTs a raw body to /graphql in process, as the admin. */
async function post(app: TestApp, body: BodyInit, headers: Record<string, string> = {}) {
  const response = await app.app.yoga.fetch('http://localhost/graphql', {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/graphql-response+json',
      authorization: `Bearer ${app.adminKey}`,
      ...headers,
    },
    body,
    ...(body instanceof ReadableStream ? { duplex: 'half' } : {}),
  } as RequestInit);
  return { status: response.status, ...((await response.json()) as object) } as GraphQLResponse;
}

const projectCount = async (app: TestApp): Promise<number> =>
  (await app.gql('{ entity(name: "default") { projects { totalCount } } }')).data.entity.projects
    .totalCount;

const CREATE_PROJECT = `mutation($i: CreateProjectInput!) { createProject(input: $i) {
  __typename ... on Error { message ... on ValidationError { field } } } }`;

/**
 * A query nested exactly `depth` levels (counted as graphql-armor does: `viewer` is 1), walking
 * Entity → automations → edges → node → entity.
 */
function nested(depth: number): string {
  // `{ viewer { entities { entity { name } } } }` is 4 deep; each loop adds 4.
  const loops = Math.floor((depth - 4) / 4);
  const extra = depth - 4 - loops * 4;
  const tail = [
    'name',
    'automations(first: 1) { totalCount }',
    'automations(first: 1) { edges { cursor } }',
    'automations(first: 1) { edges { node { id } } }',
  ][extra];
  if (tail === undefined) throw new Error(`cannot build depth ${depth}`);
  // One result per page, so only the depth limit applies, not the cost.
  const open = 'automations(first: 1) { edges { node { entity { '.repeat(loops);
  return `{ viewer { entities { entity { ${open}${tail} ${'} } } } '.repeat(loops)}} } } }`;
}

function expectRefused(res: GraphQLResponse, code: string, limit: number) {
  expect(res.data ?? null).toBeNull();
  expect(res.errors).toHaveLength(1);
  expect(res.errors?.[0]?.extensions).toMatchObject({ code, limit });
  expect(res.errors?.[0]?.message).toContain(String(limit));
}

describe('request body size', () => {
  /** A createProject request of exactly `bytes` bytes, padded with an unused variable. */
  const padded = (bytes: number) => {
    const body = (pad: string) =>
      JSON.stringify({
        query: CREATE_PROJECT,
        variables: { i: { entity: 'default', name: 'big' }, pad },
      });
    return body('x'.repeat(bytes - body('').length));
  };

  it('accepts a body of exactly TRIPLINE_MAX_REQUEST_BYTES and refuses one byte more with 413', async () => {
    const a = await app({ TRIPLINE_MAX_REQUEST_BYTES: '2048' });
    const over = await post(a, padded(2049));
    expect(over.status).toBe(413);
    expectRefused(over, 'REQUEST_TOO_LARGE', 2048);
    expect(over.errors?.[0]?.message).toMatch(/TRIPLINE_MAX_REQUEST_BYTES/);
    expect(await projectCount(a)).toBe(0);

    const exact = padded(2048);
    expect(Buffer.byteLength(exact)).toBe(2048);
    const ok = await post(a, exact);
    expect(ok.status).toBe(200);
    expect(ok.data.createProject.__typename).toBe('CreateProjectPayload');
  });

  it('stops reading a body without Content-Length once it passes the limit', async () => {
    const a = await app({ TRIPLINE_MAX_REQUEST_BYTES: '2048' });
    let pulled = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled += 1;
        if (pulled > 100) return controller.close();
        controller.enqueue(new TextEncoder().encode(pulled === 1 ? '{"query":"' : 'x'.repeat(512)));
      },
    });
    const res = await post(a, body);
    expect(res.status).toBe(413);
    expectRefused(res, 'REQUEST_TOO_LARGE', 2048);
    expect(pulled).toBeLessThan(10);
  });

  it('bounds a chunked body over a real socket, where no length is declared', async () => {
    const a = await app({ TRIPLINE_MAX_REQUEST_BYTES: '2048' });
    const url = await a.listen();
    const send = (text: string) =>
      fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/graphql-response+json',
          authorization: `Bearer ${a.adminKey}`,
        },
        // A stream has no length, so it goes chunked.
        body: new Blob([text]).stream(),
        duplex: 'half',
      } as RequestInit);
    const over = await send(padded(2049));
    expect(over.status).toBe(413);
    expect(((await over.json()) as GraphQLResponse).errors?.[0]?.extensions?.code).toBe(
      'REQUEST_TOO_LARGE',
    );
    const exact = await send(padded(2048));
    expect(exact.status).toBe(200);
    expect(((await exact.json()) as GraphQLResponse).data?.createProject).toEqual({
      __typename: 'CreateProjectPayload',
    });
  });

  it('refuses an oversized body over a real socket from its Content-Length, and caps WebSocket messages', async () => {
    const a = await app({ TRIPLINE_MAX_REQUEST_BYTES: '4096' });
    const url = await a.listen();
    const res = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/graphql-response+json',
        authorization: `Bearer ${a.adminKey}`,
      },
      body: padded(10_000),
    });
    expect(res.status).toBe(413);
    expect(((await res.json()) as GraphQLResponse).errors?.[0]?.extensions?.code).toBe(
      'REQUEST_TOO_LARGE',
    );

    // graphql-ws reports the refused frame on stderr; keep test output quiet.
    const stderr = vi.spyOn(console, 'error').mockImplementation(() => {});
    const socket = new WebSocket(url.replace('http', 'ws'), 'graphql-transport-ws');
    await new Promise((resolve) => socket.once('open', resolve));
    const closed = new Promise<number>((resolve) => socket.once('close', resolve));
    socket.send(JSON.stringify({ type: 'connection_init', payload: { pad: 'x'.repeat(5000) } }));
    expect(await closed).toBe(1009);
    stderr.mockRestore();
    expect(await projectCount(a)).toBe(0);
  });
});

describe('query limits', () => {
  it('allows the depth, cost and size our own clients and GraphiQL introspection need', async () => {
    const a = await app();
    const intro = await a.gql(getIntrospectionQuery({ descriptions: true, specifiedByUrl: true }));
    expect(intro.errors).toBeUndefined();
    expect(intro.data.__schema.queryType.name).toBe('Query');
    const deep = await a.gql(nested(12));
    expect(deep.errors).toBeUndefined();
    const page = await a.gql(`{ entity(name: "default") {
      secrets(first: 100) { totalCount edges { cursor node { id name createdAt } } }
      actions(first: 100) { totalCount edges { node { id name enabled } } }
      triggeredRuns(first: 100) { edges { node { id status attempts { statusCode } } } } } }`);
    expect(page.errors).toBeUndefined();
  });

  it('refuses a query deeper than TRIPLINE_MAX_QUERY_DEPTH (default 12) and allows exactly the limit', async () => {
    const a = await app();
    await createProject(a, 'p');
    // Fragments add no level: createProject is 1, the last name 13.
    const res = await a.gql(`mutation { createProject(input: { entity: "default", name: "q" }) {
      ... on CreateProjectPayload { project { triggeredRuns { edges { node { event { project {
      triggeredRuns { edges { node { event { project { name } } } } } } } } } } } } } }`);
    expect(res.status).toBe(400);
    expectRefused(res, 'QUERY_TOO_DEEP', 12);
    expect(res.errors?.[0]?.message).toBe(
      'The query depth exceeds the limit of 12 (found 13) set by TRIPLINE_MAX_QUERY_DEPTH. Select fewer nested levels, or split the query.',
    );
    expect(res.errors?.[0]?.extensions?.found).toBe(13);
    expect(await projectCount(a)).toBe(1);

    const b = await app({ TRIPLINE_MAX_QUERY_DEPTH: '5' });
    expect((await b.gql(nested(5))).errors).toBeUndefined();
    expectRefused(await b.gql(nested(6)), 'QUERY_TOO_DEEP', 5);
  });

  it('refuses more aliases than TRIPLINE_MAX_QUERY_ALIASES (default 30), storing nothing', async () => {
    const a = await app();
    const aliases = (n: number) =>
      `mutation { ${Array.from(
        { length: n },
        (_, i) =>
          `p${i}: createProject(input: { entity: "default", name: "p${i}" }) { __typename }`,
      ).join(' ')} }`;
    const res = await a.gql(aliases(31));
    expect(res.status).toBe(400);
    expectRefused(res, 'TOO_MANY_ALIASES', 30);
    expect(res.errors?.[0]?.message).toMatch(
      /^The number of aliases exceeds the limit of 30 \(found 31\)/,
    );
    expect(await projectCount(a)).toBe(0);
    const ok = await a.gql(aliases(30));
    expect(ok.errors).toBeUndefined();
    expect(await projectCount(a)).toBe(30);
  });

  it('refuses a query whose estimated cost passes TRIPLINE_MAX_QUERY_COST', async () => {
    // `{ viewer { user { name } } }` costs 2 + 1.5 × (2 + 1.5 × 1) = 7.25.
    const a = await app({ TRIPLINE_MAX_QUERY_COST: '7' });
    const res = await a.gql('{ viewer { user { name } } }');
    expect(res.status).toBe(400);
    expectRefused(res, 'QUERY_TOO_COMPLEX', 7);
    expect(res.errors?.[0]?.message).toMatch(/TRIPLINE_MAX_QUERY_COST/);
    const b = await app({ TRIPLINE_MAX_QUERY_COST: '8' });
    expect((await b.gql('{ viewer { user { name } } }')).data.viewer.user.name).toBe('admin');
  });

  it('refuses a default-config query that multiplies nested pages', async () => {
    const a = await app();
    const res = await a.gql(`{ entity(name: "default") { triggeredRuns(first: 100) { edges { node {
      event { triggeredRuns(first: 100) { edges { node { id } } } } } } } } }`);
    expectRefused(res, 'QUERY_TOO_COMPLEX', 50_000);
  });

  it('refuses a document with more tokens than TRIPLINE_MAX_QUERY_TOKENS', async () => {
    // `{ viewer { user { name } } }` is 9 tokens.
    const a = await app({ TRIPLINE_MAX_QUERY_TOKENS: '8' });
    const res = await a.gql('{ viewer { user { name } } }');
    expect(res.status).toBe(400);
    expectRefused(res, 'QUERY_TOO_LONG', 8);
    expect(res.errors?.[0]?.message).toMatch(/TRIPLINE_MAX_QUERY_TOKENS.*variables/);
    const b = await app({ TRIPLINE_MAX_QUERY_TOKENS: '9' });
    expect((await b.gql('{ viewer { user { name } } }')).errors).toBeUndefined();
  });

  it('refuses more directives than TRIPLINE_MAX_QUERY_DIRECTIVES', async () => {
    const a = await app({ TRIPLINE_MAX_QUERY_DIRECTIVES: '1' });
    const one = await a.gql('{ viewer { user @include(if: true) { name } } }');
    expect(one.errors).toBeUndefined();
    const res = await a.gql('{ viewer @include(if: true) { user @include(if: true) { name } } }');
    expect(res.status).toBe(400);
    expectRefused(res, 'TOO_MANY_DIRECTIVES', 1);
  });

  it('answers a limit over graphql-ws with an error and keeps the connection', async () => {
    const a = await app({ TRIPLINE_MAX_QUERY_DEPTH: '5', TRIPLINE_MAX_QUERY_TOKENS: '40' });
    const url = await a.listen();
    const client = createClient({
      url: url.replace('http', 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${a.adminKey}` },
      retryAttempts: 0,
    });
    clients.push(client);
    const run = (query: string) =>
      new Promise<{ data?: unknown; errors?: unknown[] }>((resolve) => {
        client.subscribe(
          { query },
          {
            next: (value) => resolve(value as { data?: unknown }),
            error: (errors) => resolve({ errors: errors as unknown[] }),
            complete: () => {},
          },
        );
      });
    const deep = await run(nested(6));
    expect(deep.errors?.[0]).toMatchObject({ extensions: { code: 'QUERY_TOO_DEEP', limit: 5 } });
    const long = await run(`{ viewer { user { ${'name '.repeat(40)} } } }`);
    expect(long.errors?.[0]).toMatchObject({ extensions: { code: 'QUERY_TOO_LONG', limit: 40 } });
    const ok = await run('{ viewer { user { name } } }');
    expect(ok.data).toEqual({ viewer: { user: { name: 'admin' } } });
  });
});

describe('the NUL character', () => {
  it('is refused in any variable or string literal, on every engine, before anything runs', async () => {
    const a = await app();
    const create = 'mutation($i: CreateProjectInput!) { createProject(input: $i) { __typename } }';
    for (const [query, variables, where] of [
      [create, { i: { entity: 'default', name: 'a\u0000b' } }, 'Variable $i.name'],
      [
        create,
        { i: { entity: 'default', name: 'ok', description: 'y\u0000' } },
        'Variable $i.description',
      ],
      [
        'mutation { createProject(input: { entity: "default", name: "a\\u0000b" }) { __typename } }',
        {},
        'A string in the document',
      ],
      [
        '{ entity(name: $n) { name } }'.replace('{ entity', 'query($n: String!) { entity'),
        { n: '\u0000' },
        'Variable $n',
      ],
    ] as const) {
      const res = await a.gql(query, variables);
      expect(res.errors?.[0]?.extensions?.code, JSON.stringify(res)).toBe('INVALID_CHARACTER');
      expect(res.errors?.[0]?.message).toContain(`${where} contains the NUL character (U+0000)`);
    }
    // A key of a JSON object, too.
    const emitted = await a.gql(
      'mutation($m: JSONObject) { emitArtifactEvent(input: { entity: "default", eventType: CREATE_ARTIFACT, owner: { project: "p" }, collection: "m", artifactType: "model", versionIndex: 0, metadata: $m }) { __typename } }',
      { m: { 'k\u0000': 1 } },
    );
    expect(emitted.errors?.[0]?.message).toContain('Variable $m."k\\u0000" contains the NUL');
    const listed = await a.gql(
      'mutation($m: JSONObject) { emitArtifactEvent(input: { entity: "default", eventType: CREATE_ARTIFACT, owner: { project: "p" }, collection: "m", artifactType: "model", versionIndex: 0, metadata: $m }) { __typename } }',
      { m: { list: ['a', 'b\u0000'] } },
    );
    expect(listed.errors?.[0]?.message).toContain('Variable $m.list[1] contains the NUL');
    expect(await projectCount(a)).toBe(0);
  });
});

describe('query cost with variables (issue 7, item 5)', () => {
  /** The operation: 50 automations with 20 runs each costs about 83,000. */
  const AUTOMATION_RUNS = (first: string, runs: string) => `{ entity(name: "default") {
    automations(first: ${first}) { edges { node { name
      triggeredRuns(first: ${runs}) { edges { node { id status } } } } } } } }`;
  const withVariables = (defaults: string) =>
    `query($a: Int${defaults ? ' = 50' : ''}, $r: Int${defaults ? ' = 20' : ''}) ${AUTOMATION_RUNS('$a', '$r')}`;
  const COSTLY_SUBSCRIPTION = `subscription($n: Int) { triggeredRunUpdated { event {
    triggeredRuns(first: $n) { edges { node { event {
      triggeredRuns(first: $n) { edges { node { id } } } } } } } } } }`;

  it('refuses the same operation with literals, with variables and with variable defaults, and runs small pages', async () => {
    const a = await app();
    const literal = await a.gql(AUTOMATION_RUNS('50', '20'));
    const variables = await a.gql(withVariables(''), { a: 50, r: 20 });
    const defaults = await a.gql(withVariables('defaults'));
    for (const res of [literal, variables, defaults]) {
      expect(res.status).toBe(400);
      expectRefused(res, 'QUERY_TOO_COMPLEX', 50_000);
      expect(res.errors?.[0]?.message).toMatch(
        /^The query cost exceeds the limit of 50000 \(found \d+\) set by TRIPLINE_MAX_QUERY_COST\./,
      );
    }
    // One measure, whichever way the sizes are given.
    const found = literal.errors?.[0]?.extensions?.found;
    expect(found).toBe(83_234);
    expect(variables.errors?.[0]?.extensions?.found).toBe(found);
    expect(defaults.errors?.[0]?.extensions?.found).toBe(found);

    // Small pages given as variables run; a variable overrides its default.
    const small = await a.gql(withVariables(''), { a: 2, r: 2 });
    expect(small.errors).toBeUndefined();
    expect(small.data.entity.automations.edges).toEqual([]);
    expect((await a.gql(withVariables('defaults'), { a: 2, r: 2 })).errors).toBeUndefined();
  });

  it('counts a paged field without first or last as the 20 results it serves, and at most 100', async () => {
    const a = await app({ TRIPLINE_MAX_QUERY_COST: '1000' });
    const found = async (query: string, variables?: Record<string, unknown>) => {
      const res = await a.gql(query, variables);
      expectRefused(res, 'QUERY_TOO_COMPLEX', 1000);
      return res.errors?.[0]?.extensions?.found;
    };
    const unsized = await found(
      AUTOMATION_RUNS('50', '20').replace('(first: 50)', '').replace('(first: 20)', ''),
    );
    expect(unsized).toBe(await found(AUTOMATION_RUNS('20', '20')));
    // A page larger than the server serves counts as the 100 it serves.
    expect(await found(withVariables(''), { a: 1_000_000, r: 20 })).toBe(
      await found(AUTOMATION_RUNS('100', '20')),
    );
  });

  it('refuses a costly mutation before it runs or spends a rate-limit token', async () => {
    const a = await app({ TRIPLINE_RATE_LIMIT_MUTATIONS_PER_MINUTE: '1' });
    const costly = `mutation($n: Int) { createProject(input: { entity: "default", name: "p" }) {
      ... on CreateProjectPayload { project { triggeredRuns(first: $n) { edges { node { event {
        triggeredRuns(first: $n) { edges { node { id } } } } } } } } } } }`;
    expectRefused(await a.gql(costly, { n: 100 }), 'QUERY_TOO_COMPLEX', 50_000);
    expect(await projectCount(a)).toBe(0);
    const cheap = await a.gql(costly, { n: 1 });
    expect(cheap.errors).toBeUndefined();
    expect(await projectCount(a)).toBe(1);
  });

  it('refuses a costly operation with variables over graphql-ws and server-sent events', async () => {
    const a = await app();
    const url = await a.listen();
    const client = createClient({
      url: url.replace('http', 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${a.adminKey}` },
      retryAttempts: 0,
    });
    clients.push(client);
    const run = (query: string, variables: Record<string, unknown>) =>
      new Promise<{ data?: unknown; errors?: unknown[] }>((resolve) => {
        client.subscribe(
          { query, variables },
          {
            next: (value) => resolve(value as { data?: unknown }),
            error: (errors) => resolve({ errors: errors as unknown[] }),
            complete: () => {},
          },
        );
      });
    const query = await run(withVariables(''), { a: 50, r: 20 });
    expect(query.errors?.[0]).toMatchObject({
      extensions: { code: 'QUERY_TOO_COMPLEX', limit: 50_000, found: 83_234 },
    });
    const subscription = await run(COSTLY_SUBSCRIPTION, { n: 100 });
    expect(subscription.errors?.[0]).toMatchObject({
      extensions: { code: 'QUERY_TOO_COMPLEX', limit: 50_000 },
    });
    expect(await run(withVariables(''), { a: 2, r: 2 })).toEqual({
      data: { entity: { automations: { edges: [] } } },
    });

    const sse = await fetch(
      `${url}?query=${encodeURIComponent(COSTLY_SUBSCRIPTION)}&variables=${encodeURIComponent('{"n":100}')}`,
      { headers: { accept: 'text/event-stream', authorization: `Bearer ${a.adminKey}` } },
    );
    const text = await sse.text();
    expect(text).toContain('"code":"QUERY_TOO_COMPLEX"');
    expect(text).not.toContain('"triggeredRunUpdated"');
  });
});

describe('batched requests', () => {
  const batch = (n: number) =>
    JSON.stringify(
      Array.from({ length: n }, (_, i) => ({
        query: CREATE_PROJECT,
        variables: { i: { entity: 'default', name: `b${i}` } },
      })),
    );

  it('runs up to TRIPLINE_MAX_BATCH_OPERATIONS (default 10) operations and refuses a larger batch whole', async () => {
    const a = await app();
    const over = await post(a, batch(11));
    expect(over.status).toBe(400);
    expectRefused(over, 'BATCH_TOO_LARGE', 10);
    expect(over.errors?.[0]?.message).toMatch(/11 operations.*limit of 10/);
    expect(await projectCount(a)).toBe(0);

    const response = await a.app.yoga.fetch('http://localhost/graphql', {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/graphql-response+json',
        authorization: `Bearer ${a.adminKey}`,
      },
      body: batch(10),
    });
    expect(response.status).toBe(200);
    const results = (await response.json()) as GraphQLResponse[];
    expect(results.map((r) => r.data.createProject.__typename)).toEqual(
      Array(10).fill('CreateProjectPayload'),
    );
    expect(await projectCount(a)).toBe(10);
  });

  it('refuses every batch when TRIPLINE_MAX_BATCH_OPERATIONS is 0', async () => {
    const a = await app({ TRIPLINE_MAX_BATCH_OPERATIONS: '0' });
    const res = await post(a, batch(1));
    expect(res.status).toBe(400);
    expectRefused(res, 'BATCH_TOO_LARGE', 0);
    expect(res.errors?.[0]?.message).toMatch(/turned off/);
    expect(await projectCount(a)).toBe(0);
  });
});

describe('introspection', () => {
  it('is refused with TRIPLINE_INTROSPECTION=false, while __typename and GraphiQL still work', async () => {
    const a = await app({ TRIPLINE_INTROSPECTION: 'false' });
    for (const query of [
      getIntrospectionQuery(),
      '{ __type(name: "Query") { name } }',
      '{ viewer { user { name } } __schema { queryType { name } } }',
    ]) {
      const res = await a.gql(query);
      expect(res.status).toBe(400);
      expect(res.data ?? null).toBeNull();
      expect(res.errors?.[0]?.extensions?.code).toBe('INTROSPECTION_DISABLED');
      expect(res.errors?.[0]?.message).toMatch(/TRIPLINE_INTROSPECTION=false/);
    }
    expect((await a.gql('{ __typename viewer { __typename } }')).data).toEqual({
      __typename: 'Query',
      viewer: { __typename: 'Viewer' },
    });
    // Suggestions would name fields the schema hides.
    const typo = await a.gql('{ viewr { user { name } } }');
    expect(typo.errors?.[0]?.message).not.toContain('viewer');

    const page = await a.app.yoga.fetch('http://localhost/graphql', {
      headers: { accept: 'text/html' },
    });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('GraphiQL');
  });

  it('is available by default, with suggestions', async () => {
    const a = await app();
    expect((await a.gql('{ __type(name: "Query") { name } }')).data.__type.name).toBe('Query');
    const typo = await a.gql('{ viewr { user { name } } }');
    expect(typo.errors?.[0]?.message).toContain('Did you mean "viewer"?');
  });
});

describe('field input limits answer a typed error and store nothing', () => {
  it('names: 64 characters', async () => {
    const a = await app();
    const project = (name: string) =>
      a.gql(CREATE_PROJECT, { i: { entity: 'default', name } }).then((r) => r.data.createProject);
    expect(await project('p'.repeat(65))).toMatchObject({
      __typename: 'ValidationError',
      field: 'input.name',
      message: expect.stringMatching(/1 to 64/),
    });
    expect(await projectCount(a)).toBe(0);
    expect((await project('p'.repeat(64))).__typename).toBe('CreateProjectPayload');

    const action = (name: string) =>
      a
        .gql(
          `mutation($i: CreateWebhookActionInput!) { createWebhookAction(input: $i) {
          __typename ... on Error { message ... on ValidationError { field } } } }`,
          { i: { entity: 'default', name, url: 'https://example.com/hook' } },
        )
        .then((r) => r.data.createWebhookAction);
    expect(await action('a'.repeat(65))).toMatchObject({
      __typename: 'ValidationError',
      field: 'input.name',
      message: expect.stringMatching(/1 to 64/),
    });
    const actions = await a.gql('{ entity(name: "default") { actions { totalCount } } }');
    expect(actions.data.entity.actions.totalCount).toBe(0);
    expect((await action('a'.repeat(64))).__typename).toBe('CreateWebhookActionPayload');
  });

  const CREATE_AUTOMATION = `mutation($i: CreateAutomationInput!) { createAutomation(input: $i) {
    __typename ... on Error { message ... on ValidationError { field } } } }`;
  const automationCount = async (a: TestApp): Promise<number> =>
    (await a.gql('{ entity(name: "default") { automations { totalCount } } }')).data.entity
      .automations.totalCount;

  it('payload templates: 64 KiB', async () => {
    const a = await app();
    await createProject(a, 'p');
    const { id: actionId } = await createWebhookAction(a, {
      name: 'hook',
      url: 'https://example.com/hook',
    });
    // `{"a":""}` is 8 bytes.
    const template = (bytes: number) => JSON.stringify({ a: 'x'.repeat(bytes - 8) });
    const create = (name: string, payloadTemplate: string) =>
      a
        .gql(CREATE_AUTOMATION, {
          i: {
            entity: 'default',
            name,
            eventType: 'CREATE_ARTIFACT',
            scope: { project: 'p' },
            action: { actionId, payloadTemplate },
          },
        })
        .then((r) => r.data.createAutomation);
    expect(await create('big', template(65_537))).toMatchObject({
      __typename: 'ValidationError',
      field: 'input.action.payloadTemplate',
      message: 'The template is 65537 bytes; the limit is 65536 bytes',
    });
    expect(await automationCount(a)).toBe(0);
    expect((await create('fits', template(65_536))).__typename).toBe('CreateAutomationPayload');
  });

  it('alias patterns: 256 characters', async () => {
    const a = await app();
    await createProject(a, 'p');
    const { id: actionId } = await createWebhookAction(a, {
      name: 'hook',
      url: 'https://example.com/hook',
    });
    const create = (name: string, aliasPattern: string) =>
      a
        .gql(CREATE_AUTOMATION, {
          i: {
            entity: 'default',
            name,
            eventType: 'ADD_ARTIFACT_ALIAS',
            scope: { project: 'p' },
            filter: { aliasPattern },
            action: { actionId },
          },
        })
        .then((r) => r.data.createAutomation);
    expect(await create('long', 'a'.repeat(257))).toMatchObject({
      __typename: 'ValidationError',
      field: 'input.filter.aliasPattern',
      message: expect.stringMatching(/257 characters; the limit is 256/),
    });
    expect(await automationCount(a)).toBe(0);
    expect((await create('fits', 'a'.repeat(256))).__typename).toBe('CreateAutomationPayload');
  });

  it('event metadata: 64 KiB of JSON', async () => {
    const a = await app();
    await createProject(a, 'p');
    // `{"blob":""}` is 11 bytes.
    const metadata = (bytes: number) => ({ blob: 'x'.repeat(bytes - 11) });
    const res = await a.gql(
      `mutation($i: EmitArtifactEventInput!) { emitArtifactEvent(input: $i) {
        __typename ... on Error { message ... on ValidationError { field } } } }`,
      {
        i: {
          entity: 'default',
          eventType: 'CREATE_ARTIFACT',
          owner: { project: 'p' },
          collection: 'm',
          artifactType: 'model',
          versionIndex: 0,
          metadata: metadata(65_537),
        },
      },
    );
    expect(res.data.emitArtifactEvent).toEqual({
      __typename: 'ValidationError',
      field: 'input.metadata',
      message: 'Metadata is 65537 bytes; keep it to 65536 bytes of JSON.',
    });
    const events = await a.gql('{ entity(name: "default") { events { totalCount } } }');
    expect(events.data.entity.events.totalCount).toBe(0);
    expect((await emit(a, { metadata: metadata(65_536) })).__typename).toBe(
      'EmitArtifactEventPayload',
    );
  });
});
