// Counting deliveries at the receiver: what the delivery figures share (figures/delivery.ts,
// figures/backlog.ts, figures/scale-out.ts).
import { verifySignature } from '../../src/delivery/signing.js';
import type { BenchContext } from './figure.js';
import { cpuShare } from './http.js';
import { cpuSeconds } from './process.js';
import type { Arrival, Receiver } from './receiver.js';

export interface DeliveryMeasurement {
  /** Arrivals per second within the window, from its first arrival to the `runs`-th overall. */
  perSecond: number;
  /** Arrivals counted in the window; the rest arrived before it opened (see `from`). */
  inWindow: number;
  /** Share of a core the receiver's process used meanwhile; near 1, it set the pace. */
  receiverCpuShare: number;
  /** Share of a core each process of each `cpuOf` group used meanwhile, in the group's order. */
  cpuShares: Record<string, number[]>;
  /** Whether the first request's Standard Webhooks signature verified with the action's secret. */
  signed: boolean;
  body: Buffer;
  /** Every arrival from before `start` until after `afterwards`: more than `runs` are duplicates. */
  arrivedInAll: number;
}

export interface MeasureOptions {
  receiver: Receiver;
  /** Arrivals to wait for, counted from before `start`. */
  runs: number;
  /** The `whsec_…` secret the first request must be signed with. */
  secret: string;
  /** Starts what delivers; resolves with the function that stops it. */
  start: () => Promise<() => Promise<unknown>>;
  /**
   * Where the window opens: at the first arrival (the default), or once `start` has resolved —
   * for several servers, so the rate is that of all of them, not of the first one up alone.
   */
  from?: 'first-arrival' | 'started';
  /**
   * Groups of processes whose CPU use over the window to report (servers under test, database
   * backends), each listed when the window opens and again when it closes; a process first
   * listed at the close is counted as started within the window.
   */
  cpuOf?: Record<string, () => Promise<readonly number[]>>;
  /** Runs after the `runs`-th arrival, before stopping (a check through the API, say). */
  afterwards?: () => Promise<void>;
  timeoutMs?: number;
}

/**
 * Counts `options.runs` arrivals at the receiver's `/ok` while `start`'s deliverers run, then
 * stops them; keeps the first request to check its signature and to reuse its body.
 */
export async function measureDeliveries(options: MeasureOptions): Promise<DeliveryMeasurement> {
  const { receiver, runs } = options;
  const timeoutMs = options.timeoutMs ?? 300_000;
  let first: Arrival | undefined;
  const stopInspecting = receiver.inspect((arrival) => {
    first ??= arrival;
    stopInspecting();
  });
  const all = receiver.count();
  let window = all;
  let stop: (() => Promise<unknown>) | undefined;
  let arrivedInAll = 0;
  let cpu = process.cpuUsage();
  const groups = Object.entries(options.cpuOf ?? {});
  const before = new Map<number, number | undefined>();
  const cpuShares: Record<string, number[]> = {};
  let perSecond = 0;
  let inWindow = 0;
  let receiverCpuShare = 0;
  try {
    stop = await options.start();
    if (options.from === 'started') window = receiver.count();
    await window.waitFor(1, timeoutMs);
    cpu = process.cpuUsage();
    for (const [, list] of groups) for (const pid of await list()) before.set(pid, cpuSeconds(pid));
    await all.waitFor(runs, timeoutMs);
    // Taken now: arrivals after the `runs`-th (duplicates) stay out of the rate.
    const seconds = (window.last - window.first) / 1000;
    perSecond = window.rate();
    inWindow = window.count;
    receiverCpuShare = cpuShare(cpu, seconds);
    for (const [name, list] of groups) {
      cpuShares[name] = (await list()).map((pid) => {
        const now = cpuSeconds(pid);
        const then = before.has(pid) ? before.get(pid) : 0;
        return now === undefined || then === undefined ? Number.NaN : (now - then) / seconds;
      });
    }
    await options.afterwards?.();
    arrivedInAll = all.count;
  } finally {
    all.stop();
    window.stop();
    stopInspecting();
    await stop?.();
  }
  const signed = verifySignature({
    secret: options.secret,
    headers: first!.headers,
    body: first!.body,
  });
  return {
    perSecond,
    inWindow,
    receiverCpuShare,
    cpuShares,
    signed,
    body: first!.body,
    arrivedInAll,
  };
}

export interface ServerDeliveries extends DeliveryMeasurement {
  /** Share of a core the server's process used over the window. */
  serverCpuShare: number;
  /** The server's CPU per delivered run over the window, in microseconds. */
  serverCpuPerRunUs: number;
}

/**
 * Starts one server on `dataDir` (its runs queued beforehand) with `env`, and measures its
 * deliveries of `runs` runs to the shared receiver with its CPU over the window.
 */
export async function measureServerDeliveries(
  context: BenchContext,
  options: { dataDir: string; runs: number; env: Record<string, string>; timeoutMs?: number },
): Promise<ServerDeliveries> {
  let serverPid: number | undefined;
  const measured = await measureDeliveries({
    receiver: context.receiver,
    runs: options.runs,
    secret: context.template.fastSigningSecret,
    start: async () => {
      const started = await context.startServer(options.dataDir, options.env);
      serverPid = started.pid;
      return () => started.stop();
    },
    cpuOf: { server: async () => (serverPid === undefined ? [] : [serverPid]) },
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
  });
  const serverCpuShare = measured.cpuShares.server?.[0] ?? Number.NaN;
  return {
    ...measured,
    serverCpuShare,
    serverCpuPerRunUs: (serverCpuShare / measured.perSecond) * 1e6,
  };
}
