// Delivery past a hanging receiver's backlog: runs delivered per second to a receiver that
// answers at once, while runs to a receiver that never answers are queued ahead of them, deep
// (100,000) against shallow (16). The hanging receiver is a second one, on a port of its own, so
// that it is another destination (scheme, host and port): it holds its share of the slots either
// way (half of them; src/delivery/slots.ts), so both deliver on the other half, and what differs
// is the backlog every claim must get past. The runs are queued before the server starts.

import { measureServerDeliveries, type ServerDeliveries } from '../lib/deliveries.js';
import {
  type BenchContext,
  type Figure,
  formatRate,
  formatRatio,
  type Row,
  round,
} from '../lib/figure.js';
import { startReceiver } from '../lib/receiver.js';
import { cloneDataDir, pointAction, seedQueuedRuns } from '../lib/seed.js';

const CONCURRENCY = 8;
const SHALLOW = 16;

export const backlog: Figure = {
  id: 'backlog',
  async run(context: BenchContext): Promise<Row[]> {
    const runs = context.quick ? 500 : 3_000;
    const deep = context.quick ? 20_000 : 100_000;
    const measured: { hanging: number; result: ServerDeliveries }[] = [];
    const hangingReceiver = await startReceiver();
    try {
      for (const hanging of [SHALLOW, deep]) {
        context.log(`backlog: ${runs} runs behind ${hanging.toLocaleString('en')} hanging ones`);
        const dataDir = cloneDataDir(context.template.dataDir);
        pointAction(dataDir, {
          entity: 'default',
          action: 'hang',
          url: `${hangingReceiver.url}/hang`,
        });
        // Created before every run of the receiver that answers, so first in line.
        seedQueuedRuns(dataDir, {
          entity: 'default',
          automation: 'busy',
          count: hanging,
          lastCreatedMsAgo: 3_600_000,
        });
        seedQueuedRuns(dataDir, { entity: 'default', automation: 'deliveries', count: runs });
        const result = await measureServerDeliveries(context, {
          dataDir,
          runs,
          env: { TRIPLINE_DELIVERY_CONCURRENCY: String(CONCURRENCY) },
        });
        measured.push({ hanging, result });
      }
    } finally {
      await hangingReceiver.close();
    }
    const [shallow, deepest] = measured as [(typeof measured)[0], (typeof measured)[0]];
    const ratio = deepest.result.perSecond / shallow.result.perSecond;
    const cpuPerRunUs = (m: (typeof measured)[0]) => m.result.serverCpuPerRunUs;
    return [
      {
        figure: `runs delivered per second to a receiver that answers, behind ${deep.toLocaleString('en')} runs to one that never does / behind ${SHALLOW}, concurrency ${CONCURRENCY}`,
        measured: `${formatRate(deepest.result.perSecond, 'runs/s')} (${Math.round(cpuPerRunUs(deepest))} µs server CPU per run)`,
        baseline: `${formatRate(shallow.result.perSecond, 'runs/s')} (${Math.round(cpuPerRunUs(shallow))} µs)`,
        ratio: formatRatio(ratio),
        goal: '≥ 0.8',
        met: ratio >= 0.8,
        issue: '—',
        values: {
          runs,
          deep,
          shallow: SHALLOW,
          deepRunsPerSecond: round(deepest.result.perSecond, 1),
          shallowRunsPerSecond: round(shallow.result.perSecond, 1),
          deepServerCpuPerRunUs: Math.round(cpuPerRunUs(deepest)),
          shallowServerCpuPerRunUs: Math.round(cpuPerRunUs(shallow)),
          ratio: round(ratio, 4),
        },
      },
    ];
  },
};
