// biome-ignore-all lint/suspicious/noTemplateCurlyInString: templates hold literal ${…} variables.
import { afterEach, beforeEach, describe, expect, it, onTestFinished } from 'vitest';
import { type DeliveryRequest, deliver, USER_AGENT } from '../src/delivery/send.js';
import { generateSigningSecret, verifySignature } from '../src/delivery/signing.js';
import type { SlackMessage } from '../src/delivery/slack.js';
import { deliveryConfig, sampleContext, webhookRequest } from './support/delivery-fixtures.js';
import { RECEIVER_CA, type Receiver, startReceiver } from './support/receiver.js';

describe('deliver', () => {
  let receiver: Receiver;
  const timestamp = new Date();
  const config = deliveryConfig();
  const send = (request: DeliveryRequest, overrides = {}) =>
    deliver(request, { config: { ...config, ...overrides }, timestamp });
  /** Sends trusting the https receiver's certificate. */
  const sendTrusting = (request: DeliveryRequest) =>
    deliver(request, { config, timestamp, ca: RECEIVER_CA });

  beforeEach(async () => {
    receiver = await startReceiver();
  });
  afterEach(async () => {
    await receiver.close();
  });

  it('sends a signed Standard Webhooks request with bearer token and extra headers', async () => {
    const signingSecret = generateSigningSecret();
    const outcome = await send(
      webhookRequest(`${receiver.url}/hook`, {
        webhookId: 'run-42',
        target: {
          accessToken: 'tok-abc123',
          signingSecret,
          headers: { 'X-Team': 'vision' },
        },
      }),
    );
    expect(outcome).toMatchObject({ statusCode: 200, responseBody: 'ok' });
    expect(outcome.durationMs).toBeGreaterThanOrEqual(0);
    const [received] = receiver.requests;
    expect(received?.method).toBe('POST');
    expect(received?.path).toBe('/hook');
    expect(received?.headers).toMatchObject({
      'content-type': 'application/json',
      authorization: 'Bearer tok-abc123',
      'user-agent': USER_AGENT,
      'x-team': 'vision',
      'webhook-id': 'run-42',
      'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
    });
    expect(
      verifySignature({
        secret: signingSecret,
        headers: received!.headers,
        body: received!.body,
        now: timestamp,
      }),
    ).toBe(true);
    expect(received?.json()).toMatchObject({
      event_type: 'ADD_ARTIFACT_ALIAS',
      artifact_version_string: 'acme/vision/resnet:production',
      artifact_version_index: 3,
      artifact_metadata: { accuracy: 0.93 },
    });
  });

  it.each(['Content-Type', 'webhook-id', 'Connection', 'Authorization'])(
    'refuses to send a stored %s header, sending nothing',
    async (name) => {
      const outcome = await send(
        webhookRequest(`${receiver.url}/hook`, { target: { headers: { [name]: 'x' } } }),
      );
      expect(outcome).toMatchObject({ errorClass: 'CONFIGURATION_ERROR' });
      expect(outcome.errorMessage).toContain(`The action's ${name} header cannot be sent`);
      expect(receiver.requests).toHaveLength(0);
    },
  );

  it('aborts the caller’s controller at the deadline, and stops when the caller aborts it', async () => {
    receiver.enqueue({ hang: true }, { hang: true });
    const request = webhookRequest(`${receiver.url}/hook`);
    const timedOut = new AbortController();
    const late = await deliver(request, {
      config: { ...config, timeoutMs: 100 },
      timestamp,
      controller: timedOut,
    });
    expect(late).toMatchObject({ errorClass: 'TIMEOUT' });
    expect(timedOut.signal.aborted).toBe(true);
    expect((timedOut.signal.reason as Error).name).toBe('DeadlineExceeded');

    const stopped = new AbortController();
    const pending = deliver(request, { config, timestamp, controller: stopped });
    await receiver.waitForRequests(2);
    stopped.abort();
    expect(await pending).toMatchObject({ errorClass: 'ABORTED' });
  });

  it('renders the payload template with variables and secrets', async () => {
    await send(
      webhookRequest(receiver.url, {
        content: {
          payloadTemplate: '{"v":"${artifact_version_string}","key":"${API_KEY}","n":1}',
          slackTitle: null,
          slackMessage: null,
          slackSeverity: null,
        },
        secrets: new Map([['API_KEY', 'k-"quoted"']]),
      }),
    );
    expect(receiver.requests[0]?.json()).toEqual({
      v: 'acme/vision/resnet:production',
      key: 'k-"quoted"',
      n: 1,
    });
  });

  it('redacts secrets and auth header values from an echoed response', async () => {
    receiver.respond((request) => ({
      status: 200,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ headers: request.headers, body: request.text }),
    }));
    const signingSecret = generateSigningSecret();
    const outcome = await send(
      webhookRequest(receiver.url, {
        target: { accessToken: 'tok-secret-value', signingSecret },
        content: {
          payloadTemplate: '{"password":"${DB_PASSWORD}"}',
          slackTitle: null,
          slackMessage: null,
          slackSeverity: null,
        },
        secrets: new Map([['DB_PASSWORD', 'hunter2/"x"']]),
      }),
    );
    const stored = outcome.responseBody ?? '';
    const signature = String(receiver.requests[0]?.headers['webhook-signature']);
    expect(stored).toContain('[redacted]');
    for (const leaked of ['tok-secret-value', 'hunter2', signature.slice(3), signingSecret]) {
      expect(stored).not.toContain(leaked);
    }
    expect(stored).toContain('webhook-id');
  });

  it('truncates the stored body without leaking a secret cut at the limit', async () => {
    const secret = 'S3CR3T-TOKEN-VALUE';
    receiver.enqueue({ body: `${'x'.repeat(95)}${secret}${'y'.repeat(10_000)}` });
    const outcome = await send(webhookRequest(receiver.url, { target: { accessToken: secret } }), {
      maxStoredResponseBytes: 100,
    });
    expect(Buffer.byteLength(outcome.responseBody ?? '')).toBeLessThanOrEqual(100);
    expect(outcome.responseBody).toMatch(/^x{95}\[reda$/);
    expect(outcome.responseBody).not.toContain('S3CR');
  });

  it('keeps truncation on a character boundary', async () => {
    receiver.enqueue({ body: 'é'.repeat(100) });
    const outcome = await send(webhookRequest(receiver.url), { maxStoredResponseBytes: 5 });
    expect(outcome.responseBody).toBe('éé');
  });

  it('does not send a payload over maxPayloadBytes', async () => {
    const outcome = await send(
      webhookRequest(receiver.url, {
        context: sampleContext({ metadata: { blob: 'z'.repeat(5_000) } }),
      }),
      { maxPayloadBytes: 1_024 },
    );
    expect(outcome.errorClass).toBe('PAYLOAD_TOO_LARGE');
    expect(outcome.errorMessage).toMatch(/limit is 1024 bytes/);
    expect(receiver.requests).toHaveLength(0);
  });

  it('reports a template naming a missing secret as a configuration error', async () => {
    const outcome = await send(
      webhookRequest(receiver.url, {
        content: {
          payloadTemplate: '{"k":"${GONE_SECRET}"}',
          slackTitle: null,
          slackMessage: null,
          slackSeverity: null,
        },
      }),
    );
    expect(outcome.errorClass).toBe('CONFIGURATION_ERROR');
    expect(outcome.errorMessage).toMatch(/GONE_SECRET/);
    expect(receiver.requests).toHaveLength(0);
  });

  it('does not follow redirects', async () => {
    receiver.enqueue({ status: 301, headers: { location: `${receiver.url}/elsewhere` } });
    const outcome = await send(webhookRequest(`${receiver.url}/hook`));
    expect(outcome.statusCode).toBe(301);
    expect(receiver.requests.map((r) => r.path)).toEqual(['/hook']);
  });

  it('reports Retry-After in milliseconds', async () => {
    receiver.enqueue({ status: 429, headers: { 'retry-after': '7' } });
    const outcome = await send(webhookRequest(receiver.url));
    expect(outcome).toMatchObject({ statusCode: 429, retryAfterMs: 7_000 });
  });

  it('posts a Slack incoming-webhook message with blocks and a text fallback', async () => {
    const slack = await startReceiver(undefined, { tls: true });
    onTestFinished(() => slack.close());
    const slackUrl = `${slack.url}/services/T000/B000/XXXXSECRET`;
    const outcome = await sendTrusting({
      webhookId: 'run-slack',
      target: { kind: 'SLACK', url: slackUrl, channel: '#ml' },
      content: {
        payloadTemplate: null,
        slackTitle: '${artifact_collection_name} is now ${alias}',
        slackMessage: 'Promoted by ${event_author} <@here> & co',
        slackSeverity: 'WARN',
      },
      context: sampleContext({ projectName: 'model-registry' }),
      collectionOwner: 'REGISTRY',
      secrets: new Map(),
    });
    expect(outcome.statusCode).toBe(200);
    const received = slack.requests[0]!;
    expect(received.path).toBe('/services/T000/B000/XXXXSECRET');
    expect(received.headers['content-type']).toBe('application/json');
    const message = received.json<SlackMessage>();
    expect(message.text).toContain('resnet is now production');
    expect(message.text).toContain('[Warning]');
    expect(message.blocks[0]).toEqual({
      type: 'header',
      text: { type: 'plain_text', text: 'resnet is now production', emoji: true },
    });
    expect(message.blocks[1]).toMatchObject({
      type: 'context',
      elements: [{ type: 'mrkdwn', text: expect.stringContaining(':warning: *Warning*') }],
    });
    expect(message.blocks[2]).toMatchObject({
      type: 'section',
      text: { type: 'mrkdwn', text: 'Promoted by alice &lt;@here&gt; &amp; co' },
    });
    const fields = (message.blocks[3] as { fields: { text: string }[] }).fields.map((f) => f.text);
    expect(fields).toEqual([
      '*Entity*\nacme',
      '*Registry*\nmodel-registry',
      '*Collection*\nresnet',
      '*Version*\nacme/model-registry/resnet:production',
      '*Alias*\nproduction',
      '*Author*\nalice',
    ]);
  });

  it('redacts the Slack URL when the receiver echoes it', async () => {
    const slack = await startReceiver(
      (request) => ({ status: 400, body: `invalid_token for ${request.path}` }),
      { tls: true },
    );
    onTestFinished(() => slack.close());
    const outcome = await sendTrusting({
      webhookId: 'run-slack',
      target: { kind: 'SLACK', url: `${slack.url}/services/T1/B1/TOKEN`, channel: null },
      content: { payloadTemplate: null, slackTitle: null, slackMessage: null, slackSeverity: null },
      context: sampleContext(),
      collectionOwner: 'PROJECT',
      secrets: new Map(),
    });
    expect(outcome.statusCode).toBe(400);
    expect(outcome.responseBody).toBe('invalid_token for [redacted]');
  });
});
