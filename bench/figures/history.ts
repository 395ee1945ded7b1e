// Paging through run history: the first 50 FAILED runs of an entity holding 300,000 runs, then
// the next page, as a dashboard asks for them (with totalCount). Requests are sequential, so the
// figure is latency, not throughput. A sequential `{ __typename }` on the same server, in
// between, shows the floor of a request.
import { type BenchContext, type Figure, formatMs, type Row, round } from '../lib/figure.js';
import { gql } from '../lib/http.js';
import { cloneDataDir, seedRunHistory } from '../lib/seed.js';
import { summarize } from '../lib/stats.js';

/** As issue 8 states the figure; --quick stores fewer, so seeding fits its time budget. */
const RUNS = 300_000;
const QUICK_RUNS = 100_000;
const FAILED_EVERY = 10;

const PAGE = `query($after: String) { entity(name: "default") {
  triggeredRuns(first: 50, after: $after, filter: { statuses: [FAILED] }) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { id status automationName createdAt result } } } } }`;

interface Page {
  entity: {
    triggeredRuns: { totalCount: number; pageInfo: { endCursor: string }; edges: unknown[] };
  };
}

export const history: Figure = {
  id: 'history',
  async run(context: BenchContext): Promise<Row[]> {
    const pairs = context.quick ? 10 : 100;
    const stored = context.quick ? QUICK_RUNS : RUNS;
    const dataDir = cloneDataDir(context.template.dataDir);
    context.log(`history: seeding ${stored.toLocaleString('en')} runs`);
    seedRunHistory(dataDir, {
      entity: 'default',
      automations: Array.from({ length: 10 }, (_, i) => `history-${i}`),
      count: stored,
      failedEvery: FAILED_EVERY,
    });
    const server = await context.startServer(dataDir);
    const pages: number[] = [];
    const floor: number[] = [];
    try {
      const page = async (after: string | null) => {
        const answer = await gql<Page>(server.url, server.adminKey, PAGE, { after });
        const runs = answer.data?.entity.triggeredRuns;
        if (runs?.edges.length !== 50 || runs.totalCount !== stored / FAILED_EVERY) {
          throw new Error(`history page answered ${JSON.stringify(answer).slice(0, 500)}`);
        }
        return { ms: answer.ms, cursor: runs.pageInfo.endCursor };
      };
      context.log(`history: ${pairs} first and next pages`);
      for (let i = -5; i < pairs; i += 1) {
        const first = await page(null);
        const next = await page(first.cursor);
        const typename = await gql(server.url, server.adminKey, '{ __typename }');
        if (i < 0) continue;
        pages.push(first.ms, next.ms);
        floor.push(typename.ms);
      }
    } finally {
      await server.stop();
    }
    const latency = summarize(pages);
    const reference = summarize(floor);
    return [
      {
        figure: `entity.triggeredRuns(first: 50, filter: {statuses: [FAILED]}) and its next page, ${stored.toLocaleString('en')} runs stored`,
        measured: `p50 ${formatMs(latency.p50)}, p99 ${formatMs(latency.p99)}`,
        baseline: `{ __typename } p50 ${formatMs(reference.p50)}`,
        ratio: '—',
        goal: 'p50 < 10 ms',
        met: latency.p50 < 10,
        issue: 'p50 132 ms',
        values: {
          runs: stored,
          failedRuns: stored / FAILED_EVERY,
          requests: latency.count,
          p50Ms: round(latency.p50, 2),
          p99Ms: round(latency.p99, 2),
          typenameP50Ms: round(reference.p50, 2),
        },
      },
    ];
  },
};
