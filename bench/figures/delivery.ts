// Delivery throughput: runs delivered per second by the engine, against a raw undici loop that
// POSTs the same signed body to the same receiver with the same number of requests in flight.
// Both are counted by the receiver, from the first arrival to the last, so start-up is left out.
// The runs are queued before the server starts (lib/seed.ts), so the engine finds a full queue.

import {
  type DeliveryMeasurement,
  measureDeliveries,
  measureServerDeliveries,
  type ServerDeliveries,
} from '../lib/deliveries.js';
import {
  type BenchContext,
  type Figure,
  formatRate,
  formatRatio,
  type Row,
  round,
} from '../lib/figure.js';
import { spawnNodeScript } from '../lib/process.js';
import { cloneDataDir, seedQueuedRuns } from '../lib/seed.js';

const CONCURRENCIES = [8, 64] as const;
const TIMEOUT_MS = 300_000;

export const delivery: Figure = {
  id: 'delivery',
  async run(context: BenchContext): Promise<Row[]> {
    const runs = context.quick ? 500 : 5_000;
    const secret = context.template.fastSigningSecret;
    const { receiver } = context;

    const results: { concurrency: number; server: ServerDeliveries; raw: DeliveryMeasurement }[] =
      [];
    for (const concurrency of CONCURRENCIES) {
      context.log(`delivery: ${runs} queued runs, concurrency ${concurrency}`);
      const dataDir = cloneDataDir(context.template.dataDir);
      seedQueuedRuns(dataDir, { entity: 'default', automation: 'deliveries', count: runs });
      // Started now so its start-up overlaps the server's; it idles until given the body.
      const loop = spawnNodeScript('bench/baselines/undici-loop.ts', {
        args: [`${receiver.url}/ok`, String(concurrency), String(runs)],
        env: { BENCH_SIGNING_SECRET: secret },
      });
      try {
        const server = await measureServerDeliveries(context, {
          dataDir,
          runs,
          env: { TRIPLINE_DELIVERY_CONCURRENCY: String(concurrency) },
          timeoutMs: TIMEOUT_MS,
        });
        context.log(`delivery: raw undici loop, concurrency ${concurrency}`);
        await loop.waitFor(/^ready$/m);
        const raw = await measureDeliveries({
          receiver,
          runs,
          secret,
          timeoutMs: TIMEOUT_MS,
          start: async () => {
            loop.child.stdin?.write(`${server.body.toString('base64')}\n`);
            return async () => {
              const code = await loop.exited;
              if (code !== 0) throw new Error(`undici loop exited with ${code}:\n${loop.output()}`);
            };
          },
        });
        results.push({ concurrency, server, raw });
      } finally {
        await loop.stop();
      }
    }
    const ratios = results.map((r) => r.server.perSecond / r.raw.perSecond);
    // The server's share of its core, and its CPU per delivered run: whether the engine, not the
    // receiver or the pace of round trips, sets the rate, and what a change saved per run.
    const serverCpu = results.map((r) => r.server.serverCpuShare);
    const cpuPerRunUs = results.map((r) => r.server.serverCpuPerRunUs);
    const both = (pick: (r: (typeof results)[number], i: number) => string) =>
      results.map(pick).join(' / ');
    return [
      {
        figure: `runs delivered per second / raw undici loop POSTing the same signed bodies to the same receiver, concurrency ${CONCURRENCIES.join(' and ')}, ${runs.toLocaleString('en')} runs queued`,
        measured: `${both((r) => formatRate(r.server.perSecond, 'runs/s'))} (server CPU ${both((_, i) => `${round(serverCpu[i]!, 2)}`)} of a core, ${both((_, i) => `${Math.round(cpuPerRunUs[i]!)}`)} µs per run)`,
        baseline: both((r) => formatRate(r.raw.perSecond, 'req/s')),
        ratio: both((_, i) => formatRatio(ratios[i]!)),
        goal: '≥ 0.5 both',
        met: ratios.every((ratio) => ratio >= 0.5),
        issue: '0.05 / 0.07',
        values: {
          runs,
          ...Object.fromEntries(
            results.flatMap((r, i) => [
              [`c${r.concurrency}RunsPerSecond`, round(r.server.perSecond, 1)],
              [`c${r.concurrency}RawPerSecond`, round(r.raw.perSecond, 1)],
              [`c${r.concurrency}Ratio`, round(ratios[i]!, 4)],
              [`c${r.concurrency}ReceiverCpuShare`, round(r.server.receiverCpuShare, 2)],
              [`c${r.concurrency}ServerCpuShare`, round(serverCpu[i]!, 2)],
              [`c${r.concurrency}ServerCpuPerRunUs`, Math.round(cpuPerRunUs[i]!)],
              [`c${r.concurrency}RawReceiverCpuShare`, round(r.raw.receiverCpuShare, 2)],
            ]),
          ),
          bodyBytes: results[0]!.server.body.length,
          signaturesVerified: results.every((r) => r.server.signed && r.raw.signed),
        },
      },
    ];
  },
};
