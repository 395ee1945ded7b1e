// Fan-out of run updates to 1,000 graphql-ws subscribers (filtered by entity), against a raw
// `ws` server broadcasting frames of the same size at the same rate to 1,000 plain clients.
// Compared: server CPU time (from /proc) per message delivered, until every message arrived.
// Also: emit → receipt latency of each run's QUEUED update at each subscriber, and the server's
// resident memory per connected subscriber, read after a full GC. RSS moves in whole pages and
// V8 keeps freed pages for a while, so it varies between runs by several KB per subscriber, and
// can even fall while subscribers connect (the heap reuses pages it had, and returns others); the
// V8 heap in use, shown beside it, is the steadier number. When RSS moved less than the heap, the
// figure is the heap: the subscribers hold at least that.
//
// "10 run updates per second": one event every 300 ms creates one run, delivered to the fast
// receiver, so each run publishes QUEUED, RUNNING and SUCCEEDED.
import { performance } from 'node:perf_hooks';
import {
  type BenchContext,
  type Figure,
  formatMs,
  formatRatio,
  type Row,
  round,
} from '../lib/figure.js';
import { gql, paced } from '../lib/http.js';
import { cpuSeconds, type NodeChild, rssBytes, spawnNodeScript } from '../lib/process.js';
import { EMIT, type EmitAnswer, SUBSCRIPTION } from '../lib/queries.js';
import { cloneDataDir } from '../lib/seed.js';
import { openRawClients, openSubscribers, whenAllLive } from '../lib/sockets.js';
import { sleep, summarize } from '../lib/stats.js';

const SUBSCRIBERS = 1_000;
const UPDATES_PER_SECOND = 10;
const UPDATES_PER_RUN = 3;

interface RunUpdate {
  id: string;
  status: string;
}

const formatUs = (seconds: number) => `${(seconds * 1e6).toFixed(1)} µs`;

/** Bytes per subscriber in KB, as the table prints them. */
const kb = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KB`;

export const subscribers: Figure = {
  id: 'subscribers',
  async run(context: BenchContext): Promise<Row[]> {
    // The baseline starts now so its start-up overlaps the server's; it idles until told to send.
    const broadcaster = spawnNodeScript('bench/baselines/ws-broadcast.ts');
    try {
      return await measureBoth(context, broadcaster);
    } finally {
      await broadcaster.stop();
    }
  },
};

/** Tripline's fan-out, then the raw broadcast's, and the rows comparing them. */
async function measureBoth(context: BenchContext, broadcaster: NodeChild): Promise<Row[]> {
  const events = context.quick ? 6 : 50;
  const updates = events * UPDATES_PER_RUN;
  // The inspector is there to run a full GC before each memory reading; no session is attached
  // while CPU is measured.
  const server = await context.startServer(cloneDataDir(context.template.dataDir), undefined, {
    inspect: true,
  });
  const emitLive = (v: number) =>
    gql<EmitAnswer>(server.url, server.adminKey, EMIT, { entity: 'default', project: 'live', v });
  let tripline: { cpu: number; messages: number; bytes: number; latencies: number[] };
  let rssPerSubscriber: number;
  let heapPerSubscriber: number;
  let complete: boolean;
  try {
    for (let v = 0; v < 5; v += 1) await emitLive(v);
    await server.collectGarbage();
    const rssBefore = rssBytes(server.pid) ?? Number.NaN;
    const heapBefore = await server.heapUsed();
    const queuedAt: { id: string; at: number }[] = [];
    context.log(`subscribers: connecting ${SUBSCRIBERS} graphql-ws subscribers`);
    const clients = await openSubscribers({
      url: server.wsUrl,
      key: server.adminKey,
      count: SUBSCRIBERS,
      query: SUBSCRIPTION,
      onData: (data, received) => {
        const run = data.triggeredRunUpdated as RunUpdate;
        if (run.status === 'QUEUED') queuedAt.push({ id: run.id, at: received.at });
      },
    });
    try {
      let probe = 5;
      await whenAllLive(clients, SUBSCRIBERS, async () => {
        probe += 1;
        await emitLive(probe);
      });
      queuedAt.length = 0;
      await server.collectGarbage();
      rssPerSubscriber = ((rssBytes(server.pid) ?? Number.NaN) - rssBefore) / SUBSCRIBERS;
      heapPerSubscriber = ((await server.heapUsed()) - heapBefore) / SUBSCRIBERS;

      context.log(
        `subscribers: ${events} runs, ${UPDATES_PER_SECOND} updates/s, to ${SUBSCRIBERS} subscribers`,
      );
      const sentAt = new Map<string, number>();
      const cpuBefore = cpuSeconds(server.pid) ?? Number.NaN;
      await paced(events, UPDATES_PER_SECOND / UPDATES_PER_RUN, async (i) => {
        const sent = performance.now();
        const answer = await emitLive(1_000 + i);
        const run = answer.data?.emitArtifactEvent.triggeredRuns?.[0];
        if (!run) throw new Error(`emit answered ${JSON.stringify(answer)}`);
        sentAt.set(run.id, sent);
      });
      complete = await clients.waitForMessages(updates * SUBSCRIBERS, 10_000, 600_000);
      const cpu = (cpuSeconds(server.pid) ?? Number.NaN) - cpuBefore;
      const latencies = queuedAt.flatMap(({ id, at }) => {
        const sent = sentAt.get(id);
        return sent === undefined ? [] : [at - sent];
      });
      tripline = { cpu, messages: clients.messages, bytes: clients.bytes, latencies };
    } finally {
      await clients.close();
    }
  } finally {
    await server.stop();
  }

  context.log(`subscribers: raw ws broadcast to ${SUBSCRIBERS} clients`);
  const frameBytes = Math.round(tripline.bytes / tripline.messages);
  let raw: { cpu: number; messages: number; latencies: number[] };
  {
    const [, port] = await broadcaster.waitFor(/listening on (\d+)/);
    const latencies: number[] = [];
    const clients = await openRawClients({
      url: `ws://127.0.0.1:${port}`,
      count: SUBSCRIBERS,
      onFrame: (ms) => latencies.push(ms),
    });
    try {
      await sleep(500);
      const cpuBefore = cpuSeconds(broadcaster.pid) ?? Number.NaN;
      broadcaster.child.stdin?.write(`broadcast ${frameBytes} ${UPDATES_PER_SECOND} ${updates}\n`);
      await clients.waitForMessages(updates * SUBSCRIBERS, 10_000, 600_000);
      raw = {
        cpu: (cpuSeconds(broadcaster.pid) ?? Number.NaN) - cpuBefore,
        messages: clients.messages,
        latencies,
      };
    } finally {
      await clients.close();
    }
  }

  const perMessage = tripline.cpu / tripline.messages;
  const rawPerMessage = raw.cpu / raw.messages;
  const ratio = rawPerMessage / perMessage;
  const latency = summarize(tripline.latencies);
  const rawLatency = summarize(raw.latencies);
  const expected = updates * SUBSCRIBERS;
  return [
    {
      figure: `${SUBSCRIBERS.toLocaleString('en')} graphql-ws subscribers (entity filter), ${UPDATES_PER_SECOND} run updates/s: server CPU per delivered message vs a raw ws broadcast of same-size frames`,
      measured: `${formatUs(perMessage)}; emit → receipt p50 ${formatMs(latency.p50)}, p99 ${formatMs(latency.p99)}${complete ? '' : ` (${tripline.messages} of ${expected} arrived)`}`,
      baseline: `${formatUs(rawPerMessage)} (${frameBytes}-byte frames; p99 ${formatMs(rawLatency.p99)})`,
      ratio: formatRatio(ratio),
      goal: '≥ 0.33; emit → receipt p99 < 100 ms',
      met: ratio >= 0.33 && latency.p99 < 100,
      issue: '235 µs vs 14 µs (0.06); p50 latency 14 s',
      values: {
        subscribers: SUBSCRIBERS,
        updates,
        messages: tripline.messages,
        expectedMessages: expected,
        frameBytes,
        serverCpuSeconds: round(tripline.cpu, 2),
        cpuPerMessageUs: round(perMessage * 1e6, 2),
        rawCpuSeconds: round(raw.cpu, 2),
        rawMessages: raw.messages,
        rawCpuPerMessageUs: round(rawPerMessage * 1e6, 2),
        ratio: round(ratio, 4),
        emitToReceiptP50Ms: round(latency.p50, 1),
        emitToReceiptP99Ms: round(latency.p99, 1),
        rawP50Ms: round(rawLatency.p50, 2),
        rawP99Ms: round(rawLatency.p99, 2),
      },
    },
    {
      figure: 'RSS per subscriber',
      measured:
        rssPerSubscriber >= heapPerSubscriber
          ? `${kb(rssPerSubscriber)} (V8 heap in use: ${kb(heapPerSubscriber)})`
          : `at least ${kb(heapPerSubscriber)}, the V8 heap in use (RSS moved by ${kb(rssPerSubscriber)}: the heap reused pages it had)`,
      baseline: '—',
      ratio: '—',
      goal: '< 20 KB',
      // The subscribers hold at least their heap, whatever RSS shows.
      met: Math.max(rssPerSubscriber, heapPerSubscriber) / 1024 < 20,
      issue: '16.6 KB',
      values: {
        subscribers: SUBSCRIBERS,
        rssPerSubscriberKB: round(rssPerSubscriber / 1024, 2),
        heapPerSubscriberKB: round(heapPerSubscriber / 1024, 2),
      },
    },
  ];
}
