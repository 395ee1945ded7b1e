// Emit throughput with 200 graphql-ws subscribers connected (entity filter) against none, on
// the same server, rounds alternating. As in the emit figure, the runs' action points at the
// receiver's `/hang`, so runs stay QUEUED: each emit publishes one update, to every subscriber,
// and the engine adds nothing (see figures/emit.ts).
//
// With 200 subscribers, every emit is 200 messages for the bench's own core to receive, beside
// the load generator; the clients count them from their first bytes, without parsing (see
// openSubscribers). Once that core is full anyway (its share is shown), the rate measures the
// bench, not the server. The server's CPU per emit, with and without subscribers, is shown too: its
// ratio is what the server could do with a core of clients to spare.
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
import { cpuSeconds } from '../lib/process.js';
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
    /** Server CPU seconds and emits, per case, over the measured loads. */
    const cpu = { none: { seconds: 0, emits: 0 }, some: { seconds: 0, emits: 0 } };
    const measure = async (
      into: typeof cpu.none,
      secondsOf: number,
      drained?: (result: Throughput) => Promise<void>,
    ) => {
      const before = cpuSeconds(server.pid) ?? Number.NaN;
      const result = await load(secondsOf);
      await drained?.(result);
      into.seconds += (cpuSeconds(server.pid) ?? Number.NaN) - before;
      into.emits += result.requests;
      return result;
    };
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
        none.push(await measure(cpu.none, seconds));
        const clients = await openSubscribers({
          url: server.wsUrl,
          key: server.adminKey,
          count: SUBSCRIBERS,
          query: SUBSCRIPTION,
        });
        try {
          await whenAllLive(clients, SUBSCRIBERS, async () => {
            await gql(server.url, server.adminKey, EMIT, {
              entity: 'default',
              project: 'busy',
              v: 0,
            });
          });
          // Updates still on their way would spill server work into the next round; they are
          // the server's work for these emits, so its CPU is read once they have arrived.
          const result = await measure(cpu.some, seconds, async (done) => {
            const end = performance.now();
            await clients.waitForMessages(done.requests * SUBSCRIBERS, 1_000, 120_000);
            drainMs += Math.max(0, clients.lastAt - end);
          });
          some.push(result);
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
    const cpuPerEmitUs = (c: typeof cpu.none) => (c.seconds * 1e6) / c.emits;
    const cpuRatio = cpuPerEmitUs(cpu.none) / cpuPerEmitUs(cpu.some);
    const benchBound = withSubscribers.loadCpuShare >= 0.85;
    return [
      {
        figure: `emits per second with ${SUBSCRIBERS} subscribers connected / with none`,
        measured: `${formatRate(withSubscribers.perSecond, 'emits/s')} (bench core ${Math.round(withSubscribers.loadCpuShare * 100)} % busy${benchBound ? ': bound by the bench' : ''}); server CPU per emit ${cpuPerEmitUs(cpu.some).toFixed(0)} µs`,
        baseline: `${formatRate(without.perSecond, 'emits/s')}; ${cpuPerEmitUs(cpu.none).toFixed(0)} µs`,
        ratio: `${formatRatio(ratio)} (CPU per emit: ${formatRatio(cpuRatio)})`,
        goal: '≥ 0.5',
        met: ratio >= 0.5,
        issue: '≈ 0.1',
        values: {
          subscribers: SUBSCRIBERS,
          withPerSecond: round(withSubscribers.perSecond, 1),
          withoutPerSecond: round(without.perSecond, 1),
          ratio: round(ratio, 4),
          serverCpuPerEmitWithUs: round(cpuPerEmitUs(cpu.some), 1),
          serverCpuPerEmitWithoutUs: round(cpuPerEmitUs(cpu.none), 1),
          cpuRatio: round(cpuRatio, 4),
          updatesStillArrivingAfterLoadMs: Math.round(drainMs / rounds),
          failures: withSubscribers.failures + without.failures,
          loadCpuShareWith: round(withSubscribers.loadCpuShare, 2),
          loadCpuShareWithout: round(without.loadCpuShare, 2),
        },
      },
    ];
  },
};
