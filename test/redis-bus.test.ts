// Several instances sharing one Redis (issue 12, item 2): run updates reach subscribers on every
// instance, a revoked key stops working everywhere within a second, rate limits hold across
// instances, a run queued on one instance wakes the engines of the others, and a Redis restart
// loses nothing. Two apps in this process over one SQLite storage object stand for two instances
// of one deployment; each has its own pub/sub, caches, limiter and engine, and a private Redis
// server (test/support/services.ts) connects them.
import { randomUUID } from 'node:crypto';
import { type Client, createClient } from 'graphql-ws';
import { Redis } from 'ioredis';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { SharedBus } from '../src/bus/bus.js';
import { createRedisBus } from '../src/bus/redis.js';
import { ConfigError, loadConfig, type RedisConfig } from '../src/config.js';
import type { RateLimitStore } from '../src/limits/rate-limit.js';
import { createLogger } from '../src/logger.js';
import type { RunUpdate } from '../src/pubsub.js';
import { createTestApp, fakeClock, type TestApp } from './support/app.js';
import {
  createAutomation,
  createProject,
  createWebhookAction,
  emit,
  mutate,
} from './support/fixtures.js';
import { tokenBucketCases } from './support/rate-limit-cases.js';
import { type Receiver, startReceiver } from './support/receiver.js';
import { freePort, missingService, type RedisServer, startRedis } from './support/services.js';

describe('Redis configuration', () => {
  const problems = (env: Record<string, string>): string[] => {
    try {
      loadConfig(env);
    } catch (error) {
      if (error instanceof ConfigError) return error.problems;
      throw error;
    }
    return [];
  };

  it('is off without TRIPLINE_REDIS_URL, and takes the tripline: prefix by default', () => {
    expect(loadConfig({}).redis).toBeUndefined();
    expect(loadConfig({ TRIPLINE_REDIS_URL: 'redis://cache:6380/2' }).redis).toEqual({
      url: 'redis://cache:6380/2',
      prefix: 'tripline:',
    });
    expect(
      loadConfig({ TRIPLINE_REDIS_URL: 'rediss://h', TRIPLINE_REDIS_PREFIX: 'staging:' }).redis,
    ).toEqual({ url: 'rediss://h', prefix: 'staging:' });
  });

  it('names TRIPLINE_REDIS_URL for a URL it cannot use, without repeating the password', () => {
    const [notUrl] = problems({ TRIPLINE_REDIS_URL: 'localhost:6379' });
    expect(notUrl).toMatch(/^TRIPLINE_REDIS_URL must be a redis:\/\/ or rediss:\/\/ .*URL/);
    const [http] = problems({ TRIPLINE_REDIS_URL: 'http://user:hunter2@cache:6379' });
    expect(http).toContain('TRIPLINE_REDIS_URL');
    expect(http).not.toContain('hunter2');
    expect(problems({ TRIPLINE_REDIS_URL: 'redis://cache:6379/cache' })[0]).toContain(
      'TRIPLINE_REDIS_URL must name a database by number',
    );
    expect(problems({ TRIPLINE_REDIS_PREFIX: 'with space' })[0]).toContain('TRIPLINE_REDIS_PREFIX');
  });
});

/** Waits (10 ms at a time) until `check` passes, for at most `withinMs`; rethrows its last failure. */
async function eventually<T>(check: () => Promise<T> | T, withinMs: number): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() >= deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

const connected = (t: TestApp) =>
  eventually(() => {
    expect(t.deps.bus?.state()).toMatchObject({ connected: true });
  }, 10_000);

const readyz = async (t: TestApp) => {
  const response = await t.app.yoga.fetch('http://localhost/readyz');
  return { status: response.status, body: await response.text() };
};

const VIEWER = '{ viewer { user { name } } }';
const REVOKE = 'mutation($id: ID!) { revokeApiKey(input: { id: $id }) { __typename } }';

async function ownKeyId(t: TestApp, key: string): Promise<string> {
  const r = await t.gql('{ viewer { apiKeys(first: 1) { edges { node { id } } } } }', {}, key);
  return r.data.viewer.apiKeys.edges[0].node.id;
}

describe('Redis unreachable', () => {
  it('retries with backoff, logs why, answers 503 on /readyz, and serves meanwhile', async () => {
    const port = await freePort();
    const t = await createTestApp({
      redis: { url: `redis://:hunter2@127.0.0.1:${port}`, prefix: `test:${randomUUID()}:` },
    });
    try {
      const logged = await eventually(() => {
        const line = t.logLines.find((l) => l.includes('is unreachable'));
        expect(line).toBeDefined();
        return line as string;
      }, 10_000);
      expect(logged).toContain(`redis://127.0.0.1:${port}`);
      expect(logged).toContain('TRIPLINE_REDIS_URL');
      expect(logged).not.toContain('hunter2');
      const ready = await readyz(t);
      expect(ready.status).toBe(503);
      expect(ready.body).toContain('Redis is unreachable');
      expect(await t.app.telemetry.metrics?.render()).toContain('tripline_redis_connected 0');
      // Rate limits are counted in memory meanwhile: mutations neither hang nor fail.
      await createProject(t, 'p');
    } finally {
      await t.close();
    }
  });
});

const redis: RedisServer | undefined = await startRedis();
if (!redis) missingService('Redis', 'redis-server is not installed');
afterAll(() => redis?.stop());

describe.skipIf(!redis)('two instances sharing one Redis', () => {
  const server = redis as RedisServer;
  // One prefix for this file: several deployments (and test files) share a Redis this way.
  const prefix = `test:${randomUUID()}:`;
  const config: RedisConfig = { url: server?.url ?? '', prefix };
  const clock = fakeClock();
  const env = {
    TRIPLINE_OUTBOUND_ALLOW: '127.0.0.1',
    TRIPLINE_RATE_LIMIT_EVENTS_PER_MINUTE: '3',
    // Ten minutes: only a wake-up explains a prompt delivery.
    TRIPLINE_DELIVERY_POLL_MS: '600000',
  };
  let a: TestApp;
  let b: TestApp;
  let receiver: Receiver;
  const apps: TestApp[] = [];
  const clients: Client[] = [];

  afterAll(async () => {
    const admin = new Redis(server.url);
    const keys = await admin.keys(`${prefix}*`);
    if (keys.length > 0) await admin.del(...keys);
    await admin.quit();
  });

  const start = async () => {
    a = await createTestApp({ clock, env, redis: config });
    b = await createTestApp({ clock, env, redis: config, peer: a });
    apps.push(b, a);
    receiver = await startReceiver();
    await createProject(a, 'p');
    const action = await createWebhookAction(a, { name: 'hook', url: `${receiver.url}/hook` });
    await createAutomation(a, {
      name: 'notify',
      eventType: 'CREATE_ARTIFACT',
      scope: { type: 'PROJECT', project: 'p' },
      actionId: action.id,
    });
    await connected(a);
    await connected(b);
  };

  afterEach(async () => {
    for (const client of clients.splice(0)) await client.dispose();
    // The peer first: the first app owns the storage.
    for (const t of apps.splice(0)) await t.close();
    await receiver?.close();
  });

  it('shows a subscriber on one instance the run updates made on another, once each', async () => {
    await start();
    const url = await a.listen();
    const client = createClient({
      url: url.replace('http', 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${a.adminKey}` },
      retryAttempts: 0,
    });
    clients.push(client);
    const seen: { id: string; status: string }[] = [];
    let resolve: () => void = () => {};
    const twoRuns = new Promise<void>((r) => {
      resolve = r;
    });
    client.subscribe<{ triggeredRunUpdated: { id: string; status: string } }>(
      { query: 'subscription { triggeredRunUpdated { id status } }' },
      {
        next: (message) => {
          if (message.data) seen.push(message.data.triggeredRunUpdated);
          if (seen.length >= 2) resolve();
        },
        error: () => {},
        complete: () => {},
      },
    );
    await a.subscribers(1);
    const fromB = (await emit(b)).triggeredRuns[0].id;
    const fromA = (await emit(a, { versionIndex: 1 })).triggeredRuns[0].id;
    await twoRuns;
    // A's own update arrives once: its echo from Redis is skipped.
    await eventually(async () => {
      await new Promise((r) => setTimeout(r, 50));
      expect(seen).toEqual([
        { id: fromB, status: 'QUEUED' },
        { id: fromA, status: 'QUEUED' },
      ]);
    }, 1_000);
  });

  it('stops a key revoked on one instance from working on the other within a second', async () => {
    await start();
    const member = await a.member('MEMBER', 'revoked-member');
    expect((await b.gql(VIEWER, {}, member)).status).toBe(200);
    const keyId = await ownKeyId(a, member);
    await mutate(a, REVOKE, { id: keyId }, member);
    await eventually(async () => {
      const answer = await b.gql(VIEWER, {}, member);
      expect(answer.status).toBe(401);
    }, 1_000);
  });

  it('applies a role changed on one instance on the other', async () => {
    await start();
    const viewer = await a.member('VIEWER', 'promoted');
    const userId = (await a.gql('{ viewer { user { id } } }', {}, viewer)).data.viewer.user.id;
    const denied = await b.gql(
      'mutation { createProject(input: { entity: "default", name: "q" }) { __typename } }',
      {},
      viewer,
    );
    expect(denied.data.createProject.__typename).toBe('PermissionDeniedError');
    await mutate(
      a,
      'mutation($i: UpdateMemberRoleInput!) { updateMemberRole(input: $i) { __typename } }',
      { i: { entity: 'default', userId, role: 'MEMBER' } },
    );
    await eventually(async () => {
      const allowed = await b.gql(
        'mutation { createProject(input: { entity: "default", name: "q" }) { __typename } }',
        {},
        viewer,
      );
      expect(allowed.data.createProject.__typename).toBe('CreateProjectPayload');
    }, 1_000);
  });

  it('counts a rate limit across instances', async () => {
    await start();
    // 3 events a minute per key; the clock stands still, so nothing refills.
    await emit(a);
    await emit(a, { versionIndex: 1 });
    await emit(b, { versionIndex: 2 });
    // Each instance alone has counted at most two.
    const refused = await b.gql(
      'mutation($i: EmitArtifactEventInput!) { emitArtifactEvent(input: $i) { __typename } }',
      {
        i: {
          entity: 'default',
          eventType: 'CREATE_ARTIFACT',
          owner: { project: 'p' },
          collection: 'my-model',
          artifactType: 'model',
          versionIndex: 3,
        },
      },
    );
    expect(refused.status).toBe(429);
    expect(refused.errors?.[0]?.extensions).toMatchObject({
      code: 'RATE_LIMITED',
      limit: 3,
      retryAfterSeconds: 20,
    });
  });

  it('wakes the engine of another instance when a run is queued', async () => {
    await start();
    // Only B delivers; its poll is ten minutes away.
    b.app.start();
    // Its first look for due runs (the next turn of the event loop after start) is over
    // before the run is queued.
    await new Promise((resolve) => setTimeout(resolve, 20));
    await b.app.engine.drain();
    const runId: string = (await emit(a)).triggeredRuns[0].id;
    const [request] = await receiver.waitForRequests(1);
    expect(request?.headers['webhook-id']).toBe(runId);
  });

  it('loses nothing when Redis restarts: caches are read again, then changes flow again', async () => {
    await start();
    // A third instance without the bus: its changes reach nobody, as if they were missed.
    const cut = await createTestApp({ clock, env, peer: a });
    apps.unshift(cut);
    const missed = await a.member('MEMBER', 'missed');
    const later = await a.member('MEMBER', 'later');
    expect((await b.gql(VIEWER, {}, missed)).status).toBe(200);
    expect((await b.gql(VIEWER, {}, later)).status).toBe(200);
    await mutate(cut, REVOKE, { id: await ownKeyId(cut, missed) }, missed);
    // B still trusts its cache...
    expect((await b.gql(VIEWER, {}, missed)).status).toBe(200);

    await server.kill();
    await eventually(async () => expect((await readyz(b)).status).toBe(503), 10_000);
    // ...and serves meanwhile, limits counted in memory.
    await emit(b, { versionIndex: 7 });

    await server.restart();
    await connected(b);
    await connected(a);
    expect((await readyz(b)).status).toBe(200);
    // ...until it reconnected: the cache was read again.
    expect((await b.gql(VIEWER, {}, missed)).status).toBe(401);

    // Changes flow again: an access change, and a run update.
    await mutate(a, REVOKE, { id: await ownKeyId(a, later) }, later);
    await eventually(async () => expect((await b.gql(VIEWER, {}, later)).status).toBe(401), 1_000);
    const updates = b.deps.pubsub.subscribe('runsUpdated')[Symbol.asyncIterator]();
    const next = updates.next();
    await new Promise((r) => setTimeout(r, 0));
    const runId = (await emit(a, { versionIndex: 8 })).triggeredRuns[0].id;
    const received = (await next).value as RunUpdate[];
    expect(received.map((run) => `run_${run.id}`)).toEqual([runId]);
    await updates.return?.();
  });
});

describe.skipIf(!redis)('the Redis token bucket store', () => {
  const server = redis as RedisServer;
  const buses: SharedBus[] = [];
  const prefixes: string[] = [];

  afterEach(async () => {
    const admin = new Redis(server.url);
    for (const prefix of prefixes.splice(0)) {
      const keys = await admin.keys(`${prefix}*`);
      if (keys.length > 0) await admin.del(...keys);
    }
    await admin.quit();
    for (const bus of buses.splice(0)) await bus.close();
  });

  /** A store on a fresh prefix that refuses to answer from memory (Redis must be connected). */
  const createStore = async (): Promise<RateLimitStore> => {
    const prefix = `test:${randomUUID()}:`;
    prefixes.push(prefix);
    const bus = createRedisBus({
      config: { url: server.url, prefix },
      logger: createLogger('silent'),
    });
    buses.push(bus);
    await eventually(() => expect(bus.state()).toMatchObject({ connected: true }), 10_000);
    return {
      take: (demands, now) => {
        expect(bus.state()).toMatchObject({ connected: true });
        return bus.rateLimits.take(demands, now);
      },
    };
  };

  tokenBucketCases(createStore);

  it('keeps buckets under the prefix, expiring once they would be full again', async () => {
    const store = await createStore();
    const prefix = prefixes.at(-1) as string;
    await store.take([{ key: 'k:events', cost: 1, perMinute: 60 }], Date.now());
    const admin = new Redis(server.url);
    try {
      expect(await admin.keys(`${prefix}*`)).toEqual([`${prefix}ratelimit:k:events`]);
      // One token short: full again in a second, plus a second of slack.
      const ttl = await admin.pttl(`${prefix}ratelimit:k:events`);
      expect(ttl).toBeGreaterThan(1_000);
      expect(ttl).toBeLessThanOrEqual(2_000);
    } finally {
      await admin.quit();
    }
  });
});
