// biome-ignore-all lint/suspicious/noTemplateCurlyInString: payload templates use ${…} literally
import { afterEach, describe, expect, it } from 'vitest';
import { verifySignature } from '../src/delivery/signing.js';
import { createTestApp, type TestApp } from './support/app.js';
import { createSecret, createWebhookAction, mutate } from './support/fixtures.js';
import { type Receiver, startReceiver } from './support/receiver.js';

let t: TestApp;
let receiver: Receiver;
afterEach(async () => {
  await receiver.close();
  await t.close();
});

const TEST = `mutation($i: TestActionInput!) { testAction(input: $i) {
  __typename ... on TestActionPayload { response { __typename success statusCode errorClass errorMessage responseBody durationMs } }
  ... on Error { message ... on ValidationError { field } ... on NotFoundError { field } ... on PermissionDeniedError { requiredRole } } } }`;

/** testAction's response, or the error in its place. */
async function sendTest(variables: Record<string, unknown>, key?: string) {
  const result = await mutate(t, TEST, variables, key);
  return result.response ?? result;
}

describe('testAction', () => {
  it('sends a signed sample payload without creating a run, and redacts secrets the receiver echoes', async () => {
    t = await createTestApp({ env: { TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1' } });
    receiver = await startReceiver((request) => ({
      status: 200,
      body: `echo ${request.headers.authorization} ${request.body.toString()}`,
    }));
    await createSecret(t, 'HOOK_TOKEN', 'tok-very-secret-123');
    const action = await createWebhookAction(t, {
      name: 'hook',
      url: `${receiver.url}/hook`,
      accessTokenSecret: 'HOOK_TOKEN',
    });

    const r = await sendTest({
      i: {
        id: action.id,
        payloadTemplate: '{"who":"${event_author}","token":"${HOOK_TOKEN}","event":"${event_id}"}',
      },
    });
    expect(r).toMatchObject({
      __typename: 'ActionTestResponse',
      success: true,
      statusCode: 200,
      errorClass: null,
    });
    expect(r.responseBody).not.toContain('tok-very-secret-123');
    expect(r.responseBody).toContain('[redacted]');

    const [request] = receiver.requests;
    expect(request?.headers.authorization).toBe('Bearer tok-very-secret-123');
    expect(JSON.parse(request!.body.toString())).toEqual({
      who: 'admin',
      token: 'tok-very-secret-123',
      // Shaped like the ids of real deliveries, naming nothing.
      event: 'evt_sample',
    });
    expect(request?.headers['webhook-id']).toMatch(/^test_[0-9a-f-]{36}$/);
    expect(
      verifySignature({
        secret: action.signingSecret,
        headers: request!.headers,
        body: request!.body,
      }),
    ).toBe(true);

    const runs = await t.gql('{ entity(name: "default") { triggeredRuns { totalCount } } }');
    expect(runs.data.entity.triggeredRuns.totalCount).toBe(0);
  });

  it('reports a receiver error and refuses bad templates and viewers', async () => {
    t = await createTestApp({ env: { TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1' } });
    receiver = await startReceiver(() => ({ status: 500, body: 'boom' }));
    const action = await createWebhookAction(t, { name: 'hook', url: `${receiver.url}/hook` });
    expect(await sendTest({ i: { id: action.id } })).toMatchObject({
      success: false,
      statusCode: 500,
      responseBody: 'boom',
    });
    expect(
      await sendTest({ i: { id: action.id, payloadTemplate: '{"x": "${nope}"}' } }),
    ).toMatchObject({
      __typename: 'ValidationError',
      field: 'input.payloadTemplate',
    });
    expect(await sendTest({ i: { id: action.id } }, await t.member('VIEWER'))).toMatchObject({
      __typename: 'PermissionDeniedError',
    });
    expect(await sendTest({ i: { id: action.id } }, await t.stranger())).toMatchObject({
      __typename: 'NotFoundError',
      field: 'input.id',
    });
  });

  it('refuses loopback destinations unless the operator allows them', async () => {
    t = await createTestApp();
    receiver = await startReceiver();
    const action = await createWebhookAction(t, { name: 'hook', url: `${receiver.url}/hook` });
    const r = await sendTest({ i: { id: action.id } });
    expect(r).toMatchObject({ success: false, statusCode: null, errorClass: 'SSRF_BLOCKED' });
    expect(receiver.requests).toHaveLength(0);
  });
});
