import type { Client } from 'graphql-ws';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NO_OP_OUTCOME } from '../src/delivery/send.js';
import { attemptLabels } from '../src/observability/metrics.js';
import { createTestApp, type TestApp } from './support/app.js';
import {
  createAutomation,
  createNoOpAction,
  createProject,
  emit,
  mutate,
} from './support/fixtures.js';
import { wsClient } from './support/matrix.js';
import { type Receiver, startReceiver } from './support/receiver.js';

let t: TestApp;
let receiver: Receiver;
const clients: Client[] = [];

beforeEach(async () => {
  t = await createTestApp({ env: { TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1' } });
  // Nothing may reach it: a no-op action sends no request, whatever the automation says.
  receiver = await startReceiver();
  await createProject(t, 'p');
});

afterEach(async () => {
  for (const client of clients.splice(0)) await client.dispose();
  await receiver.close();
  await t.close();
});

const CREATE = `mutation($i: CreateNoOpActionInput!) { createNoOpAction(input: $i) {
  __typename
  ... on CreateNoOpActionPayload { action { __typename id name kind enabled usedBy } }
  ... on Error { message ... on ValidationError { field } ... on ConflictError { field } } } }`;

const AUTOMATION = `mutation($i: CreateAutomationInput!) { createAutomation(input: $i) {
  __typename ... on Error { message ... on ValidationError { field } } } }`;

const RUN = `query($id: ID!) { triggeredRun(id: $id) {
  status attemptCount result
  attempts { attemptNumber statusCode errorClass errorMessage responseBody durationMs } } }`;

const TEST = `mutation($i: TestActionInput!) { testAction(input: $i) {
  __typename
  ... on TestActionPayload { response { success sent statusCode errorClass errorMessage responseBody durationMs } }
  ... on Error { message ... on ValidationError { field } } } }`;

describe('no-op actions', () => {
  it('are created with a nop_ id, listed by kind, and refuse a taken name', async () => {
    const res = await t.gql(CREATE, { i: { entity: 'default', name: 'dry-run' } });
    const action = res.data.createNoOpAction.action;
    expect(action).toMatchObject({
      __typename: 'NoOpAction',
      name: 'dry-run',
      kind: 'NO_OP',
      enabled: true,
      usedBy: [],
    });
    expect(action.id).toMatch(/^nop_/);
    const node = await t.gql(
      'query($id: ID!) { node(id: $id) { __typename ... on Action { name } } }',
      {
        id: action.id,
      },
    );
    expect(node.data.node).toEqual({ __typename: 'NoOpAction', name: 'dry-run' });
    const listed = await t.gql(
      '{ entity(name: "default") { actions(kind: NO_OP) { edges { node { name } } } } }',
    );
    expect(listed.data.entity.actions.edges).toEqual([{ node: { name: 'dry-run' } }]);

    const again = await t.gql(CREATE, { i: { entity: 'default', name: 'dry-run' } });
    expect(again.data.createNoOpAction).toMatchObject({
      __typename: 'ConflictError',
      field: 'input.name',
    });
    const audit = await t.gql(
      '{ entity(name: "default") { auditLog(action: ACTION_CREATED) { edges { node { targetType details } } } } }',
    );
    expect(audit.data.entity.auditLog.edges[0].node).toMatchObject({
      targetType: 'NO_OP_ACTION',
      details: { name: 'dry-run', kind: 'NO_OP' },
    });
  });

  it('cannot be created by members or viewers', async () => {
    for (const role of ['MEMBER', 'VIEWER'] as const) {
      const res = await t.gql(
        CREATE,
        { i: { entity: 'default', name: `x-${role}` } },
        await t.member(role, `m-${role}`),
      );
      expect(res.data.createNoOpAction.__typename).toBe('PermissionDeniedError');
    }
  });

  it('runs succeed on the first attempt without any request, in history and the stream', async () => {
    const actionId = await createNoOpAction(t, { name: 'dry-run' });
    await createAutomation(t, {
      name: 'watch',
      eventType: 'CREATE_ARTIFACT',
      scope: { project: 'p' },
      actionId,
    });

    const url = await t.listen();
    const client = wsClient(url, t.adminKey);
    clients.push(client);
    const updates: { id: string; status: string }[] = [];
    let sawSucceeded: () => void = () => {};
    const succeeded = new Promise<void>((resolve) => {
      sawSucceeded = resolve;
    });
    client.subscribe<{ triggeredRunUpdated: { id: string; status: string } }>(
      { query: 'subscription { triggeredRunUpdated { id status } }' },
      {
        next: (message) => {
          const update = message.data?.triggeredRunUpdated;
          if (!update) return;
          updates.push(update);
          if (update.status === 'SUCCEEDED') sawSucceeded();
        },
        error: () => {},
        complete: () => {},
      },
    );
    await t.subscribers(1);

    const emitted = await emit(t);
    expect(emitted.triggeredRuns).toHaveLength(1);
    const runId = emitted.triggeredRuns[0].id;
    expect(emitted.triggeredRuns[0].status).toBe('QUEUED');
    await t.app.engine.drain();
    await succeeded;

    const run = (await t.gql(RUN, { id: runId })).data.triggeredRun;
    expect(run).toEqual({
      status: 'SUCCEEDED',
      attemptCount: 1,
      result: 'No-op: nothing sent',
      attempts: [
        {
          attemptNumber: 1,
          statusCode: null,
          errorClass: null,
          errorMessage: null,
          responseBody: null,
          durationMs: 0,
        },
      ],
    });
    const statuses = updates.filter((u) => u.id === runId).map((u) => u.status);
    expect(statuses).toContain('RUNNING');
    expect(statuses.at(-1)).toBe('SUCCEEDED');
    expect(statuses.indexOf('RUNNING')).toBeLessThan(statuses.indexOf('SUCCEEDED'));

    const history = await t.gql(
      '{ entity(name: "default") { triggeredRuns(first: 10) { edges { node { id status result } } } } }',
    );
    expect(history.data.entity.triggeredRuns.edges).toEqual([
      { node: { id: runId, status: 'SUCCEEDED', result: 'No-op: nothing sent' } },
    ]);
    expect(receiver.requests).toHaveLength(0);
    // Counted as a success in `tripline_delivery_attempts_total`, not an HTTP error.
    expect(attemptLabels(NO_OP_OUTCOME)).toEqual({ outcome: 'success', errorClass: 'none' });
  });

  it('refuses payload templates and Slack fields in automations, naming the field', async () => {
    const actionId = await createNoOpAction(t, { name: 'dry-run' });
    for (const [name, value] of [
      ['payloadTemplate', '{"a": 1}'],
      ['slackTitle', 'title'],
      ['slackMessage', 'message'],
      ['slackSeverity', 'WARN'],
    ] as const) {
      const res = await t.gql(AUTOMATION, {
        i: {
          entity: 'default',
          name: `a-${name}`,
          eventType: 'CREATE_ARTIFACT',
          scope: { project: 'p' },
          action: { actionId, [name]: value },
        },
      });
      expect(res.data.createAutomation).toMatchObject({
        __typename: 'ValidationError',
        field: `input.action.${name}`,
      });
      expect(res.data.createAutomation.message).toMatch(/no-op/);
    }
  });

  it('testAction answers at once without a request', async () => {
    const actionId = await createNoOpAction(t, { name: 'dry-run' });
    const res = await t.gql(TEST, { i: { id: actionId } }, await t.member('MEMBER'));
    expect(res.data.testAction).toEqual({
      __typename: 'TestActionPayload',
      response: {
        success: true,
        sent: false,
        statusCode: null,
        errorClass: null,
        errorMessage: null,
        responseBody: null,
        durationMs: 0,
      },
    });
    const refused = await t.gql(TEST, { i: { id: actionId, payloadTemplate: '{}' } });
    expect(refused.data.testAction).toMatchObject({
      __typename: 'ValidationError',
      field: 'input.payloadTemplate',
    });
    expect(receiver.requests).toHaveLength(0);
  });

  it('updateAction renames and disables it, refusing other kinds\u2019 fields; deleteAction removes it', async () => {
    const actionId = await createNoOpAction(t, { name: 'dry-run' });
    const UPDATE = `mutation($i: UpdateActionInput!) { updateAction(input: $i) { __typename
      ... on UpdateActionPayload { action { __typename name enabled disabledReason } }
      ... on Error { message ... on ValidationError { field } } } }`;
    const renamed = await t.gql(UPDATE, { i: { id: actionId, name: 'renamed', enabled: false } });
    expect(renamed.data.updateAction.action).toMatchObject({
      __typename: 'NoOpAction',
      name: 'renamed',
      enabled: false,
    });
    for (const [field, value] of [
      ['url', 'https://example.com'],
      ['channel', '#x'],
    ] as const) {
      const res = await t.gql(UPDATE, { i: { id: actionId, [field]: value } });
      expect(res.data.updateAction).toMatchObject({
        __typename: 'ValidationError',
        field: `input.${field}`,
      });
    }
    // A run of a disabled no-op action is skipped like any other.
    const automationId = await createAutomation(t, {
      name: 'watch',
      eventType: 'CREATE_ARTIFACT',
      scope: { project: 'p' },
      actionId,
    });
    const runId = (await emit(t)).triggeredRuns[0].id;
    await t.app.engine.drain();
    expect((await t.gql(RUN, { id: runId })).data.triggeredRun.status).toBe('SKIPPED');
    await mutate(
      t,
      'mutation($i: DeleteAutomationInput!) { deleteAutomation(input: $i) { __typename } }',
      {
        i: { id: automationId },
      },
    );
    const deleted = await t.gql(
      'mutation($i: DeleteActionInput!) { deleteAction(input: $i) { __typename ... on DeleteActionPayload { action { __typename name } } } }',
      { i: { id: actionId } },
    );
    expect(deleted.data.deleteAction).toEqual({
      __typename: 'DeleteActionPayload',
      action: { __typename: 'NoOpAction', name: 'renamed' },
    });
    expect(receiver.requests).toHaveLength(0);
  });
});
