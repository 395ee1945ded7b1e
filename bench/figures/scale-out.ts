// Scale-out: runs delivered per second to the fast receiver by one Tripline instance, and by two
// instances sharing one PostgreSQL database and one Redis (issue 12, item 4). Each instance has a
// data directory of its own and the same TRIPLINE_ENCRYPTION_KEY, as the README's deployment
// section asks. PostgreSQL and Redis are private servers the figure starts (lib/services.ts), so
// the figure runs on PostgreSQL whatever --database says.
//
// Runs are queued before the instances start (lib/seed.ts, copied into PostgreSQL by
// lib/postgres.ts). The instances start together, and the window opens once all of them are up,
// so the two-instance rate is not the first one's alone; it closes at the last queued run's
// arrival. After it, the API must show every run SUCCEEDED and the receiver must have counted
// no more arrivals than runs: no run was delivered twice. A full run measures one instance, two,
// two, one, each on a fresh queue, and reports the means; --quick one of each, 2,000 runs.
//
// Pinning on two cores (when the bench is pinned): the bench process — receiver included — is
// on core 1, as in every figure; PostgreSQL and Redis run on both cores; the single instance is on
// core 0, as every figure's server; of the two instances, one is on core 0 and the other on
// core 1, beside the receiver. So the second instance adds what core 1 has left, and the ratio
// is a floor for an instance on a machine of its own.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { type DeliveryMeasurement, measureDeliveries } from '../lib/deliveries.js';
import {
  type BenchContext,
  type Figure,
  formatRate,
  formatRatio,
  type Row,
  round,
} from '../lib/figure.js';
import { gql } from '../lib/http.js';
import { postgresCopyOf } from '../lib/postgres.js';
import { isPinned, LOAD_CORE, SERVER_CORE } from '../lib/process.js';
import { cloneDataDir, seedQueuedRuns } from '../lib/seed.js';
import type { TriplineServer } from '../lib/server.js';
import { startBenchServices } from '../lib/services.js';

/**
 * Per instance. The higher of the delivery figure's two: at 8 an instance waits on round trips
 * more than it computes, and a second instance would gain from doubling the slots alone.
 */
const CONCURRENCY = 64;
const TIMEOUT_MS = 300_000;

const SUCCEEDED = `{ entity(name: "default") {
  triggeredRuns(first: 1, filter: { statuses: [SUCCEEDED] }) { totalCount } } }`;

interface Succeeded {
  entity: { triggeredRuns: { totalCount: number } };
}

/**
 * The mean of rounds of the same measurement: rates, CPU shares (per process position, and per
 * group summed for PostgreSQL, whose backends come and go) and counts.
 */
function combine(rounds: readonly DeliveryMeasurement[]): DeliveryMeasurement {
  const mean = (pick: (m: DeliveryMeasurement) => number) =>
    rounds.reduce((sum, m) => sum + pick(m), 0) / rounds.length;
  const groups = Object.keys(rounds[0]!.cpuShares);
  return {
    ...rounds[0]!,
    perSecond: mean((m) => m.perSecond),
    inWindow: mean((m) => m.inWindow),
    receiverCpuShare: mean((m) => m.receiverCpuShare),
    cpuShares: Object.fromEntries(
      groups.map((group) => {
        const shares = (m: DeliveryMeasurement) => m.cpuShares[group] ?? [];
        return group === 'postgres'
          ? [group, [mean((m) => shares(m).reduce((sum, s) => sum + s, 0))]]
          : [group, shares(rounds[0]!).map((_, i) => mean((m) => shares(m)[i] ?? Number.NaN))];
      }),
    ),
    arrivedInAll: mean((m) => m.arrivedInAll),
  };
}

/** The PostgreSQL backends serving `databaseUrl`: the instances' pooled connections. */
async function backendsOf(databaseUrl: string): Promise<number[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>(
      'SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
    );
    return rows.map((row) => row.pid);
  } finally {
    await client.end();
  }
}

export const scaleOut: Figure = {
  id: 'scale-out',
  async run(context: BenchContext): Promise<Row[]> {
    const runs = context.quick ? 2_000 : 5_000;
    const secret = context.template.fastSigningSecret;
    const { receiver, template } = context;
    const encryptionKey = readFileSync(join(template.dataDir, 'master.key'), 'utf8').trim();
    const cores = (i: number) => (i === 0 ? SERVER_CORE : LOAD_CORE);
    const pinning = isPinned()
      ? `one instance on core ${SERVER_CORE}; two on cores ${SERVER_CORE} and ${LOAD_CORE}; receiver on core ${LOAD_CORE}; PostgreSQL and Redis on both`
      : 'unpinned';

    context.log('scale-out: starting private PostgreSQL and Redis');
    const services = await startBenchServices();
    try {
      /** Queues `runs` runs in a new database, starts `count` instances on it, measures. */
      const measure = async (count: number): Promise<DeliveryMeasurement> => {
        context.log(
          `scale-out: ${runs} queued runs, ${count} instance(s), concurrency ${CONCURRENCY}`,
        );
        const seeded = cloneDataDir(template.dataDir);
        seedQueuedRuns(seeded, { entity: 'default', automation: 'deliveries', count: runs });
        const databaseUrl = await postgresCopyOf(seeded, services.postgres.url);
        const env = {
          TRIPLINE_DATABASE_URL: databaseUrl,
          TRIPLINE_REDIS_URL: services.redis.url,
          TRIPLINE_REDIS_PREFIX: `bench-scale-${count}:`,
          TRIPLINE_ENCRYPTION_KEY: encryptionKey,
          TRIPLINE_DELIVERY_CONCURRENCY: String(CONCURRENCY),
        };
        // Each its own data directory (lock, admin-api-key as the first start wrote it).
        const dataDirs = [seeded, ...Array.from({ length: count - 1 }, () => cloneDataDir(seeded))];
        let servers: TriplineServer[] = [];
        const result = await measureDeliveries({
          receiver,
          runs,
          secret,
          from: 'started',
          timeoutMs: TIMEOUT_MS,
          cpuOf: {
            instances: async () => servers.map((s) => s.pid),
            postgres: () => backendsOf(databaseUrl),
          },
          async start() {
            const started = await Promise.allSettled(
              dataDirs.map((dir, i) => context.startServer(dir, env, { cores: cores(i) })),
            );
            servers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
            const stopAll = () => Promise.all(servers.map((s) => s.stop()));
            const failed = started.find((s) => s.status === 'rejected');
            if (failed) {
              await stopAll();
              throw failed.reason;
            }
            return stopAll;
          },
          async afterwards() {
            // The run's SUCCEEDED is written after its request is answered.
            const deadline = Date.now() + 30_000;
            let done = 0;
            while (done < runs && Date.now() < deadline) {
              const answer = await gql<Succeeded>(servers[0]!.url, servers[0]!.adminKey, SUCCEEDED);
              done = answer.data?.entity.triggeredRuns.totalCount ?? 0;
              if (done < runs) await new Promise((resolve) => setTimeout(resolve, 100));
            }
            if (done !== runs) {
              throw new Error(
                `scale-out: ${done} of ${runs} runs SUCCEEDED 30 s after the last arrival`,
              );
            }
          },
        });
        if (!result.signed)
          throw new Error("scale-out: a delivery was not signed with the action's secret");
        return result;
      };

      // One, two, two, one: on a shared machine whose load drifts, a drift that is steady over the
      // rounds weighs on both alike. --quick takes one of each.
      const order = context.quick ? [1, 2] : [1, 2, 2, 1];
      const measured: Record<number, DeliveryMeasurement[]> = { 1: [], 2: [] };
      for (const count of order) measured[count]!.push(await measure(count));
      const one = combine(measured[1]!);
      const two = combine(measured[2]!);
      const ratio = two.perSecond / one.perSecond;
      const percent = (share: number) => `${Math.round(share * 100)} %`;
      const instances = (m: DeliveryMeasurement) => m.cpuShares.instances ?? [];
      const postgres = (m: DeliveryMeasurement) =>
        (m.cpuShares.postgres ?? []).reduce((sum, s) => sum + s, 0);
      const cpu = (m: DeliveryMeasurement) =>
        `CPU ${instances(m).map(percent).join(' + ')} of a core, PostgreSQL ${percent(postgres(m))}`;
      return [
        {
          figure: `runs delivered per second to a fast receiver, two instances / one, same PostgreSQL and Redis, concurrency ${CONCURRENCY} each, ${runs.toLocaleString('en')} runs queued (${pinning})`,
          measured: `${formatRate(two.perSecond, 'runs/s')} (${cpu(two)})`,
          baseline: `${formatRate(one.perSecond, 'runs/s')} (${cpu(one)})`,
          ratio: formatRatio(ratio),
          goal: '> 1',
          met: ratio > 1,
          issue: '—',
          values: {
            runs,
            rounds: order.length / 2,
            oneInstanceRoundsRunsPerSecond: measured[1]!
              .map((m) => round(m.perSecond, 1))
              .join(' / '),
            twoInstancesRoundsRunsPerSecond: measured[2]!
              .map((m) => round(m.perSecond, 1))
              .join(' / '),
            concurrency: CONCURRENCY,
            pinning,
            oneInstanceRunsPerSecond: round(one.perSecond, 1),
            twoInstancesRunsPerSecond: round(two.perSecond, 1),
            ratio: round(ratio, 3),
            oneInstanceCpuShare: round(instances(one)[0]!, 2),
            twoInstancesCpuShares: instances(two)
              .map((s) => round(s, 2))
              .join(' + '),
            onePostgresCpuShare: round(postgres(one), 2),
            twoPostgresCpuShare: round(postgres(two), 2),
            oneReceiverCpuShare: round(one.receiverCpuShare, 2),
            twoReceiverCpuShare: round(two.receiverCpuShare, 2),
            // Delivered before the last instance was up, so outside the window.
            oneBeforeWindow: Math.round(runs - one.inWindow),
            twoBeforeWindow: Math.round(runs - two.inWindow),
            duplicates: [...measured[1]!, ...measured[2]!].reduce(
              (sum, m) => sum + m.arrivedInAll - runs,
              0,
            ),
          },
        },
      ];
    } finally {
      await services.stop();
    }
  },
};
