// Emit throughput with 200 graphql-ws subscribers connected (entity filter) against none, on
// the same server, rounds alternating. As in the emit figure, the runs' action points at the
// receiver's `/hang`, so runs stay QUEUED: each emit publishes one update, to every subscriber,
// and the engine adds nothing (see figures/emit.ts).
import { performance } from 'node:perf_hooks';
import {
  type BenchContext,
  type Figure,
  formatRate,
  formatRatio,
  type Row,
  round,
} from '../lib/figure.js';
import { combine, gql, graphqlBody, hammer, type Throughput } from '../lib/http.js';
import { EMIT, type EmitAnswer, SUBSCRIPTION } from '../lib/queries.js';
import { cloneDataDir } from '../lib/seed.js';
import { openSubscribers, whenAllLive } from '../lib/sockets.js';

const SUBSCRIBERS = 200;
const CONNECTIONS = 32;

export const emitSubscribers: Figure = {
  id: 'emit-subscribers',
  async run(context: BenchContext): Promise<Row[]> {
    const seconds = context.quick ? 2 : 5;
    const rounds = context.quick ? 1 : 2;
    const server = await context.startServer(cloneDataDir(context.template.dataDir));
    const body = graphqlBody(EMIT, { entity: 'default', project: 'busy', v: 1 });
    const load = (secondsOf: number) =>
      hammer({
        idle: [server.pid],
        url: server.url,
        key: server.adminKey,
        body,
        connections: CONNECTIONS,
        seconds: secondsOf,
      });
    const none: Throughput[] = [];
    const some: Throughput[] = [];
    let drainMs = 0;
    try {
      const answer = await gql<EmitAnswer>(server.url, server.adminKey, EMIT, {
        entity: 'default',
        project: 'busy',
        v: 0,
      });
      if (answer.data?.emitArtifactEvent.triggeredRuns?.length !== 1) {
        throw new Error(`emit answered ${JSON.stringify(answer)}`);
      }
      context.log('emit-subscribers: warming up');
      await load(context.quick ? 0.5 : 1);
      for (let r = 0; r < rounds; r += 1) {
        context.log(`emit-subscribers: round ${r + 1} of ${rounds}`);
        none.push(await load(seconds));
        const clients = await openSubscribers({
          url: server.wsUrl,
          key: server.adminKey,
          count: SUBSCRIBERS,
          query: SUBSCRIPTION,
          onData: () => {},
        });
        try {
          await whenAllLive(clients, SUBSCRIBERS, async () => {
            await gql(server.url, server.adminKey, EMIT, {
              entity: 'default',
              project: 'busy',
              v: 0,
            });
          });
          const result = await load(seconds);
          some.push(result);
          // Updates still on their way would spill server work into the next round.
          const end = performance.now();
          await clients.waitForMessages(result.requests * SUBSCRIBERS, 1_000, 120_000);
          drainMs += Math.max(0, clients.lastAt - end);
        } finally {
          await clients.close();
        }
      }
    } finally {
      await server.stop();
    }
    const without = combine(none);
    const withSubscribers = combine(some);
    const ratio = withSubscribers.perSecond / without.perSecond;
    return [
      {
        figure: `emits per second with ${SUBSCRIBERS} subscribers connected / with none`,
        measured: formatRate(withSubscribers.perSecond, 'emits/s'),
        baseline: formatRate(without.perSecond, 'emits/s'),
        ratio: formatRatio(ratio),
        goal: '≥ 0.5',
        met: ratio >= 0.5,
        issue: '≈ 0.1',
        values: {
          subscribers: SUBSCRIBERS,
          withPerSecond: round(withSubscribers.perSecond, 1),
          withoutPerSecond: round(without.perSecond, 1),
          ratio: round(ratio, 4),
          updatesStillArrivingAfterLoadMs: Math.round(drainMs / rounds),
          failures: withSubscribers.failures + without.failures,
          loadCpuShareWith: round(withSubscribers.loadCpuShare, 2),
          loadCpuShareWithout: round(without.loadCpuShare, 2),
        },
      },
    ];
  },
};
