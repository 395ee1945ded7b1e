// Logging metrics with run automations watching: logRunMetrics in batches of 100 points (20
// steps of 5 metrics) to a project that 20 metric automations watch (RUN_METRIC with LATEST, MAX,
// MIN and AVERAGE windows up to 100 values, RUN_METRIC_CHANGE and RUN_METRIC_ZSCORE, on the
// metrics logged), against the same calls to a project no automation watches, on one server and in
// one run. The conditions never hold (unreachable thresholds), so the figure is the cost of
// evaluating them, point by point, and not of creating and delivering runs.
//
// The load is a closed loop of CONCURRENCY clients, each logging to its own run with steps that
// keep increasing (a repeated step is not accepted, which would skip the evaluation), so a fixed
// body (autocannon's hammer) cannot drive it. Rounds alternate between the two projects, so drift
// on this noisy machine hits both.
import { performance } from 'node:perf_hooks';
import {
  type BenchContext,
  type Figure,
  formatRate,
  formatRatio,
  type Row,
  round,
} from '../lib/figure.js';
import { gql, mutate } from '../lib/http.js';
import { waitIdle } from '../lib/process.js';
import { cloneDataDir } from '../lib/seed.js';

const CONCURRENCY = 8;
const METRICS = ['loss', 'acc', 'lr', 'grad_norm', 'val/loss'];
const STEPS_PER_BATCH = 20;
const GOAL = 0.5;

const CREATE_PROJECT = `mutation($name: String!) {
  createProject(input: { entity: "default", name: $name }) { __typename ... on Error { message } } }`;

const CREATE_AUTOMATION = `mutation($i: CreateAutomationInput!) {
  createAutomation(input: $i) { __typename ... on Error { message } } }`;

const ACTIONS = `{ entity(name: "default") { actions(first: 10) { edges { node { ... on WebhookAction { id name } } } } } }`;

const REPORT = `mutation($run: String!, $project: String!) {
  reportRunState(input: { entity: "default", project: $project, run: $run, state: RUNNING }) {
    __typename ... on Error { message } } }`;

const LOG = `mutation($run: String!, $project: String!, $points: [MetricPointInput!]!) {
  logRunMetrics(input: { entity: "default", project: $project, run: $run, points: $points }) {
    __typename ... on LogRunMetricsPayload { acceptedPoints triggeredRuns { id } } ... on Error { message } } }`;

interface LogAnswer {
  logRunMetrics: { __typename: string; acceptedPoints?: number; triggeredRuns?: unknown[] };
}

const NEVER = 1e12;

/** 20 conditions over the 5 metrics: every kind, windows up to the cap; none ever holds. */
function conditions(): Record<string, unknown>[] {
  const kinds: ((metric: string) => [string, Record<string, unknown>])[] = [
    (metric) => ['RUN_METRIC', { metric: { metric, comparison: 'GT', threshold: NEVER } }],
    (metric) => [
      'RUN_METRIC',
      {
        metric: { metric, aggregation: 'AVERAGE', window: 50, comparison: 'GT', threshold: NEVER },
      },
    ],
    (metric) => [
      'RUN_METRIC',
      { metric: { metric, aggregation: 'MAX', window: 100, comparison: 'GTE', threshold: NEVER } },
    ],
    (metric) => [
      'RUN_METRIC_CHANGE',
      { metricChange: { metric, window: 25, direction: 'ANY', amount: NEVER } },
    ],
  ];
  const out: Record<string, unknown>[] = [];
  for (let i = 0; i < 20; i += 1) {
    const metric = METRICS[i % METRICS.length]!;
    const [eventType, runCondition] =
      i === 19
        ? [
            'RUN_METRIC_ZSCORE',
            { metricZScore: { metric, runs: 20, direction: 'EITHER', threshold: NEVER } },
          ]
        : kinds[Math.floor(i / METRICS.length) % kinds.length]!(metric);
    out.push({ eventType, runCondition });
  }
  return out;
}

export const runMetrics: Figure = {
  id: 'run-metrics',
  async run(context: BenchContext): Promise<Row[]> {
    const seconds = context.quick ? 2 : 5;
    const rounds = context.quick ? 1 : 3;
    const dataDir = cloneDataDir(context.template.dataDir);
    const server = await context.startServer(dataDir);
    try {
      const { url, adminKey: key } = server;
      const projects = ['metrics-quiet', 'metrics-watched'] as const;
      for (const name of projects) {
        await mutate(url, key, CREATE_PROJECT, { name }, 'CreateProjectPayload');
      }
      const actions = await gql<{
        entity: { actions: { edges: { node: { id?: string; name?: string } }[] } };
      }>(url, key, ACTIONS);
      const hang = actions.data?.entity.actions.edges.find((e) => e.node.name === 'hang')?.node.id;
      if (!hang) throw new Error(`no hang action: ${JSON.stringify(actions)}`);
      for (const [i, condition] of conditions().entries()) {
        await mutate(
          url,
          key,
          CREATE_AUTOMATION,
          {
            i: {
              entity: 'default',
              name: `metric-${i}`,
              scope: { project: 'metrics-watched' },
              action: { actionId: hang },
              ...condition,
            },
          },
          'CreateAutomationPayload',
        );
      }
      const steps = new Map<string, number>();
      for (const project of projects) {
        for (let w = 0; w < CONCURRENCY; w += 1) {
          await mutate(url, key, REPORT, { run: `w${w}`, project }, 'ReportRunStatePayload');
          steps.set(`${project}/w${w}`, 0);
        }
      }

      /** One batch of 100 points for a worker's run, at its next 20 steps. */
      const batch = (project: string, worker: number) => {
        const id = `${project}/w${worker}`;
        const from = steps.get(id)!;
        steps.set(id, from + STEPS_PER_BATCH);
        const points: { step: number; name: string; value: number }[] = [];
        for (let s = 0; s < STEPS_PER_BATCH; s += 1) {
          for (const name of METRICS) points.push({ step: from + s, name, value: Math.random() });
        }
        return points;
      };

      /** Closed loop: CONCURRENCY clients logging batches for `secondsOf`; batches per second. */
      const load = async (project: string, secondsOf: number) => {
        await waitIdle(server.pid);
        const begin = performance.now();
        const end = begin + secondsOf * 1000;
        let done = 0;
        let failures = 0;
        await Promise.all(
          Array.from({ length: CONCURRENCY }, async (_, worker) => {
            while (performance.now() < end) {
              const answer = await gql<LogAnswer>(url, key, LOG, {
                run: `w${worker}`,
                project,
                points: batch(project, worker),
              });
              const result = answer.data?.logRunMetrics;
              if (result?.acceptedPoints !== 100 || result.triggeredRuns?.length !== 0) {
                failures += 1;
                if (failures === 1)
                  context.log(`run-metrics: ${JSON.stringify(answer).slice(0, 300)}`);
              } else {
                done += 1;
              }
            }
          }),
        );
        return { batches: done, seconds: (performance.now() - begin) / 1000, failures };
      };

      context.log('run-metrics: warming up');
      for (const project of projects) await load(project, context.quick ? 0.5 : 1);
      const totals = projects.map(() => ({ batches: 0, seconds: 0, failures: 0 }));
      for (let r = 0; r < rounds; r += 1) {
        context.log(`run-metrics: round ${r + 1} of ${rounds}`);
        for (const [i, project] of projects.entries()) {
          const got = await load(project, seconds);
          totals[i]!.batches += got.batches;
          totals[i]!.seconds += got.seconds;
          totals[i]!.failures += got.failures;
        }
      }
      const rate = (t: (typeof totals)[number]) => ({ ...t, perSecond: t.batches / t.seconds });
      const quiet = rate(totals[0]!);
      const watched = rate(totals[1]!);
      const ratio = watched.perSecond / quiet.perSecond;
      return [
        {
          figure: `logRunMetrics, batches of 100 points, 20 metric automations watching / none watching, ${CONCURRENCY} clients`,
          measured: formatRate(watched.perSecond, 'batches/s'),
          baseline: formatRate(quiet.perSecond, 'batches/s'),
          ratio: formatRatio(ratio),
          goal: `≥ ${GOAL}`,
          met: ratio >= GOAL && watched.failures + quiet.failures === 0,
          issue: 'new (issue 10)',
          values: {
            watchedBatchesPerSecond: round(watched.perSecond, 1),
            quietBatchesPerSecond: round(quiet.perSecond, 1),
            ratio: round(ratio),
            failures: watched.failures + quiet.failures,
          },
        },
      ];
    } finally {
      await server.stop();
    }
  },
};
