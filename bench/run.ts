// The benchmark of issue 8: every figure of its table, each with its baseline from the same run.
//
//   npm run bench                     every figure (several minutes)
//   npm run bench -- --quick          smaller counts and shorter windows (under two minutes)
//   npm run bench -- --only emit      one figure (repeat --only for several); ids below
//   npm run bench -- --profile        also write a V8 CPU profile of each Tripline server
//                                     (node --cpu-prof) under bench/results/profiles/
//   npm run bench -- --database postgres
//                                     every figure with the servers on PostgreSQL (a fresh
//                                     database each, on BENCH_POSTGRES_URL's server, default
//                                     127.0.0.1:5432 as postgres; see lib/postgres.ts)
//
// Figures (ids for --only): requests (authenticated `{ __typename }` against bare yoga, and the
// three emit figures), delivery, first-attempt, subscribers (with RSS per subscriber),
// emit-subscribers, history, run-metrics (logRunMetrics with 20 metric automations watching
// against none), scale-out (runs/s to the fast receiver from two instances on one private
// PostgreSQL and Redis against one instance; see figures/scale-out.ts for its pinning), backlog
// (runs/s to the fast receiver behind 100,000 runs to the hanging one against 16, not in
// issue 8's table: claims that pass over a full destination), storage (the storage work of an
// event's runs and of a delivered run alone, through the storage layer; bench/micro/storage.ts,
// not in the table either). Each starts Tripline as `npm start` does (node --import tsx
// src/main.ts) on a fresh data directory, pinned with `taskset -c 0` where taskset exists; this
// process (load, receiver, clients) pins itself to core 1. Baselines — a bare graphql-yoga
// server, a raw undici loop, a raw `ws` broadcast — are started the same way on core 0.
//
// Output: a Markdown table on stdout (progress goes to stderr), and the same results as JSON in
// bench/results/latest.json and bench/results/<time>-<mode>.json (gitignored), so a run after a
// change can be compared with one before. Only ratios carry between machines and runs; timings
// are never asserted anywhere.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { backlog } from './figures/backlog.js';
import { delivery } from './figures/delivery.js';
import { emitSubscribers } from './figures/emit-subscribers.js';
import { firstAttempt } from './figures/first-attempt.js';
import { history } from './figures/history.js';
import { requests } from './figures/requests.js';
import { runMetrics } from './figures/run-metrics.js';
import { scaleOut } from './figures/scale-out.js';
import { storage } from './figures/storage.js';
import { subscribers } from './figures/subscribers.js';
import type { BenchContext, Figure, Row } from './lib/figure.js';
import { closeHttp } from './lib/http.js';
import { dropBenchDatabases, postgresCopyOf } from './lib/postgres.js';
import { killAllChildren, pinLoadGenerator, ROOT, removeTempDirs } from './lib/process.js';
import { startReceiver } from './lib/receiver.js';
import { startTripline, type TriplineServer } from './lib/server.js';
import { createTemplate } from './lib/setup.js';

const FIGURES: Figure[] = [
  requests,
  delivery,
  firstAttempt,
  subscribers,
  emitSubscribers,
  history,
  runMetrics,
  scaleOut,
  backlog,
  storage,
];

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string', multiple: true },
    profile: { type: 'boolean', default: false },
    database: { type: 'string', default: 'sqlite' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  process.stdout.write(
    `npm run bench [-- --quick] [--only <figure>]... [--profile] [--database sqlite|postgres]\nfigures: ${FIGURES.map((f) => f.id).join(', ')}\n`,
  );
  process.exit(0);
}
if (args.database !== 'sqlite' && args.database !== 'postgres') {
  process.stderr.write(`--database must be sqlite or postgres, got "${args.database}"\n`);
  process.exit(2);
}
const onPostgres = args.database === 'postgres';
const unknown = (args.only ?? []).filter((id) => !FIGURES.some((f) => f.id === id));
if (unknown.length > 0) {
  process.stderr.write(
    `unknown figure ${unknown.join(', ')}; figures: ${FIGURES.map((f) => f.id).join(', ')}\n`,
  );
  process.exit(2);
}
const selected = args.only ? FIGURES.filter((f) => args.only!.includes(f.id)) : FIGURES;

const log = (message: string) => process.stderr.write(`[bench] ${message}\n`);
const resultsDir = join(ROOT, 'bench', 'results');
const startedAt = new Date();
const stamp = startedAt.toISOString().replace(/[:.]/g, '-');

function cpuModel(): string {
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    return match?.[1]?.trim() ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

// Counted before pinning: afterwards this process sees only its own core.
const cores = availableParallelism();
const pinning = pinLoadGenerator();
const machine = {
  cores,
  cpu: cpuModel(),
  node: process.version,
  platform: `${process.platform} ${process.arch}`,
  pinning: pinning.pinned
    ? 'server on core 0, load on core 1 (taskset)'
    : `unpinned: ${pinning.reason}`,
};
log(`${machine.cores} cores, ${machine.cpu}, Node ${machine.node}; ${machine.pinning}`);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    log(`${signal}: stopping servers`);
    // The `exit` handler of lib/process.ts kills the servers and deletes their data.
    process.exit(signal === 'SIGINT' ? 130 : 143);
  });
}

const loadAtStart = loadavg()[0]!.toFixed(2);
const profiles: string[] = [];
const rows: Row[] = [];
const failures: { figure: string; error: string }[] = [];
const begin = performance.now();
const receiver = await startReceiver();
try {
  log('setting up a data directory through the API');
  const template = await createTemplate(receiver.url);
  for (const figure of selected) {
    let serverCount = 0;
    const context: BenchContext = {
      quick: args.quick!,
      receiver,
      template,
      log,
      async startServer(dataDir, env, options) {
        serverCount += 1;
        const profileDir = args.profile
          ? join(resultsDir, 'profiles', `${stamp}-${figure.id}-${serverCount}`)
          : undefined;
        const starting = performance.now();
        const database: Record<string, string> =
          onPostgres && !env?.TRIPLINE_DATABASE_URL
            ? { TRIPLINE_DATABASE_URL: await postgresCopyOf(dataDir) }
            : {};
        const server: TriplineServer = await startTripline({
          dataDir,
          env: { ...env, ...database },
          ...(profileDir ? { profileDir } : {}),
          ...(options?.inspect ? { inspect: true } : {}),
          ...(options?.cores ? { cores: options.cores } : {}),
        });
        log(`${figure.id}: server up in ${((performance.now() - starting) / 1000).toFixed(1)} s`);
        const stop = server.stop;
        server.stop = async () => {
          const written = await stop();
          profiles.push(...written);
          return written;
        };
        return server;
      },
    };
    const figureBegin = performance.now();
    log(`${figure.id}: starting`);
    try {
      rows.push(...(await figure.run(context)));
    } catch (error) {
      const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
      failures.push({ figure: figure.id, error: message });
      log(`${figure.id}: FAILED: ${message}`);
    }
    log(`${figure.id}: done in ${((performance.now() - figureBegin) / 1000).toFixed(1)} s`);
    removeTempDirs([template.dataDir]);
  }
} finally {
  killAllChildren();
  removeTempDirs();
  await dropBenchDatabases();
  await receiver.close();
  await closeHttp();
}
const totalSeconds = (performance.now() - begin) / 1000;
// Other work on the machine slows every figure; the load average says how much there was.
const load = {
  atStart: loadAtStart,
  atEnd: loadavg()[0]!.toFixed(2),
};

const cell = (text: string) => text.replace(/\|/g, '\\|');
const table = [
  '| figure | measured | baseline (same run) | ratio | goal | met | issue 8 "today" |',
  '| --- | --- | --- | --- | --- | --- | --- |',
  ...rows.map(
    (row) =>
      `| ${[row.figure, row.measured, row.baseline, row.ratio, row.goal, row.met === null ? '—' : row.met ? 'yes' : 'no', row.issue].map(cell).join(' | ')} |`,
  ),
].join('\n');
process.stdout.write(
  `\n${args.quick ? 'Quick run' : 'Full run'} on ${onPostgres ? 'PostgreSQL' : 'SQLite'}, ${machine.cores} cores (${machine.cpu}), Node ${machine.node}, ${machine.pinning}; ${totalSeconds.toFixed(0)} s; load average ${load.atStart} at start, ${load.atEnd} at end\n\n${table}\n`,
);
if (args.quick) {
  process.stdout.write('\nQuick runs are single short rounds: a smoke test, not figures.\n');
}
for (const row of rows) {
  const failed = Number(row.values.failures ?? 0);
  if (failed > 0) {
    process.stdout.write(`\nWARNING: ${failed} requests failed during "${row.figure}"\n`);
  }
}
for (const failure of failures)
  process.stdout.write(`\n${failure.figure} FAILED:\n${failure.error}\n`);
if (profiles.length > 0) {
  process.stdout.write(
    `\nCPU profiles (open in Chrome DevTools or speedscope):\n${profiles.map((p) => `  ${p}`).join('\n')}\n`,
  );
}

mkdirSync(resultsDir, { recursive: true });
const results = {
  startedAt: startedAt.toISOString(),
  mode: args.quick ? 'quick' : 'full',
  figures: selected.map((f) => f.id),
  seconds: Math.round(totalSeconds),
  machine,
  database: args.database,
  loadAverage: load,
  rows,
  failures,
};
const json = `${JSON.stringify(results, null, 2)}\n`;
writeFileSync(join(resultsDir, 'latest.json'), json);
writeFileSync(join(resultsDir, `${stamp}-${results.mode}.json`), json);
process.stdout.write(`\nResults: ${join('bench', 'results', 'latest.json')}\n`);
process.exit(failures.length > 0 ? 1 : 0);
