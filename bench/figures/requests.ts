// Request throughput, closed loop over 32 connections, on one server and in one run:
// - authenticated `{ __typename }` on Tripline against a bare graphql-yoga server answering the
//   same request (bench/baselines/bare-yoga.ts, also on the server core): the fixed cost
//   Tripline adds to every request;
// - emitArtifactEvent against that authenticated `{ __typename }`, in entities of 1,000 and
//   10,000 automations: an event no automation watches, one that 1 % of 1,000 automations watch
//   (10 runs), one that 1 % of 10,000 watch (100 runs).
// Rounds cycle through the five requests, so drift on this noisy machine hits all of them.
//
// The runs must not be delivered while emits are measured, or the figure would mix emitting
// with delivering. Their actions point at the receiver's `/hang`, which holds requests open:
// the engine claims its first `TRIPLINE_DELIVERY_CONCURRENCY` runs, is then full and claims
// nothing more, so every later run stays QUEUED exactly as the emit created it. Disabling the
// actions instead would make the engine claim and skip every run (engine work during the
// measurement); a fast receiver would add full deliveries. Holding them open leaves "runs
// created" and nothing else.
import {
  type BenchContext,
  type Figure,
  formatMs,
  formatRate,
  formatRatio,
  type Row,
  round,
} from '../lib/figure.js';
import { combine, gql, graphqlBody, hammer, type Throughput } from '../lib/http.js';
import { spawnNodeScript } from '../lib/process.js';
import { EMIT, type EmitAnswer, TYPENAME } from '../lib/queries.js';
import { cloneDataDir, seedAutomations } from '../lib/seed.js';

const CONNECTIONS = 32;

interface Case {
  figure: string;
  entity: string;
  project: string;
  runs: number;
  goal: number;
  issue: string;
}

const CASES: Case[] = [
  {
    figure: 'emitArtifactEvent / authenticated { __typename }, 10k automations, no match',
    entity: 'e10k',
    project: 'quiet',
    runs: 0,
    goal: 0.6,
    issue: '0.36',
  },
  {
    figure: 'same, 10 runs created (1 % of 1k automations)',
    entity: 'e1k',
    project: 'watched',
    runs: 10,
    goal: 0.4,
    issue: '0.11 (p99 343 ms)',
  },
  {
    figure: 'same, 100 runs created (1 % of 10k automations)',
    entity: 'e10k',
    project: 'watched',
    runs: 100,
    goal: 0.2,
    issue: '0.013 (p99 2.3 s)',
  },
];

export const requests: Figure = {
  id: 'requests',
  async run(context: BenchContext): Promise<Row[]> {
    const seconds = context.quick ? 2 : 5;
    const rounds = context.quick ? 1 : 3;
    // Started first, so its start-up overlaps the seeding and the server's.
    const bare = spawnNodeScript('bench/baselines/bare-yoga.ts');
    try {
      const dataDir = cloneDataDir(context.template.dataDir);
      context.log('requests: seeding 11,000 automations');
      seedAutomations(dataDir, {
        entity: 'e10k',
        action: 'hang',
        watching: { project: 'watched', count: 100 },
        elsewhere: 9_900,
      });
      seedAutomations(dataDir, {
        entity: 'e1k',
        action: 'hang',
        watching: { project: 'watched', count: 10 },
        elsewhere: 990,
      });
      const server = await context.startServer(dataDir);
      try {
        const [, bareUrl] = await bare.waitFor(/listening on (\S+)/);
        for (const url of [bareUrl!, server.url]) {
          const answer = await gql(url, server.adminKey, TYPENAME);
          if (answer.data?.__typename !== 'Query') {
            throw new Error(`${url} answered ${JSON.stringify(answer)}`);
          }
        }
        for (const c of CASES) {
          const answer = await gql<EmitAnswer>(server.url, server.adminKey, EMIT, {
            entity: c.entity,
            project: c.project,
            v: 0,
          });
          const runs = answer.data?.emitArtifactEvent.triggeredRuns?.length;
          if (runs !== c.runs) {
            throw new Error(`emit created ${runs} runs, not ${c.runs}: ${JSON.stringify(answer)}`);
          }
        }
        // The same headers go to both servers; the bare one ignores the key.
        const targets = [
          { url: bareUrl!, body: graphqlBody(TYPENAME) },
          { url: server.url, body: graphqlBody(TYPENAME) },
          ...CASES.map((c) => ({
            url: server.url,
            body: graphqlBody(EMIT, { entity: c.entity, project: c.project, v: 1 }),
          })),
        ];
        const load = (target: (typeof targets)[number], secondsOf: number) =>
          hammer({
            ...target,
            key: server.adminKey,
            connections: CONNECTIONS,
            seconds: secondsOf,
            idle: [server.pid, bare.pid],
          });
        context.log('requests: warming up');
        for (const target of targets) await load(target, context.quick ? 0.5 : 1);
        const measured: Throughput[][] = targets.map(() => []);
        for (let r = 0; r < rounds; r += 1) {
          context.log(`requests: round ${r + 1} of ${rounds}`);
          for (const [i, target] of targets.entries())
            measured[i]!.push(await load(target, seconds));
        }
        const [bareYoga, typename, ...emits] = measured.map(combine) as [
          Throughput,
          Throughput,
          ...Throughput[],
        ];
        const typenameRatio = typename.perSecond / bareYoga.perSecond;
        return [
          {
            figure: `authenticated { __typename } / bare graphql-yoga { __typename }, ${CONNECTIONS} connections`,
            measured: formatRate(typename.perSecond, 'req/s'),
            baseline: formatRate(bareYoga.perSecond, 'req/s'),
            ratio: formatRatio(typenameRatio),
            goal: '≥ 0.7',
            met: typenameRatio >= 0.7,
            issue: '≈ 0.35 (1.5k vs 4.5k req/s)',
            values: {
              authenticatedPerSecond: round(typename.perSecond, 1),
              barePerSecond: round(bareYoga.perSecond, 1),
              ratio: round(typenameRatio),
              authenticatedP99Ms: typename.latencyP99Ms,
              bareP99Ms: bareYoga.latencyP99Ms,
              failures: typename.failures + bareYoga.failures,
              loadCpuShareBare: round(bareYoga.loadCpuShare, 2),
              loadCpuShareAuthenticated: round(typename.loadCpuShare, 2),
            },
          },
          ...CASES.map((c, i) => {
            const e = emits[i]!;
            const ratio = e.perSecond / typename.perSecond;
            return {
              figure: c.figure,
              measured: `${formatRate(e.perSecond, 'emits/s')}${c.runs > 0 ? `, p99 ${formatMs(e.latencyP99Ms)}` : ''}`,
              baseline: formatRate(typename.perSecond, 'req/s'),
              ratio: formatRatio(ratio),
              goal: `≥ ${c.goal}`,
              met: ratio >= c.goal,
              issue: c.issue,
              values: {
                emitsPerSecond: round(e.perSecond, 1),
                typenamePerSecond: round(typename.perSecond, 1),
                ratio: round(ratio, 4),
                runsPerEmit: c.runs,
                emitP50Ms: e.latencyP50Ms,
                emitP99Ms: e.latencyP99Ms,
                failures: e.failures,
                loadCpuShare: round(e.loadCpuShare, 2),
              },
            };
          }),
        ];
      } finally {
        await server.stop();
      }
    } finally {
      await bare.stop();
    }
  },
};
