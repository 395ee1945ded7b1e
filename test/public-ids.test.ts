// biome-ignore-all lint/suspicious/noTemplateCurlyInString: templates hold ${…} references as text.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { newId } from '../src/ids.js';
import { createTestApp, fakeClock, type TestApp } from './support/app.js';
import {
  createAutomation,
  createProject,
  createWebhookAction,
  emit,
  mutate,
} from './support/fixtures.js';
import { type Receiver, startReceiver } from './support/receiver.js';

let t: TestApp;
let receiver: Receiver;
let actionId: string;

beforeEach(async () => {
  t = await createTestApp({
    clock: fakeClock(),
    env: { TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1' },
  });
  receiver = await startReceiver();
  await createProject(t, 'p');
  actionId = (await createWebhookAction(t, { name: 'hook', url: `${receiver.url}/hook` })).id;
});

afterEach(async () => {
  await receiver.close();
  await t.close();
});

const LOOKUP = `query($id: ID!) {
  triggeredRun(id: $id) { id status event { id } }
  node(id: $id) { __typename id ... on TriggeredRun { status } }
  nodes(ids: [$id]) { id }
}`;

describe('public ids', () => {
  it('lets a receiver look its delivery up by the webhook-id header', async () => {
    await createAutomation(t, {
      name: 'templated',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId,
      payloadTemplate: '{"event": "${event_id}"}',
    });
    const emitted = await emit(t);
    await t.app.engine.drain();
    const [request] = await receiver.waitForRequests(1);
    const header = String(request?.headers['webhook-id']);

    expect(header).toBe(emitted.triggeredRuns[0].id);
    expect(header).toMatch(/^run_[0-9a-f-]{36}$/);
    const res = await t.gql(LOOKUP, { id: header });
    expect(res.errors).toBeUndefined();
    expect(res.data).toEqual({
      triggeredRun: { id: header, status: 'SUCCEEDED', event: { id: emitted.event.id } },
      node: { __typename: 'TriggeredRun', id: header, status: 'SUCCEEDED' },
      nodes: [{ id: header }],
    });

    // `${event_id}` is the event's API id, which node(id:) finds.
    expect(request?.json()).toEqual({ event: emitted.event.id });
    expect(emitted.event.id).toMatch(/^evt_/);
    const event = await t.gql('query($id: ID!) { node(id: $id) { __typename id } }', {
      id: emitted.event.id,
    });
    expect(event.data.node).toEqual({ __typename: 'ArtifactEvent', id: emitted.event.id });
  });

  it('puts the API ids in the default envelope and keeps the webhook-id on re-delivery', async () => {
    await createAutomation(t, {
      name: 'plain',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId,
    });
    receiver.enqueue({ status: 400 });
    const emitted = await emit(t);
    const runId = emitted.triggeredRuns[0].id;
    await t.app.engine.drain();
    await mutate(t, 'mutation($id: ID!) { retryTriggeredRun(input: { id: $id }) { __typename } }', {
      id: runId,
    });
    await t.app.engine.drain();
    const requests = await receiver.waitForRequests(2);
    expect(requests.map((r) => r.headers['webhook-id'])).toEqual([runId, runId]);
    expect(requests[1]?.json()).toMatchObject({ event_id: emitted.event.id });
  });

  it('answers null, not an error, for a malformed id or one naming another type; mutations NotFoundError', async () => {
    const automationId = await createAutomation(t, {
      name: 'a',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId,
    });
    const runId = (await emit(t)).triggeredRuns[0].id;
    const uuid = runId.slice('run_'.length);
    const QUERY = `query($id: ID!) {
      triggeredRun(id: $id) { id } automation(id: $id) { id } node(id: $id) { id }
      nodes(ids: [$id, "${runId}"]) { id } }`;
    const malformed = [
      '',
      'nonsense',
      'run_',
      `run_${uuid}_x`,
      `RUN_${uuid}`,
      `xyz_${uuid}`,
      `run_${'a'.repeat(65)}`,
      `test_${uuid}`,
      uuid,
      // The old base64 form, `TriggeredRun:<uuid>`.
      Buffer.from(`TriggeredRun:${uuid}`).toString('base64'),
      `run_00000000-0000-0000-0000-000000000000`,
    ];
    for (const id of malformed) {
      const res = await t.gql(QUERY, { id });
      expect(res.errors, id).toBeUndefined();
      expect(res.data, id).toEqual({
        triggeredRun: null,
        automation: null,
        node: null,
        nodes: [null, { id: runId }],
      });
    }

    // A real id of another type: each field answers only for its own type.
    const crossed = await t.gql(QUERY, { id: automationId });
    expect(crossed.errors).toBeUndefined();
    expect(crossed.data.triggeredRun).toBeNull();
    expect(crossed.data.automation).toEqual({ id: automationId });
    // The run's stored id under another type's prefix names nothing.
    const retyped = await t.gql(QUERY, { id: `auto_${uuid}` });
    expect(retyped.errors).toBeUndefined();
    expect(retyped.data).toMatchObject({ triggeredRun: null, automation: null, node: null });

    // Mutations answer a NotFoundError naming the argument instead.
    for (const id of ['nonsense', 'run_', `auto_${uuid}`]) {
      const res = await mutate(
        t,
        'mutation($id: ID!) { retryTriggeredRun(input: { id: $id }) { __typename ... on NotFoundError { field } } }',
        { id },
      );
      expect(res).toEqual({ __typename: 'NotFoundError', field: 'input.id' });
    }
  });
});

describe('stored ids', () => {
  it('are UUIDv7s in creation order, so new rows go to the end of every index holding them', () => {
    const before = Date.now();
    const ids = Array.from({ length: 10_000 }, () => newId());
    const after = Date.now();
    expect(new Set(ids).size).toBe(ids.length);
    // The first 48 bits are the millisecond it was made (one more per 2^32 ids in a millisecond).
    for (const id of [ids[0]!, ids.at(-1)!]) {
      const ms = Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
      expect(ms).toBeGreaterThanOrEqual(before);
      expect(ms).toBeLessThanOrEqual(after + 1);
    }
    expect([...ids].sort()).toEqual(ids);
    for (const id of ids.slice(0, 10)) {
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    }
  });
});
