// Measures emitArtifactEvent through the real GraphQL stack in two entities of one database:
// `default` has a handful of automations (the baseline), `crowded` has the same handful plus
// many more watching other projects. Emits alternate between them so machine noise hits both
// alike. Matching looks candidates up by scope and event type through an index, so the ratio
// should stay near 1 however many automations an entity has.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createApp } from '../src/app.js';
import { bootstrap } from '../src/bootstrap.js';
import { systemClock } from '../src/clock.js';
import { loadConfig } from '../src/config.js';
import { openDatabase } from '../src/db/client.js';
import { actions, automations, projects } from '../src/db/schema.js';
import { newId } from '../src/ids.js';
import { createLogger } from '../src/logger.js';
import { insertEntity } from '../src/modules/entities/service.js';
import { createSecretBox } from '../src/modules/secrets/box.js';
import { createTriplinePubSub } from '../src/pubsub.js';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 400);
const EXTRA_AUTOMATIONS = Number(process.env.BENCH_AUTOMATIONS ?? 20_000);

const dir = mkdtempSync(join(tmpdir(), 'tripline-bench-'));
const config = loadConfig({
  TRIPLINE_DATA_DIR: dir,
  LOG_LEVEL: 'silent',
  TRIPLINE_RATE_LIMIT_EVENTS_PER_MINUTE: '0',
});
const storage = openDatabase(config.databaseFile);
const deps = {
  db: storage.db,
  secretBox: createSecretBox(randomBytes(32)),
  clock: systemClock,
  logger: createLogger('silent'),
  config,
  pubsub: createTriplinePubSub(),
};
const first = bootstrap(storage.db, config)!;
const app = createApp(deps);
const adminId = storage.db.query.users.findFirst().sync()!.id;
const baselineEntity = storage.db.query.entities.findFirst().sync()!.id;
const crowdedEntity = insertEntity(deps, 'crowded', adminId).id;

function setUpEntity(entityId: string, extra: number): void {
  const project = (name: string) =>
    storage.db.insert(projects).values({ id: newId(), entityId, name }).returning().get().id;
  const watched = project('watched');
  const others = extra > 0 ? Array.from({ length: 200 }, (_, i) => project(`other-${i}`)) : [];
  const actionId = storage.db
    .insert(actions)
    .values({
      id: newId(),
      entityId,
      kind: 'WEBHOOK',
      name: 'hook',
      url: 'https://example.com/hook',
    })
    .returning()
    .get().id;
  const add = (count: number, scopeIds: string[], prefix: string) =>
    storage.db.transaction((tx) => {
      for (let i = 0; i < count; i += 1) {
        tx.insert(automations)
          .values({
            id: newId(),
            entityId,
            name: `${prefix}-${i}`,
            eventType: i % 3 === 0 ? 'ADD_ARTIFACT_ALIAS' : 'CREATE_ARTIFACT',
            scopeType: 'PROJECT',
            scopeId: scopeIds[i % scopeIds.length]!,
            actionId,
          })
          .run();
      }
    });
  add(6, [watched], 'watching');
  if (extra > 0) add(extra, others, 'elsewhere');
}

setUpEntity(baselineEntity, 0);
setUpEntity(crowdedEntity, EXTRA_AUTOMATIONS);

const EMIT = `mutation($e: String!, $v: Int!) { emitArtifactEvent(input: { entity: $e,
  eventType: CREATE_ARTIFACT, project: "watched", collection: "m", artifactType: "model",
  versionIndex: $v }) { __typename ... on EmittedArtifactEvent { triggeredRuns { id } } } }`;

async function emitOnce(entity: string, version: number): Promise<{ ms: number; runs: number }> {
  const start = performance.now();
  const response = await app.yoga.fetch('http://localhost/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${first.apiKey}` },
    body: JSON.stringify({ query: EMIT, variables: { e: entity, v: version } }),
  });
  const body = (await response.json()) as {
    data: { emitArtifactEvent: { triggeredRuns: unknown[] } };
  };
  return { ms: performance.now() - start, runs: body.data.emitArtifactEvent.triggeredRuns.length };
}

const summary = (label: string, timings: number[], runs: number) => {
  timings.sort((a, b) => a - b);
  const median = timings[Math.floor(timings.length / 2)]!;
  const p95 = timings[Math.floor(timings.length * 0.95)]!;
  console.log(
    `${label.padEnd(46)} median ${median.toFixed(3)} ms  p95 ${p95.toFixed(3)} ms  (${runs} runs per event)`,
  );
  return median;
};

for (let v = 0; v < 50; v += 1) {
  await emitOnce('default', v);
  await emitOnce('crowded', v);
}
const baseline: number[] = [];
const crowded: number[] = [];
let runs = { baseline: 0, crowded: 0 };
for (let v = 50; v < 50 + EVENTS; v += 1) {
  const a = await emitOnce('default', v);
  const b = await emitOnce('crowded', v);
  baseline.push(a.ms);
  crowded.push(b.ms);
  runs = { baseline: a.runs, crowded: b.runs };
}
const base = summary('baseline: 6 automations in the entity', baseline, runs.baseline);
const load = summary(
  `crowded: 6 + ${EXTRA_AUTOMATIONS} automations elsewhere`,
  crowded,
  runs.crowded,
);
console.log(
  `ratio crowded / baseline: ${(load / base).toFixed(2)} (1.00 = matching cost independent of the entity's automation count)`,
);

await app.stop(0);
storage.close();
rmSync(dir, { recursive: true, force: true });
