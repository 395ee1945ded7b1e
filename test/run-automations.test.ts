// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the tests write template variables as literal text.

import { type Client, createClient } from 'graphql-ws';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { verifySignature } from '../src/delivery/signing.js';
import { createTestApp, fakeClock, type TestApp } from './support/app.js';
import { createProject, createWebhookAction, mutate } from './support/fixtures.js';
import { type Receiver, startReceiver } from './support/receiver.js';

let t: TestApp;
let url: string;
let receiver: Receiver;
let hook: { id: string; signingSecret: string };
const clock = fakeClock();
const clients: Client[] = [];

beforeEach(async () => {
  t = await createTestApp({ clock, env: { TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1' } });
  url = await t.listen();
  receiver = await startReceiver();
  await createProject(t, 'vision');
  hook = await createWebhookAction(t, { name: 'hook', url: `${receiver.url}/hook` });
});

afterEach(async () => {
  for (const client of clients.splice(0)) await client.dispose();
  await receiver.close();
  await t.close();
});

const CREATE = `mutation($i: CreateAutomationInput!) { createAutomation(input: $i) { __typename
  ... on CreateAutomationPayload { automation { id cooldownSeconds runCondition { __typename } } }
  ... on Error { message ... on ValidationError { field } ... on NotFoundError { field } } } }`;

async function createRunAutomation(
  input: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  return mutate(t, CREATE, {
    i: { entity: 'default', scope: { project: 'vision' }, action: { actionId: hook.id }, ...input },
  });
}

const REPORT = `mutation($i: ReportRunStateInput!) { reportRunState(input: $i) { __typename
  ... on ReportRunStatePayload { replayed run { id name state } triggeredRuns { id status } }
  ... on Error { message ... on ValidationError { field } ... on NotFoundError { field } } } }`;

const LOG = `mutation($i: LogRunMetricsInput!) { logRunMetrics(input: $i) { __typename
  ... on LogRunMetricsPayload { replayed acceptedPoints run { id name state } triggeredRuns { id status } }
  ... on Error { message ... on ValidationError { field } ... on NotFoundError { field } } } }`;

const reportState = (run: string, state: string, extra = {}) =>
  mutate(t, REPORT, { i: { entity: 'default', project: 'vision', run, state, ...extra } });

const logPoints = (
  run: string,
  points: { step: number; name: string; value: number }[],
  extra = {},
) => mutate(t, LOG, { i: { entity: 'default', project: 'vision', run, points, ...extra } });

const series = (name: string, values: number[], from = 0) =>
  values.map((value, i) => ({ step: from + i, name, value }));

/** Subscribes to `triggeredRunUpdated`; `finished` resolves with the statuses once one ends. */
async function watchRuns(): Promise<{ finished: Promise<string[]> }> {
  const client = createClient({
    url: url.replace('http', 'ws'),
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${t.adminKey}` },
    retryAttempts: 0,
  });
  clients.push(client);
  const statuses: string[] = [];
  const finished = new Promise<string[]>((resolve, reject) => {
    client.subscribe<{ triggeredRunUpdated: { status: string } }>(
      { query: 'subscription { triggeredRunUpdated { id status runEvent { eventType } } }' },
      {
        next: (message) => {
          if (message.errors) reject(new Error(JSON.stringify(message.errors)));
          const status = message.data?.triggeredRunUpdated.status;
          if (status) statuses.push(status);
          if (status === 'SUCCEEDED' || status === 'FAILED') resolve(statuses);
        },
        error: reject,
        complete: () => {},
      },
    );
  });
  await t.subscribers(1);
  return { finished };
}

const HISTORY = `{ entity(name: "default") { triggeredRuns(first: 10) { totalCount edges { node {
  id status event { id } runEvent { eventType runState metricName metricValues condition run { name } } } } }
  projects(first: 1) { edges { node { runs(first: 10) { totalCount edges { node {
    name state metrics { name latestValue latestStep pointCount }
    triggeredRuns(first: 5) { totalCount edges { node { id } } } } } } } } } } }`;

interface Case {
  eventType: string;
  runCondition: Record<string, unknown>;
  /** Reports that make the condition fire (the run `r1` exists, RUNNING, before). */
  fire: () => Promise<{ triggeredRuns: { id: string }[] }>;
  body: Record<string, unknown>;
}

const CASES: Case[] = [
  {
    eventType: 'RUN_STATE',
    runCondition: { state: { states: ['FINISHED', 'FAILED'] } },
    fire: () => reportState('r1', 'CRASHED'),
    body: { run_status: 'FAILED', condition: 'run state is FINISHED or FAILED' },
  },
  {
    eventType: 'RUN_METRIC',
    runCondition: {
      metric: {
        metric: 'loss',
        aggregation: 'AVERAGE',
        window: 3,
        comparison: 'LT',
        threshold: 0.5,
      },
    },
    fire: () => logPoints('r1', series('loss', [0.9, 0.5, 0.4, 0.3])),
    body: {
      run_status: 'RUNNING',
      metric_name: 'loss',
      metric_values: [0.5, 0.4, 0.3],
      metric_filter: 'average of loss over the last 3 values < 0.5',
    },
  },
  {
    eventType: 'RUN_METRIC_CHANGE',
    runCondition: {
      metricChange: {
        metric: 'acc',
        window: 2,
        direction: 'DECREASE',
        changeType: 'RELATIVE',
        amount: 0.1,
      },
    },
    fire: () => logPoints('r1', series('acc', [0.8, 0.8, 0.7, 0.6])),
    body: {
      metric_name: 'acc',
      metric_values: [0.8, 0.8, 0.7, 0.6],
      metric_filter:
        'average of acc over the last 2 values decreased by more than 10% (relative) against the 2 values before',
    },
  },
  {
    eventType: 'RUN_METRIC_ZSCORE',
    runCondition: { metricZScore: { metric: 'loss', runs: 5, direction: 'ABOVE', threshold: 2 } },
    fire: async () => {
      for (const [name, value] of [
        ['p1', 1.0],
        ['p2', 1.1],
        ['p3', 0.9],
      ] as const) {
        await reportState(name, 'RUNNING');
        const quiet = await logPoints(name, [{ step: 0, name: 'loss', value }]);
        expect(quiet.triggeredRuns).toEqual([]);
      }
      return logPoints('r1', [{ step: 0, name: 'loss', value: 5 }]);
    },
    body: { metric_name: 'loss', metric_values: [5] },
  },
];

describe('run events, end to end', () => {
  for (const c of CASES) {
    it(`${c.eventType}: delivers one signed envelope, shown in history and the subscription`, async () => {
      const created = await createRunAutomation({
        name: `on-${c.eventType.toLowerCase()}`,
        eventType: c.eventType,
        runCondition: c.runCondition,
      });
      expect(created.__typename, String(created.message)).toBe('CreateAutomationPayload');
      const started = await reportState('r1', 'RUNNING');
      expect(started.triggeredRuns).toEqual([]);
      const watched = await watchRuns();

      const fired = await c.fire();
      expect(fired.triggeredRuns).toHaveLength(1);
      const runId = fired.triggeredRuns[0]!.id;

      await t.app.engine.drain();
      expect(await watched.finished).toEqual(['QUEUED', 'RUNNING', 'SUCCEEDED']);
      expect(receiver.requests).toHaveLength(1);
      const request = receiver.requests[0]!;
      expect(
        verifySignature({
          secret: hook.signingSecret,
          headers: request.headers,
          body: request.body,
          now: clock.now(),
        }),
      ).toBe(true);
      const body = request.json();
      expect(body).toMatchObject({
        event_type: c.eventType,
        entity_name: 'default',
        project_name: 'vision',
        run_name: 'r1',
        run_id: started.run.id,
        ...c.body,
      });

      const { data } = await t.gql(HISTORY);
      const history = data.entity.triggeredRuns;
      expect(history.totalCount).toBe(1);
      expect(history.edges[0].node).toMatchObject({
        id: runId,
        status: 'SUCCEEDED',
        event: null,
        runEvent: { eventType: c.eventType, run: { name: 'r1' } },
      });
      const r1 = data.entity.projects.edges[0].node.runs.edges.find(
        (e: { node: { name: string } }) => e.node.name === 'r1',
      ).node;
      expect(r1.triggeredRuns).toEqual({ totalCount: 1, edges: [{ node: { id: runId } }] });

      // Sent again: the cooldown holds, nothing more is delivered.
      await c.fire().catch(() => undefined);
      await t.app.engine.drain();
      expect(receiver.requests).toHaveLength(1);
    });
  }
});

describe('filters, templates and the cooldown', () => {
  it('renders run variables in a payload template and refuses artifact variables at save', async () => {
    const refused = await createRunAutomation({
      name: 'bad',
      eventType: 'RUN_METRIC',
      runCondition: { metric: { metric: 'loss', comparison: 'GT', threshold: 1 } },
      action: { actionId: hook.id, payloadTemplate: '{"v": "${artifact_version}"}' },
    });
    expect(refused).toMatchObject({
      __typename: 'ValidationError',
      field: 'input.action.payloadTemplate',
    });
    expect(refused.message).toContain('${artifact_version} does not exist for RUN_METRIC events');
    const stateOnly = await createRunAutomation({
      name: 'bad-state',
      eventType: 'RUN_STATE',
      runCondition: { state: { states: ['FAILED'] } },
      action: { actionId: hook.id, payloadTemplate: '{"v": "${metric_name}"}' },
    });
    expect(stateOnly.message).toContain('${metric_name} does not exist for RUN_STATE events');
    const artifact = await createRunAutomation({
      name: 'bad-artifact',
      eventType: 'CREATE_ARTIFACT',
      action: { actionId: hook.id, payloadTemplate: '{"v": "${run_name}"}' },
    });
    expect(artifact.message).toContain('${run_name} does not exist for CREATE_ARTIFACT events');

    await createRunAutomation({
      name: 'templated',
      eventType: 'RUN_METRIC',
      runCondition: {
        metric: { metric: 'loss', aggregation: 'MAX', window: 2, comparison: 'GTE', threshold: 2 },
      },
      action: {
        actionId: hook.id,
        payloadTemplate: JSON.stringify({
          text: '${run_name} (${run_status}): ${metric_name} ${metric_values} [${metric_filter}] in ${project_name}',
          id: '${run_id}',
        }),
      },
    });
    const run = await reportState('sweep-1', 'RUNNING');
    await logPoints('sweep-1', series('loss', [1, 2]));
    await t.app.engine.drain();
    expect(receiver.requests.map((r) => r.json())).toEqual([
      {
        text: 'sweep-1 (RUNNING): loss [1,2] [max of loss over the last 2 values >= 2] in vision',
        id: run.run.id,
      },
    ]);
  });

  it('matches run names with an RE2 pattern and the reporting user, from an entity scope', async () => {
    const viewer = await t.gql('{ viewer { user { id } } }');
    await createRunAutomation({
      name: 'sweeps',
      eventType: 'RUN_STATE',
      scope: { entity: true },
      runCondition: { state: { states: ['FINISHED'] } },
      filter: { runNamePattern: '^sweep-', reportedBy: viewer.data.viewer.user.id },
    });
    await reportState('baseline', 'RUNNING');
    expect((await reportState('baseline', 'FINISHED')).triggeredRuns).toEqual([]);
    await reportState('sweep-7', 'RUNNING');
    expect((await reportState('sweep-7', 'FINISHED')).triggeredRuns).toHaveLength(1);
    // Staying FINISHED is no transition: nothing fires.
    clock.advance(25 * 3600 * 1000);
    expect((await reportState('sweep-7', 'FINISHED')).triggeredRuns).toEqual([]);
  });

  it('fires again for the same run once the cooldown has passed', async () => {
    await createRunAutomation({
      name: 'high',
      eventType: 'RUN_METRIC',
      cooldownSeconds: 3600,
      runCondition: { metric: { metric: 'loss', comparison: 'GT', threshold: 1 } },
    });
    await reportState('r', 'RUNNING');
    expect((await logPoints('r', series('loss', [2]))).triggeredRuns).toHaveLength(1);
    clock.advance(3599 * 1000);
    expect((await logPoints('r', series('loss', [3], 1))).triggeredRuns).toEqual([]);
    clock.advance(1000);
    expect((await logPoints('r', series('loss', [4], 2))).triggeredRuns).toHaveLength(1);
  });
});
