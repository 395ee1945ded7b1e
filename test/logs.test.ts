import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from './support/app.js';
import { createAutomation, createProject, createWebhookAction, emit } from './support/fixtures.js';
import { killServer, type ServerProcess, startServer } from './support/process.js';
import { type Receiver, startReceiver } from './support/receiver.js';

type Line = Record<string, unknown>;

const lines = (t: TestApp): Line[] => t.logLines.map((line) => JSON.parse(line) as Line);
const accessLines = (t: TestApp): Line[] => lines(t).filter((line) => line.msg === 'request');

async function post(
  t: TestApp,
  query: string,
  headers: Record<string, string> = {},
): Promise<Response> {
  return t.app.yoga.fetch('http://localhost/graphql', {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/graphql-response+json',
      authorization: `Bearer ${t.adminKey}`,
      ...headers,
    },
    body: JSON.stringify({ query }),
  });
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let t: TestApp | undefined;
let receiver: Receiver | undefined;
const servers: ServerProcess[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) killServer(server);
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  await receiver?.close();
  receiver = undefined;
  await t?.close();
  t = undefined;
});

describe('access lines and request ids', () => {
  it('writes one line per request with its request id, operation, status and duration', async () => {
    t = await createTestApp();
    const given = await post(t, 'query Hello { __typename }', { 'x-request-id': 'proxy-id-42' });
    expect(given.headers.get('x-request-id')).toBe('proxy-id-42');
    const generated = await post(
      t,
      'mutation Make { createProject(input: { entity: "default", name: "p" }) { __typename } }',
    );
    const generatedId = generated.headers.get('x-request-id');
    expect(generatedId).toMatch(UUID);

    const access = accessLines(t);
    expect(access).toHaveLength(2);
    expect(access[0]).toMatchObject({
      level: 'info',
      requestId: 'proxy-id-42',
      method: 'POST',
      path: '/graphql',
      operationName: 'Hello',
      operationType: 'query',
      status: 200,
    });
    expect(access[0]?.durationMs).toEqual(expect.any(Number));
    expect(access[1]).toMatchObject({
      requestId: generatedId,
      operationName: 'Make',
      operationType: 'mutation',
      status: 200,
    });
    // Levels are names on every line.
    for (const line of lines(t)) expect(typeof line.level, JSON.stringify(line)).toBe('string');
  });

  it('puts the request id in the extensions of every GraphQL error, and in the access line with the error codes', async () => {
    t = await createTestApp();
    const refused = await t.app.yoga.fetch('http://localhost/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'abc.123' },
      body: JSON.stringify({ query: '{ __typename }' }),
    });
    expect(refused.status).toBe(401);
    expect(refused.headers.get('x-request-id')).toBe('abc.123');
    expect(((await refused.json()) as { errors: unknown[] }).errors).toEqual([
      expect.objectContaining({
        extensions: { code: 'UNAUTHENTICATED', requestId: 'abc.123' },
      }),
    ]);

    const partial = await post(
      t,
      '{ a: entity(name: "default") { projects(first: -1) { totalCount } } b: entity(name: "default") { projects(last: -1) { totalCount } } }',
    );
    const id = partial.headers.get('x-request-id');
    const body = (await partial.json()) as { errors: { extensions: Record<string, unknown> }[] };
    expect(body.errors).toHaveLength(2);
    for (const error of body.errors) expect(error.extensions.requestId).toBe(id);
    expect(accessLines(t).at(-1)).toMatchObject({
      requestId: id,
      errorCodes: ['INVALID_PAGE_SIZE', 'INVALID_PAGE_SIZE'],
    });
  });

  it('replaces an x-request-id that is not printable ASCII or is too long', async () => {
    t = await createTestApp();
    for (const bad of ['has space', 'x'.repeat(201), 'naïve']) {
      const response = await post(t, '{ __typename }', { 'x-request-id': bad });
      expect(response.headers.get('x-request-id')).toMatch(UUID);
    }
  });

  it('logs probes and /metrics at debug, with their request id too', async () => {
    t = await createTestApp();
    const health = await t.app.yoga.fetch('http://localhost/healthz', {
      headers: { 'x-request-id': 'probe-1' },
    });
    expect(health.headers.get('x-request-id')).toBe('probe-1');
    await t.app.yoga.fetch('http://localhost/metrics');
    expect(accessLines(t)).toMatchObject([
      { level: 'debug', requestId: 'probe-1', path: '/healthz', status: 200 },
      { level: 'debug', path: '/metrics', status: 200 },
    ]);
  });
});

describe('delivery log lines', () => {
  it('carry the run id as the API and webhook-id show it', async () => {
    t = await createTestApp({ env: { TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1' } });
    receiver = await startReceiver();
    await createProject(t, 'p');
    const hook = await createWebhookAction(t, { name: 'hook', url: `${receiver.url}/hook` });
    await createAutomation(t, {
      name: 'a',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId: hook.id,
    });
    const runId = (await emit(t)).triggeredRuns[0].id as string;
    await t.app.engine.drain();
    expect(receiver.requests[0]?.headers['webhook-id']).toBe(runId);
    const delivered = lines(t).filter((line) => line.component === 'delivery');
    expect(delivered).toEqual([
      expect.objectContaining({ level: 'info', runId, attemptNumber: 1, status: 'SUCCEEDED' }),
    ]);
  });
});

describe('the server process', () => {
  it('writes JSON lines only to stdout; the banner and the admin key go to stderr', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tripline-logs-'));
    dirs.push(dir);
    const server = startServer({ TRIPLINE_DATA_DIR: dir, LOG_LEVEL: 'debug' });
    servers.push(server);
    const url = await server.url;
    const key = /^\s+(tl_\S+)$/m.exec(server.output())?.[1] as string;
    expect(key).toBeDefined();
    const response = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${key}`,
        'x-request-id': 'from-the-test',
      },
      body: JSON.stringify({ query: 'query Hello { __typename }' }),
    });
    expect(response.status).toBe(200);
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    await server.outputClosed;

    const stdout = server.stdout().split('\n').filter(Boolean);
    const parsed = stdout.map((line) => JSON.parse(line) as Line);
    expect(parsed.map((line) => line.msg)).toEqual(
      expect.arrayContaining(['Tripline is listening', 'request', 'stopped']),
    );
    expect(parsed.find((line) => line.msg === 'request')).toMatchObject({
      level: 'info',
      requestId: 'from-the-test',
      operationName: 'Hello',
      status: 200,
    });
    expect(server.stdout()).not.toContain(key);
    expect(server.stdout()).not.toContain('Tripline is running');
    expect(server.stderr()).toContain('Tripline is running');
    expect(server.stderr()).toContain(key);
  }, 90_000);
});
