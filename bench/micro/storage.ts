// The storage work of the hot paths alone, through the storage layer on a migrated SQLite
// database in a temporary directory: no HTTP, no GraphQL, no engine. Run by figures/storage.ts
// pinned to the server's core; prints one JSON object per line: { kind, size, cpuUs, wallUs }.
//
// - `record`: recording an event with `size` runs (as many matching automations), sixteen events
//   committing together as they do under the emit figures' load (`recordEvent` group-commits).
// - `deliver`: a delivered run's writes: a claim of `size` runs that starts their attempts and
//   loads them, then each attempt's end and the run's new state, the ends committing together.
//
// Usage: node --import tsx bench/micro/storage.ts [--quick]
import { newId } from '../../src/ids.js';
import { projects, users } from '../../src/storage/sqlite/schema.js';
import { createDeliveryFixture } from '../../test/support/delivery-fixtures.js';

const quick = process.argv.includes('--quick');
const EVENTS = quick ? 300 : 1_200;
const EVENTS_PER_COMMIT = 16;
// Divisible by every claim size below, so each round claims its full size.
const RUNS = quick ? 640 : 3_072;

function report(kind: string, size: number, count: number, measure: () => Promise<void>) {
  return async () => {
    const wall = performance.now();
    const cpu = process.cpuUsage();
    await measure();
    const used = process.cpuUsage(cpu);
    const cpuUs = (used.user + used.system) / count;
    const wallUs = ((performance.now() - wall) * 1000) / count;
    process.stdout.write(`${JSON.stringify({ kind, size, cpuUs, wallUs })}\n`);
  };
}

async function recordEvents(): Promise<void> {
  const fx = createDeliveryFixture();
  try {
    const userId = newId();
    fx.db.insert(users).values({ id: userId, name: 'bench', kind: 'USER' }).run();
    const project = fx.db.select().from(projects).get();
    if (!project) throw new Error('the fixture has no project');
    const action = fx.addWebhookAction({ url: 'http://127.0.0.1:9/hook' });
    let automations = 0;
    let version = 0;
    const one = () =>
      fx.storage.events.recordEvent(
        {
          entityId: fx.entityId,
          eventType: 'CREATE_ARTIFACT',
          owner: { kind: 'project', id: project.id },
          collectionName: 'model',
          artifactType: 'model',
          versionIndex: version++,
          alias: null,
          tag: null,
          author: 'bench',
          metadata: null,
          idempotencyKey: null,
          createdById: userId,
          createdAt: new Date(),
        },
        () => true,
      );
    const batches = async (events: number) => {
      for (let done = 0; done < events; done += EVENTS_PER_COMMIT) {
        await Promise.all(Array.from({ length: EVENTS_PER_COMMIT }, one));
      }
    };
    for (const size of [0, 10, 100]) {
      for (; automations < size; automations++) {
        fx.addAutomation({ actionId: action, eventType: 'CREATE_ARTIFACT' });
      }
      const first = await one();
      if (first.outcome !== 'recorded' || first.runs.length !== size) {
        throw new Error(`an event created ${JSON.stringify(first.outcome)}, not ${size} runs`);
      }
      await batches(EVENTS / 4);
      await report('record', size, EVENTS, () => batches(EVENTS))();
    }
  } finally {
    await fx.close();
  }
}

async function deliverRuns(size: number): Promise<void> {
  const fx = createDeliveryFixture();
  try {
    const action = fx.addWebhookAction({ url: 'http://127.0.0.1:9/hook' });
    const automation = fx.addAutomation({ actionId: action, eventType: 'CREATE_ARTIFACT' });
    const warm = RUNS / 5;
    for (let i = 0; i < RUNS + warm + 2 * size; i++) fx.queueRun({ automationId: automation });
    const store = fx.storage.delivery;
    const owner = 'bench';
    const round = async (): Promise<number> => {
      const now = new Date();
      const claimed = await store.claimDue(
        { owner, now, leaseExpiresAt: new Date(now.getTime() + 60_000), limit: size, passOver: [] },
        () => 'start',
      );
      if (claimed.length === 0) throw new Error('the claim found nothing due');
      await Promise.all(
        claimed.map((run) => {
          if (!run.attempt) throw new Error('the claim started no attempt');
          return store.finishAttempt(
            { runId: run.id, owner },
            run.attempt.id,
            {
              durationMs: 1,
              statusCode: 200,
              errorClass: null,
              errorMessage: null,
              responseBody: 'ok',
            },
            { status: 'SUCCEEDED', result: 'Delivered: HTTP 200', nextAttemptAt: null },
            new Date(),
          );
        }),
      );
      return claimed.length;
    };
    const deliver = async (runs: number) => {
      for (let done = 0; done < runs; ) done += await round();
    };
    await deliver(warm);
    await report('deliver', size, RUNS, () => deliver(RUNS))();
  } finally {
    await fx.close();
  }
}

await recordEvents();
for (const size of [1, 8, 64]) await deliverRuns(size);
