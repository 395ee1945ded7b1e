import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type ServerProcess, startServer } from './support/process.js';
import { type Receiver, startReceiver } from './support/receiver.js';

const KEY = 'tl_crash-test-admin-key';
const started: ServerProcess[] = [];
let receiver: Receiver | undefined;
let dir: string | undefined;

afterEach(async () => {
  for (const s of started.splice(0)) s.child.kill('SIGKILL');
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

function server(dataDir: string): ServerProcess {
  const s = startServer({
    TRIPLINE_DATA_DIR: dataDir,
    TRIPLINE_ADMIN_API_KEY: KEY,
    TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1',
    TRIPLINE_DELIVERY_LEASE_MS: '1000',
    TRIPLINE_DELIVERY_POLL_MS: '50',
    TRIPLINE_DELIVERY_TIMEOUT_MS: '5000',
  });
  started.push(s);
  return s;
}

describe('crash safety', () => {
  it('delivers every run at least once after SIGKILL mid-delivery and a restart', async () => {
    dir = mkdtempSync(join(tmpdir(), 'tripline-crash-'));
    const dataDir = join(dir, 'data');
    // Until the crash, the receiver holds every request open: deliveries are in flight.
    receiver = await startReceiver(() => ({ hang: true }));
    const first = server(dataDir);
    const url = await first.url;

    await gql(
      url,
      'mutation { createProject(input: { entity: "default", name: "p" }) { __typename } }',
    );
    const action = await gql(
      url,
      `mutation($url: String!) { createWebhookAction(input: { entity: "default", name: "slow", url: $url }) {
        __typename ... on CreatedWebhookAction { action { id } } } }`,
      { url: `${receiver.url}/hook` },
    );
    const actionId = (action.createWebhookAction as { action: { id: string } }).action.id;
    const automation = await gql(
      url,
      `mutation($a: ID!) { createAutomation(input: { entity: "default", name: "on-create", eventType: CREATE_ARTIFACT,
        scope: { type: PROJECT, project: "p" }, action: { actionId: $a } }) { __typename } }`,
      { a: actionId },
    );
    expect(automation.createAutomation?.__typename).toBe('Automation');

    const runIds: string[] = [];
    for (let version = 0; version < 3; version += 1) {
      const emitted = await gql(
        url,
        `mutation($v: Int!) { emitArtifactEvent(input: { entity: "default", eventType: CREATE_ARTIFACT, project: "p",
          collection: "m", artifactType: "model", versionIndex: $v }) {
          ... on EmittedArtifactEvent { triggeredRuns { id } } } }`,
        { v: version },
      );
      runIds.push(
        ...(emitted.emitArtifactEvent as { triggeredRuns: { id: string }[] }).triggeredRuns.map(
          (r) => r.id,
        ),
      );
    }
    expect(runIds).toHaveLength(3);
    await receiver.waitForRequests(3);

    first.child.kill('SIGKILL');
    await first.exited;
    receiver.respond(() => ({ status: 200, body: 'ok' }));

    const second = server(dataDir);
    const url2 = await second.url;
    const query = `{ entity(name: "default") { triggeredRuns(first: 100) { edges { node { id status attempts { statusCode } } } } } }`;
    let statuses: string[] = [];
    // Polls the real process; each run must finish once its lease from the killed process lapses.
    for (let i = 0; i < 200; i += 1) {
      const data = await gql(url2, query);
      const edges = (
        data.entity as unknown as { triggeredRuns: { edges: { node: { status: string } }[] } }
      ).triggeredRuns.edges;
      statuses = edges.map((e) => e.node.status);
      if (statuses.length === 3 && statuses.every((s) => s === 'SUCCEEDED')) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(statuses).toEqual(['SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED']);

    const delivered = new Set(
      receiver.requests
        .filter((r) => r.headers['webhook-id'])
        .map((r) => String(r.headers['webhook-id'])),
    );
    for (const id of runIds) {
      const stored = Buffer.from(id, 'base64').toString().split(':')[1];
      expect(delivered.has(String(stored))).toBe(true);
    }
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 60_000);
});
