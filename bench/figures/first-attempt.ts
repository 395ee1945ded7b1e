// Latency from emitting an event to its run's first attempt arriving at the receiver, with
// events coming in at a steady 50 per second (open loop, one run each). The server's CPU per
// event (emit and delivery, warm-up included) is shown beside it: near a whole core at this
// rate, the server queues, and the latency is queueing, not the path. Each event carries its
// own version index, which the default payload repeats, so the receiver can tell which emit a
// request belongs to.
import { performance } from 'node:perf_hooks';
import { type BenchContext, type Figure, formatMs, type Row, round } from '../lib/figure.js';
import { gql, paced } from '../lib/http.js';
import { cpuSeconds } from '../lib/process.js';
import { EMIT, type EmitAnswer } from '../lib/queries.js';
import { cloneDataDir } from '../lib/seed.js';
import { summarize } from '../lib/stats.js';

const PER_SECOND = 50;

export const firstAttempt: Figure = {
  id: 'first-attempt',
  async run(context: BenchContext): Promise<Row[]> {
    const warm = PER_SECOND * (context.quick ? 1 : 3);
    const measured = PER_SECOND * (context.quick ? 4 : 20);
    const server = await context.startServer(cloneDataDir(context.template.dataDir));
    const sentAt = new Map<number, number>();
    const latencies: number[] = [];
    const emitMs: number[] = [];
    const counter = context.receiver.count();
    let cpuBefore = Number.NaN;
    let cpu = Number.NaN;
    const stopInspecting = context.receiver.inspect((arrival) => {
      const index = (
        JSON.parse(arrival.body.toString('utf8')) as { artifact_version_index: number }
      ).artifact_version_index;
      const sent = sentAt.get(index);
      if (sent !== undefined && index >= warm) latencies.push(arrival.at - sent);
    });
    try {
      context.log(
        `first-attempt: ${warm + measured} events at ${PER_SECOND}/s, the first ${warm} to warm up`,
      );
      cpuBefore = cpuSeconds(server.pid) ?? Number.NaN;
      await paced(warm + measured, PER_SECOND, async (i) => {
        sentAt.set(i, performance.now());
        const answer = await gql<EmitAnswer>(server.url, server.adminKey, EMIT, {
          entity: 'default',
          project: 'latency',
          v: i,
        });
        if (answer.data?.emitArtifactEvent.triggeredRuns?.length !== 1) {
          throw new Error(`emit answered ${JSON.stringify(answer)}`);
        }
        if (i >= warm) emitMs.push(answer.ms);
      });
      await counter.waitFor(warm + measured, 60_000);
      cpu = (cpuSeconds(server.pid) ?? Number.NaN) - cpuBefore;
    } finally {
      stopInspecting();
      counter.stop();
      await server.stop();
    }
    const latency = summarize(latencies);
    const cpuPerEventMs = (cpu * 1000) / (warm + measured);
    const emitted = summarize(emitMs);
    return [
      {
        figure: `event → first attempt arriving at the receiver, ${PER_SECOND} events/s`,
        measured: `p50 ${formatMs(latency.p50)}, p99 ${formatMs(latency.p99)} (server CPU ${cpuPerEventMs.toFixed(1)} ms per event: ${Math.round((cpuPerEventMs * PER_SECOND) / 10)} % of a core)`,
        baseline: '—',
        ratio: '—',
        goal: 'p50 < 3 ms, p99 < 15 ms',
        met: latency.p50 < 3 && latency.p99 < 15,
        issue: 'p50 7.3 ms, p99 25 ms',
        values: {
          events: latency.count,
          p50Ms: round(latency.p50),
          p99Ms: round(latency.p99),
          maxMs: round(latency.max),
          emitResponseP50Ms: round(emitted.p50),
          emitResponseP99Ms: round(emitted.p99),
          serverCpuPerEventMs: round(cpuPerEventMs, 2),
        },
      },
    ];
  },
};
