// biome-ignore-all lint/suspicious/noTemplateCurlyInString: templates hold ${…} references as text.
import { type Client, createClient } from 'graphql-ws';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createTestApp, type GraphQLResponse, type TestApp } from './support/app.js';
import { createProject, createWebhookAction } from './support/fixtures.js';

/*
 * JSON inputs nest objects and arrays at most 32 levels; deeper ones are a ValidationError naming
 * the field, never a crash. Deep values are written as text: JSON.stringify of 5,000 levels
 * overflows the test's own stack, which is the bug the server had.
 */

const LIMIT = 32;
const DEEP = 5_000;

let t: TestApp | undefined;
const clients: Client[] = [];
afterEach(async () => {
  for (const client of clients.splice(0)) await client.dispose();
  await t?.close();
  t = undefined;
});

async function app(env: Record<string, string> = {}): Promise<TestApp> {
  t = await createTestApp({ env });
  await createProject(t, 'p');
  return t;
}

/** JSON text of an object nested `levels` deep: `{"a":{"a":…{}}}`. */
const nestedJson = (levels: number): string =>
  `${'{"a":'.repeat(levels - 1)}{}${'}'.repeat(levels - 1)}`;

/** A GraphQL literal nested `levels` deep: `{a: {a: … {}}}`. */
const nestedLiteral = (levels: number): string =>
  `${'{a: '.repeat(levels - 1)}{}${'}'.repeat(levels - 1)}`;

/** A payload template nested `levels` deep, with a variable at the bottom. */
const nestedTemplate = (levels: number): string =>
  `${'{"a":'.repeat(levels)}"\${event_type}"${'}'.repeat(levels)}`;

/** POSTs a request whose variables are given as JSON text, as the admin. */
async function postRaw(app: TestApp, query: string, variablesJson: string) {
  const response = await app.app.yoga.fetch('http://localhost/graphql', {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/graphql-response+json',
      authorization: `Bearer ${app.adminKey}`,
    },
    body: `{"query":${JSON.stringify(query)},"variables":${variablesJson}}`,
  });
  return { status: response.status, ...((await response.json()) as object) } as GraphQLResponse;
}

const RESULT = '{ __typename ... on Error { message ... on ValidationError { field } } }';
const EMIT_WITH = (metadata: string) => `mutation { emitArtifactEvent(input: {
  entity: "default", eventType: CREATE_ARTIFACT, owner: { project: "p" }, collection: "c",
  artifactType: "model", versionIndex: 1, metadata: ${metadata} }) ${RESULT} }`;
const EMIT = `mutation($v: EmitArtifactEventInput!) { emitArtifactEvent(input: $v) ${RESULT} }`;
const EMIT_INPUT =
  '"entity":"default","eventType":"CREATE_ARTIFACT","owner":{"project":"p"},"collection":"c","artifactType":"model","versionIndex":1';

const eventCount = async (app: TestApp): Promise<number> =>
  (await app.gql('{ entity(name: "default") { events { totalCount } } }')).data.entity.events
    .totalCount;

function expectTooDeep(result: unknown, field: string): void {
  expect(result).toMatchObject({ __typename: 'ValidationError', field });
  expect((result as { message: string }).message).toContain(`${LIMIT} levels`);
}

const overflowed = (app: TestApp) => app.logLines.some((l) => l.includes('call stack'));

describe('event metadata', () => {
  it(`refuses metadata nested ${DEEP} levels, sent as a variable, with a ValidationError`, async () => {
    const a = await app();
    const metadata = nestedJson(DEEP);
    expect(metadata.length).toBeLessThan(64 * 1024);
    const res = await postRaw(a, EMIT, `{"v":{${EMIT_INPUT},"metadata":${metadata}}}`);
    expect(res.status).toBe(200);
    expect(res.errors).toBeUndefined();
    expectTooDeep(res.data.emitArtifactEvent, 'input.metadata');
    expect(await eventCount(a)).toBe(0);
    expect(overflowed(a)).toBe(false);
  });

  it(`takes ${LIMIT} levels and refuses ${LIMIT + 1}, as a variable and as a literal`, async () => {
    const a = await app();
    const ok = await postRaw(a, EMIT, `{"v":{${EMIT_INPUT},"metadata":${nestedJson(LIMIT)}}}`);
    expect(ok.data.emitArtifactEvent.__typename).toBe('EmitArtifactEventPayload');
    const over = await postRaw(
      a,
      EMIT,
      `{"v":{${EMIT_INPUT},"metadata":${nestedJson(LIMIT + 1)}}}`,
    );
    expectTooDeep(over.data.emitArtifactEvent, 'input.metadata');

    const literal = await a.gql(EMIT_WITH(nestedLiteral(LIMIT)));
    expect(literal.data.emitArtifactEvent.__typename).toBe('EmitArtifactEventPayload');
    const deeper = await a.gql(EMIT_WITH(nestedLiteral(LIMIT + 1)));
    expect(deeper.errors).toBeUndefined();
    expectTooDeep(deeper.data.emitArtifactEvent, 'input.metadata');
    expect(await eventCount(a)).toBe(2);
  });

  it('stores metadata written as a literal in the document exactly as JSON would', async () => {
    const a = await app();
    // The README's example, plus lists, nulls, a variable inside and a key named __proto__.
    const res = await a.gql(
      `mutation($loss: Float) { emitArtifactEvent(input: {
        entity: "default", eventType: CREATE_ARTIFACT, owner: { project: "p" }, collection: "c",
        artifactType: "model", versionIndex: 1,
        metadata: { accuracy: 0.91, epochs: 3, tags: ["a", null, true], nested: { loss: $loss },
          __proto__: { polluted: true } } }) ${RESULT} }`,
      { loss: 0.25 },
    );
    expect(res.errors).toBeUndefined();
    expect(res.data.emitArtifactEvent.__typename).toBe('EmitArtifactEventPayload');
    const read = await a.gql(
      '{ entity(name: "default") { events { edges { node { metadata } } } } }',
    );
    const metadata = read.data.entity.events.edges[0].node.metadata;
    expect(JSON.stringify(metadata)).toBe(
      '{"accuracy":0.91,"epochs":3,"tags":["a",null,true],"nested":{"loss":0.25},"__proto__":{"polluted":true}}',
    );
  });
});

describe('deeply nested literals in the document', () => {
  it(`are refused before parsing, with QUERY_TOO_NESTED, whatever the token limit`, async () => {
    // graphql-js parses recursively: 2,000 brackets overflowed it within the default token limit.
    for (const [env, literal] of [
      [{}, `{a: ${'['.repeat(1_990)}`],
      [{ TRIPLINE_MAX_QUERY_TOKENS: '1000000' }, nestedLiteral(DEEP)],
    ] as const) {
      const a = await app(env);
      const res = await a.gql(EMIT_WITH(literal));
      expect(res.status).toBe(400);
      expect(res.errors?.[0]?.extensions).toMatchObject({ code: 'QUERY_TOO_NESTED', limit: 256 });
      expect(res.errors?.[0]?.message).toContain(`${LIMIT} levels`);
      expect(overflowed(a)).toBe(false);
      await a.close();
      t = undefined;
    }
  });

  it('are refused over graphql-ws too, and the connection stays usable', async () => {
    const a = await app({ TRIPLINE_MAX_QUERY_TOKENS: '1000000' });
    const url = await a.listen();
    const client = createClient({
      url: url.replace('http', 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${a.adminKey}` },
      retryAttempts: 0,
    });
    clients.push(client);
    const run = (query: string) =>
      new Promise<{ data?: Record<string, unknown>; errors?: { extensions?: unknown }[] }>(
        (resolve) => {
          client.subscribe(
            { query },
            {
              next: (value) => resolve(value as { data?: Record<string, unknown> }),
              error: (errors) => resolve({ errors: errors as { extensions?: unknown }[] }),
              complete: () => {},
            },
          );
        },
      );
    const deep = await run(EMIT_WITH(nestedLiteral(DEEP)));
    expect(deep.errors?.[0]?.extensions).toMatchObject({ code: 'QUERY_TOO_NESTED' });
    const over = await run(EMIT_WITH(nestedLiteral(LIMIT + 1)));
    expectTooDeep(over.data?.emitArtifactEvent, 'input.metadata');
  });
});

/** Sends one operation over a raw graphql-transport-ws socket, its variables given as JSON text. */
function overWebSocket(url: string, key: string, query: string, variablesJson: string) {
  return new Promise<GraphQLResponse>((resolve, reject) => {
    const socket = new WebSocket(url.replace('http', 'ws'), 'graphql-transport-ws');
    socket.on('error', reject);
    socket.on('close', (code) => reject(new Error(`closed with ${code}`)));
    socket.on('open', () =>
      socket.send(
        JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${key}` } }),
      ),
    );
    socket.on('message', (raw) => {
      const message = JSON.parse(String(raw));
      if (message.type === 'connection_ack') {
        socket.send(
          `{"id":"1","type":"subscribe","payload":{"query":${JSON.stringify(query)},"variables":${variablesJson}}}`,
        );
      } else if (message.type === 'next' || message.type === 'error') {
        socket.removeAllListeners('close');
        socket.close();
        resolve(message.type === 'next' ? message.payload : { status: 0, errors: message.payload });
      }
    });
  });
}

describe('event metadata over graphql-ws', () => {
  it(`refuses ${DEEP} levels as a ValidationError too`, async () => {
    const a = await app();
    const url = await a.listen();
    const res = await overWebSocket(
      url,
      a.adminKey,
      EMIT,
      `{"v":{${EMIT_INPUT},"metadata":${nestedJson(DEEP)}}}`,
    );
    expect(res.errors).toBeUndefined();
    expectTooDeep(res.data.emitArtifactEvent, 'input.metadata');
    expect(overflowed(a)).toBe(false);
  });
});

describe('webhook payload templates', () => {
  const AUTOMATION = `mutation($v: CreateAutomationInput!) { createAutomation(input: $v) ${RESULT} }`;
  const UPDATE = `mutation($v: UpdateAutomationInput!) { updateAutomation(input: $v) ${RESULT} }`;
  const TEST = `mutation($v: TestActionInput!) { testAction(input: $v) ${RESULT} }`;

  async function setUp() {
    const a = await app();
    const { id: actionId } = await createWebhookAction(a, {
      name: 'hook',
      url: 'https://hooks.example.com/x',
    });
    const automation = (payloadTemplate: string) => ({
      entity: 'default',
      name: 'deep',
      eventType: 'CREATE_ARTIFACT',
      scope: { project: 'p' },
      action: { actionId, payloadTemplate },
    });
    return { a, actionId, automation };
  }

  it(`refuses a template nested ${DEEP} levels when an automation is created or updated`, async () => {
    const { a, actionId, automation } = await setUp();
    const template = nestedTemplate(DEEP);
    expect(template.length).toBeLessThan(64 * 1024);
    const created = await a.gql(AUTOMATION, { v: automation(template) });
    expectTooDeep(created.data.createAutomation, 'input.action.payloadTemplate');

    const ok = await a.gql(AUTOMATION, { v: automation(nestedTemplate(LIMIT)) });
    expect(ok.data.createAutomation.__typename).toBe('CreateAutomationPayload');
    const id = (
      await a.gql('{ entity(name: "default") { automations { edges { node { id } } } } }')
    ).data.entity.automations.edges[0].node.id;
    const updated = await a.gql(UPDATE, {
      v: { id, action: { actionId, payloadTemplate: template } },
    });
    expectTooDeep(updated.data.updateAutomation, 'input.action.payloadTemplate');
    const over = await a.gql(UPDATE, {
      v: { id, action: { actionId, payloadTemplate: nestedTemplate(LIMIT + 1) } },
    });
    expectTooDeep(over.data.updateAutomation, 'input.action.payloadTemplate');
  });

  it(`refuses a template nested ${DEEP} levels in testAction`, async () => {
    const { a, actionId } = await setUp();
    const res = await a.gql(TEST, { v: { id: actionId, payloadTemplate: nestedTemplate(DEEP) } });
    expectTooDeep(res.data.testAction, 'input.payloadTemplate');
  });
});
