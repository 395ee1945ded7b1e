import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { createTestApp, type TestApp } from './support/app.js';
import { createAutomation, createProject, createWebhookAction, emit } from './support/fixtures.js';
import { killServer, type ServerProcess, startServer } from './support/process.js';
import { type Receiver, startReceiver } from './support/receiver.js';

/** What an OTLP/HTTP collector received: one entry per export request. */
interface Export {
  path: string;
  contentType: string;
  body: Buffer;
}

/** A stand-in for an OpenTelemetry collector: records every OTLP/HTTP export and answers 200. */
async function startCollector(): Promise<{
  url: string;
  exports: Export[];
  close(): Promise<void>;
}> {
  const exports: Export[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      exports.push({
        path: req.url ?? '',
        contentType: req.headers['content-type'] ?? '',
        body: Buffer.concat(chunks),
      });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    exports,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: { key: string; value: Record<string, unknown> }[];
  links?: { traceId: string; spanId: string }[];
  status?: { code?: number };
}

/** Every span in OTLP/JSON exports, with its resource's service name. */
function spansOf(exports: Export[]): (OtlpSpan & { service: string })[] {
  const spans: (OtlpSpan & { service: string })[] = [];
  for (const e of exports) {
    const body = JSON.parse(e.body.toString('utf8')) as {
      resourceSpans: {
        resource: { attributes: OtlpSpan['attributes'] };
        scopeSpans: { spans: OtlpSpan[] }[];
      }[];
    };
    for (const resourceSpans of body.resourceSpans) {
      const service = resourceSpans.resource.attributes.find((a) => a.key === 'service.name')?.value
        .stringValue as string;
      for (const scope of resourceSpans.scopeSpans) {
        for (const span of scope.spans) spans.push({ ...span, service });
      }
    }
  }
  return spans;
}

const attribute = (span: OtlpSpan, key: string): unknown => {
  const value = span.attributes.find((a) => a.key === key)?.value;
  return value && Object.values(value)[0];
};

const KEY = 'tl_tracing-test-admin-key';
/** A server process starts, serves and stops in each test: seconds on a busy machine. */
const PROCESS_TEST_MS = 90_000;
const SERVER_KIND = 2;
const CLIENT_KIND = 3;

let collector: Awaited<ReturnType<typeof startCollector>> | undefined;
let receiver: Receiver | undefined;
let t: TestApp | undefined;
const servers: ServerProcess[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) killServer(server);
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  await collector?.close();
  collector = undefined;
  await receiver?.close();
  receiver = undefined;
  await t?.close();
  t = undefined;
});

function start(env: Record<string, string>): ServerProcess {
  const dir = mkdtempSync(join(tmpdir(), 'tripline-tracing-'));
  dirs.push(dir);
  const server = startServer({ TRIPLINE_DATA_DIR: dir, TRIPLINE_ADMIN_API_KEY: KEY, ...env });
  servers.push(server);
  return server;
}

async function gql(
  url: string,
  query: string,
  variables: Record<string, unknown> = {},
  headers: Record<string, string> = {},
) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}`, ...headers },
    body: JSON.stringify({ query, variables }),
  });
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary response shapes
  const body = (await response.json()) as { data?: any };
  expect(body, JSON.stringify(body)).not.toHaveProperty('errors');
  return body.data ?? {};
}

describe('tracing over OTLP/HTTP', () => {
  it(
    'spans the request, the GraphQL execution, the emit and the delivery attempt, and sends traceparent to the receiver',
    async () => {
      collector = await startCollector();
      receiver = await startReceiver();
      const server = start({
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_SERVICE_NAME: 'tripline-under-test',
        OTEL_BSP_SCHEDULE_DELAY: '100',
        TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1',
        LOG_LEVEL: 'info',
      });
      const url = await server.url;
      await gql(
        url,
        'mutation { createProject(input: { entity: "default", name: "p" }) { __typename } }',
      );
      const action = await gql(
        url,
        'mutation($i: CreateWebhookActionInput!) { createWebhookAction(input: $i) { ... on CreateWebhookActionPayload { action { id } } } }',
        { i: { entity: 'default', name: 'hook', url: `${receiver.url}/hook` } },
      );
      await gql(
        url,
        'mutation($i: CreateAutomationInput!) { createAutomation(input: $i) { __typename } }',
        {
          i: {
            entity: 'default',
            name: 'a',
            eventType: 'CREATE_ARTIFACT',
            scope: { project: 'p' },
            action: { actionId: action.createWebhookAction.action.id },
          },
        },
      );
      const callerTrace = '4bf92f3577b34da6a3ce929d0e0e4736';
      const callerSpan = '00f067aa0ba902b7';
      const emitted = await gql(
        url,
        `mutation Report { emitArtifactEvent(input: { entity: "default", eventType: CREATE_ARTIFACT, owner: { project: "p" }, collection: "m", artifactType: "model", versionIndex: 0 }) {
        ... on EmitArtifactEventPayload { event { id } triggeredRuns { id } } } }`,
        {},
        { traceparent: `00-${callerTrace}-${callerSpan}-01` },
      );
      const runId = emitted.emitArtifactEvent.triggeredRuns[0].id;
      const [delivery] = await receiver.waitForRequests(1);
      const traceparent = String(delivery?.headers.traceparent);
      const [, attemptTrace, attemptSpan] =
        /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(traceparent) ?? [];
      expect(attemptTrace, traceparent).toBeDefined();

      server.child.kill('SIGTERM');
      expect(await server.exited).toBe(0);
      await server.outputClosed;
      expect(collector.exports.every((e) => e.path === '/v1/traces')).toBe(true);
      expect(collector.exports.every((e) => e.contentType.startsWith('application/json'))).toBe(
        true,
      );
      const spans = spansOf(collector.exports);
      expect(new Set(spans.map((s) => s.service))).toEqual(new Set(['tripline-under-test']));

      const request = spans.find((s) => s.traceId === callerTrace && s.kind === SERVER_KIND);
      expect(request).toMatchObject({ name: 'POST /graphql', parentSpanId: callerSpan });
      expect(attribute(request as OtlpSpan, 'http.response.status_code')).toBe(200);
      const execution = spans.find((s) => s.parentSpanId === request?.spanId);
      expect(execution?.name).toBe('mutation Report');
      expect(attribute(execution as OtlpSpan, 'graphql.operation.name')).toBe('Report');
      const emit = spans.find((s) => s.parentSpanId === execution?.spanId);
      expect(emit?.name).toBe('emit');
      expect(attribute(emit as OtlpSpan, 'tripline.event.id')).toBe(
        emitted.emitArtifactEvent.event.id,
      );
      expect(attribute(emit as OtlpSpan, 'tripline.runs.queued')).toBe(1);

      const attempt = spans.find((s) => s.name === 'delivery attempt');
      expect(attempt).toMatchObject({
        kind: CLIENT_KIND,
        traceId: attemptTrace,
        spanId: attemptSpan,
        links: [{ traceId: callerTrace, spanId: emit?.spanId }],
      });
      expect(attribute(attempt as OtlpSpan, 'tripline.run.id')).toBe(runId);
      expect(attribute(attempt as OtlpSpan, 'http.response.status_code')).toBe(200);

      // Log lines written inside a span carry its ids.
      const access = server
        .stdout()
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .find((line) => line.msg === 'request' && line.operationName === 'Report');
      expect(access).toMatchObject({ traceId: callerTrace, spanId: request?.spanId });
    },
    PROCESS_TEST_MS,
  );

  it(
    'exports OTLP/HTTP protobuf by default, to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as given',
    async () => {
      collector = await startCollector();
      const server = start({
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${collector.url}/custom/traces`,
        OTEL_BSP_SCHEDULE_DELAY: '100',
      });
      const url = await server.url;
      await gql(url, '{ __typename }');
      server.child.kill('SIGTERM');
      expect(await server.exited).toBe(0);
      expect(collector.exports.length).toBeGreaterThan(0);
      expect(collector.exports[0]).toMatchObject({
        path: '/custom/traces',
        contentType: 'application/x-protobuf',
      });
      expect(collector.exports[0]?.body.includes('POST /graphql')).toBe(true);
    },
    PROCESS_TEST_MS,
  );
});

describe('tracing off', () => {
  it('is off without OTEL_* variables: no tracer, no traceparent to receivers', async () => {
    t = await createTestApp({ env: { TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1' } });
    receiver = await startReceiver();
    expect(t.config.tracing.enabled).toBe(false);
    expect(t.app.telemetry.tracer).toBeUndefined();
    await createProject(t, 'p');
    const hook = await createWebhookAction(t, { name: 'hook', url: `${receiver.url}/hook` });
    await createAutomation(t, {
      name: 'a',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId: hook.id,
    });
    await emit(t);
    await t.app.engine.drain();
    expect(receiver.requests).toHaveLength(1);
    expect(receiver.requests[0]?.headers).not.toHaveProperty('traceparent');
  });

  it('reads the standard variables: an endpoint or OTEL_TRACES_EXPORTER=otlp turns it on, OTEL_SDK_DISABLED or none off', () => {
    const base = { TRIPLINE_DATA_DIR: tmpdir() };
    const tracing = (env: Record<string, string>) => loadConfig({ ...base, ...env }).tracing;
    expect(tracing({}).enabled).toBe(false);
    expect(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toEqual({
      enabled: true,
      protocol: 'http/protobuf',
    });
    expect(tracing({ OTEL_TRACES_EXPORTER: 'otlp' }).enabled).toBe(true);
    expect(
      tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' }).enabled,
    ).toBe(false);
    expect(
      tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'none' })
        .enabled,
    ).toBe(false);
    expect(
      tracing({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
      }).protocol,
    ).toBe('http/json');
    expect(() =>
      loadConfig({
        ...base,
        OTEL_TRACES_EXPORTER: 'console',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
        OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318',
      }),
    ).toThrow(
      /OTEL_TRACES_EXPORTER must be otlp or none[\s\S]*OTEL_EXPORTER_OTLP_ENDPOINT must be an http[\s\S]*OTEL_EXPORTER_OTLP_PROTOCOL must be http\/protobuf or http\/json/,
    );
  });
});
