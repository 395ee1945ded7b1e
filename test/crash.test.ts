import { mkdtempSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  isRunning,
  killServer,
  type ServerProcess,
  type StartOptions,
  startServer,
} from './support/process.js';
import { type Receiver, type ReceiverResponse, startReceiver } from './support/receiver.js';

const KEY = 'tl_crash-test-admin-key';
const started: ServerProcess[] = [];
let receiver: Receiver | undefined;
let dir: string | undefined;

afterEach(async () => {
  for (const s of started.splice(0)) killServer(s);
  await receiver?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function gql(url: string, query: string, variables: Record<string, unknown> = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as {
    data?: Record<string, { __typename?: string } & Record<string, unknown>>;
    errors?: unknown;
  };
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data!;
}

function server(
  dataDir: string,
  env: Record<string, string> = {},
  options: StartOptions = {},
): ServerProcess {
  const s = startServer(
    {
      TRIPLINE_DATA_DIR: dataDir,
      TRIPLINE_ADMIN_API_KEY: KEY,
      TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1',
      // A short lease, so a killed server's runs are taken again soon; it must exceed the
      // deadline of an attempt plus a second.
      TRIPLINE_DELIVERY_LEASE_MS: '2000',
      TRIPLINE_DELIVERY_POLL_MS: '50',
      TRIPLINE_DELIVERY_TIMEOUT_MS: '900',
      ...env,
    },
    options,
  );
  started.push(s);
  return s;
}

/** Creates project `p`, a webhook action to the receiver and an automation, then emits `events` events; returns the run ids. */
async function setUp(url: string, receiverUrl: string, events: number): Promise<string[]> {
  await gql(
    url,
    'mutation { createProject(input: { entity: "default", name: "p" }) { __typename } }',
  );
  const action = await gql(
    url,
    `mutation($url: String!) { createWebhookAction(input: { entity: "default", name: "slow", url: $url }) {
      __typename ... on CreateWebhookActionPayload { action { id } } } }`,
    { url: `${receiverUrl}/hook` },
  );
  const actionId = (action.createWebhookAction as { action: { id: string } }).action.id;
  const automation = await gql(
    url,
    `mutation($a: ID!) { createAutomation(input: { entity: "default", name: "on-create", eventType: CREATE_ARTIFACT,
      scope: { project: "p" }, action: { actionId: $a } }) { __typename } }`,
    { a: actionId },
  );
  expect(automation.createAutomation?.__typename).toBe('CreateAutomationPayload');
  const runIds: string[] = [];
  for (let version = 0; version < events; version += 1) {
    const emitted = await gql(
      url,
      `mutation($v: Int!) { emitArtifactEvent(input: { entity: "default", eventType: CREATE_ARTIFACT, owner: { project: "p" },
        collection: "m", artifactType: "model", versionIndex: $v }) {
        ... on EmitArtifactEventPayload { triggeredRuns { id } } } }`,
      { v: version },
    );
    const runs = (emitted.emitArtifactEvent as { triggeredRuns: { id: string }[] }).triggeredRuns;
    runIds.push(...runs.map((r) => r.id));
  }
  return runIds;
}

interface RunView {
  status: string;
  attemptCount: number;
  result: string;
  attempts: { attemptNumber: number; errorClass: string | null; durationMs: number | null }[];
}

/**
 * Polls the real process until `count` runs exist and all have finished (or 20 s pass);
 * returns them. Runs held by a killed process finish once its lease lapses.
 */
async function finishedRuns(url: string, count: number): Promise<RunView[]> {
  const query = `{ entity(name: "default") { triggeredRuns(first: 100) { edges { node {
    status attemptCount result attempts { attemptNumber errorClass durationMs } } } } } }`;
  let runs: RunView[] = [];
  for (let i = 0; i < 200; i += 1) {
    const data = await gql(url, query);
    const edges = (data.entity as unknown as { triggeredRuns: { edges: { node: RunView }[] } })
      .triggeredRuns.edges;
    runs = edges.map((e) => e.node);
    if (runs.length === count && runs.every((r) => ['SUCCEEDED', 'FAILED'].includes(r.status)))
      break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return runs;
}

/** The statuses of {@link finishedRuns}. */
async function waitForRuns(url: string, count: number): Promise<string[]> {
  return (await finishedRuns(url, count)).map((run) => run.status);
}

/** Status of `GET /readyz` over a new connection: the listener itself must accept it. */
function readyz(graphqlUrl: string): Promise<number> {
  return new Promise((resolve, reject) => {
    get(graphqlUrl.replace('/graphql', '/readyz'), { agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', reject);
  });
}

describe('crash safety', () => {
  it('delivers every run at least once after SIGKILL mid-delivery and a restart', async () => {
    dir = mkdtempSync(join(tmpdir(), 'tripline-crash-'));
    const dataDir = join(dir, 'data');
    // Until the crash, the receiver holds every request open: deliveries are in flight.
    receiver = await startReceiver(() => ({ hang: true }));
    const first = server(dataDir);
    const url = await first.url;

    const runIds = await setUp(url, receiver.url, 3);
    expect(runIds).toHaveLength(3);
    await receiver.waitForRequests(3);

    first.child.kill('SIGKILL');
    await first.exited;
    receiver.respond(() => ({ status: 200, body: 'ok' }));

    const second = server(dataDir);
    const url2 = await second.url;
    expect(await waitForRuns(url2, 3)).toEqual(['SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED']);

    const delivered = new Set(
      receiver.requests
        .filter((r) => r.headers['webhook-id'])
        .map((r) => String(r.headers['webhook-id'])),
    );
    for (const id of runIds) expect(delivered.has(id)).toBe(true);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 60_000);

  it('counts an attempt that kills the server every time, shows it as interrupted, and fails the run after the configured attempts', async () => {
    dir = mkdtempSync(join(tmpdir(), 'tripline-kill-'));
    const dataDir = join(dir, 'data');
    const env = { TRIPLINE_RETRY_MAX_ATTEMPTS: '3' };
    let current = server(dataDir, env);
    // The receiver stands in for a payload that crashes the server: every request kills it.
    receiver = await startReceiver(() => {
      current.child.kill('SIGKILL');
      return { hang: true };
    });
    await setUp(await current.url, receiver.url, 1);
    for (let attempt = 1; attempt <= 3; attempt += 1) {
      await receiver.waitForRequests(attempt);
      await current.exited;
      current = server(dataDir, env);
    }

    const [run] = await finishedRuns(await current.url, 1);
    expect(run).toMatchObject({ status: 'FAILED', attemptCount: 3 });
    expect(run?.result).toMatch(/^Interrupted: .*gave up after 3 attempts$/);
    expect(run?.attempts).toEqual(
      [1, 2, 3].map((attemptNumber) => ({
        attemptNumber,
        errorClass: 'INTERRUPTED',
        durationMs: null,
      })),
    );
    // The last start gave up without trying a fourth time.
    expect(receiver.requests).toHaveLength(3);
    current.child.kill('SIGTERM');
    expect(await current.exited).toBe(0);
  }, 60_000);

  it('on SIGTERM releases a hanging delivery within the grace period, and the next start delivers it', async () => {
    dir = mkdtempSync(join(tmpdir(), 'tripline-term-'));
    const dataDir = join(dir, 'data');
    receiver = await startReceiver(() => ({ hang: true }));
    const first = server(dataDir, { TRIPLINE_SHUTDOWN_GRACE_MS: '300' });
    const url = await first.url;
    const runIds = await setUp(url, receiver.url, 1);
    await receiver.waitForRequests(1);

    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    receiver.respond(() => ({ status: 200, body: 'ok' }));

    const second = server(dataDir);
    const url2 = await second.url;
    expect(await waitForRuns(url2, 1)).toEqual(['SUCCEEDED']);
    const ids = receiver.requests.map((r) => String(r.headers['webhook-id']));
    expect(new Set(ids)).toEqual(new Set([runIds[0]]));
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 60_000);

  it('under npm start, /readyz answers 503 from SIGTERM while a delivery drains, on new connections, until it finishes', async () => {
    dir = mkdtempSync(join(tmpdir(), 'tripline-drain-'));
    let release: (response: ReceiverResponse) => void = () => {};
    const held = new Promise<ReceiverResponse>((resolve) => {
      release = resolve;
    });
    receiver = await startReceiver(() => held);
    const first = server(
      join(dir, 'data'),
      { TRIPLINE_SHUTDOWN_GRACE_MS: '60000', LOG_LEVEL: 'info' },
      { via: 'npm' },
    );
    const url = await first.url;
    await setUp(url, receiver.url, 1);
    await receiver.waitForRequests(1);
    expect(await readyz(url)).toBe(200);

    first.child.kill('SIGTERM');
    // The signal is handled asynchronously; until then /readyz may still answer 200.
    let status = 200;
    for (let i = 0; i < 100 && status === 200; i += 1) {
      status = await readyz(url);
      if (status === 200) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(status).toBe(503);
    expect(await readyz(url)).toBe(503);
    expect(isRunning(await first.listeningPid)).toBe(true);

    release({ status: 200, body: 'ok' });
    expect(await first.exited).toBe(0);
    await first.outputClosed;
    expect(first.output()).toContain('"msg":"stopped"');
    await expect(readyz(url)).rejects.toThrow(/ECONNREFUSED/);
    expect(receiver.requests).toHaveLength(1);
  }, 60_000);
});
