import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { inspect, isDeepStrictEqual } from 'node:util';
import { beforeEach } from 'vitest';
import { type App, type AppOptions, createApp } from '../../src/app.js';
import { bootstrap } from '../../src/bootstrap.js';
import type { SharedBus } from '../../src/bus/bus.js';
import { createRedisBus } from '../../src/bus/redis.js';
import type { Clock } from '../../src/clock.js';
import { type Config, loadConfig, type RedisConfig } from '../../src/config.js';
import type { AppDeps } from '../../src/context.js';
import { createLogger } from '../../src/logger.js';
import { createSecretBox } from '../../src/modules/secrets/box.js';
import { createDecryptedSecrets } from '../../src/modules/secrets/decrypted.js';
import { createAccessCache } from '../../src/modules/users/access-cache.js';
import { createTriplinePubSub } from '../../src/pubsub.js';
import { openPgStorage } from '../../src/storage/pg/storage.js';
import { openSqliteStorage, type SqliteStorage } from '../../src/storage/sqlite/storage.js';
import { createTestDatabase } from './postgres.js';

/**
 * Whether test apps run on PostgreSQL: TRIPLINE_TEST_DATABASE_URL names a server (its maintenance
 * database), on which each app gets a fresh database, dropped when the app closes. Unset, apps run
 * on SQLite in a temporary directory.
 */
export const ON_POSTGRES = Boolean(process.env.TRIPLINE_TEST_DATABASE_URL);

/**
 * Marks tests of the calling file as SQLite-only, by title: they arrange or inspect rows through
 * the SQLite handles (`storage.sqlite`, `storage.db`), so on PostgreSQL (see {@link ON_POSTGRES})
 * they are skipped. Call it at the top level of the file.
 */
export function sqliteOnly(...titles: string[]): void {
  if (!ON_POSTGRES) return;
  beforeEach((context) => {
    if (titles.includes(context.task.name)) context.skip();
  });
}

export interface GraphQLResponse {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary response shapes
  data?: any;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

/** A clock tests move by hand. */
export function fakeClock(
  start = Date.parse('2026-01-01T00:00:00Z'),
): Clock & { advance(ms: number): void; set(ms: number): void } {
  let now = start;
  return {
    now: () => new Date(now),
    advance: (ms) => {
      now += ms;
    },
    set: (ms) => {
      now = ms;
    },
  };
}

/**
 * An event target that hands every listener the message after a JSON round trip, as one backed
 * by Redis does, and refuses (the publisher gets the error) a message the round trip would change:
 * a `Date`, `undefined`, a class instance.
 */
class JsonEventTarget extends EventTarget {
  listeners = 0;

  constructor() {
    super();
    setMaxListeners(0, this);
  }

  override dispatchEvent(event: Event): boolean {
    const { detail } = event as CustomEvent<unknown>;
    const copy: unknown = JSON.parse(JSON.stringify(detail));
    if (!isDeepStrictEqual(copy, detail)) {
      throw new Error(`A ${event.type} message does not survive JSON: ${inspect(detail)}`);
    }
    return super.dispatchEvent(new CustomEvent(event.type, { detail: copy }));
  }

  override addEventListener(...args: Parameters<EventTarget['addEventListener']>): void {
    super.addEventListener(...args);
    this.listeners += 1;
  }

  override removeEventListener(...args: Parameters<EventTarget['removeEventListener']>): void {
    super.removeEventListener(...args);
    this.listeners -= 1;
  }
}

export interface TestApp {
  app: App;
  deps: AppDeps;
  /**
   * The app's storage. On PostgreSQL (see {@link ON_POSTGRES}) it is the PostgreSQL storage, and
   * the SQLite handles (`sqlite`, `db`, `handle`) are absent: tests that arrange rows through them
   * are SQLite-only.
   */
  storage: SqliteStorage;
  config: Config;
  dataDir: string;
  /** Every line the logger wrote. */
  logLines: string[];
  adminKey: string;
  /** Sends one GraphQL request through `yoga.fetch`, as `key` (the admin's by default; null for none). */
  gql(
    query: string,
    variables?: Record<string, unknown>,
    key?: string | null,
  ): Promise<GraphQLResponse>;
  /** Creates a member of the `default` entity with `role` and returns its API key. */
  member(role: 'ADMIN' | 'MEMBER' | 'VIEWER', name?: string): Promise<string>;
  /**
   * Returns the key of the admin of entity `other` (which has a project `p`), who does not
   * belong to `default`.
   */
  stranger(): Promise<string>;
  /** How many listeners the pub/sub has: one per distinct subscription executing. */
  listeners(): number;
  /** Resolves once `count` subscriptions listen (so none misses a publish). */
  subscribers(count: number): Promise<void>;
  /** Listens on 127.0.0.1 at a free port, with WebSockets; returns the GraphQL URL. */
  listen(): Promise<string>;
  close(): Promise<void>;
}

export interface TestAppOptions {
  env?: Record<string, string>;
  clock?: Clock;
  app?: AppOptions;
  /**
   * Shares with other instances through Redis (a Redis bus with this URL and prefix); in process
   * otherwise. The bus's own messages still go through the JSON-checking event target.
   */
  redis?: RedisConfig;
  /**
   * Another test app this one runs beside as a second instance of one deployment: the same
   * storage object (database), master key and admin, with its own pub/sub, caches, limits and
   * engine. Closing this app leaves the peer's storage open.
   */
  peer?: TestApp;
}

/**
 * A full app on a fresh SQLite file in a temporary directory (or a fresh PostgreSQL database, see
 * {@link ON_POSTGRES}), migrated and bootstrapped as in production (or on its `peer`'s). `env`
 * overrides configuration variables.
 */
export async function createTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const { peer } = options;
  const dataDir = peer?.dataDir ?? mkdtempSync(join(tmpdir(), 'tripline-test-'));
  const config = loadConfig({ TRIPLINE_DATA_DIR: dataDir, LOG_LEVEL: 'debug', ...options.env });
  const database = peer || !ON_POSTGRES ? undefined : await createTestDatabase();
  const storage =
    peer?.storage ??
    (database
      ? // The SQLite-only handles are absent on PostgreSQL: see TestApp.storage.
        ((await openPgStorage(database.url, { poolSize: 4 })) as unknown as SqliteStorage)
      : openSqliteStorage(config.databaseFile));
  const logLines: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logLines.push(String(chunk));
      done();
    },
  });
  const target = new JsonEventTarget();
  const secretBox = peer?.deps.secretBox ?? createSecretBox(randomBytes(32));
  const clock = options.clock ?? { now: () => new Date() };
  const logger = createLogger('debug', sink);
  const bus: SharedBus | undefined = options.redis
    ? createRedisBus({ config: options.redis, logger, local: target })
    : undefined;
  const deps: AppDeps = {
    storage,
    access: createAccessCache({ storage, clock, logger }),
    secretBox,
    decrypted: createDecryptedSecrets(secretBox),
    clock,
    logger,
    config,
    pubsub: bus?.pubsub ?? createTriplinePubSub(target),
    ...(bus ? { bus } : {}),
  };
  const first = peer ? { apiKey: peer.adminKey } : await bootstrap(deps, config);
  if (!first) throw new Error('bootstrap did not run on a fresh database');
  const app = createApp(deps, options.app);

  const gql: TestApp['gql'] = async (query, variables, key = first.apiKey) => {
    const response = await app.yoga.fetch('http://localhost/graphql', {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/graphql-response+json',
        ...(key ? { authorization: `Bearer ${key}` } : {}),
      },
      body: JSON.stringify({ query, variables }),
    });
    return { status: response.status, ...((await response.json()) as object) };
  };

  let server: Server | undefined;
  let members = 0;
  const createMember = async (entity: string, role: string, name: string): Promise<string> => {
    const result = await gql(
      `mutation($input: CreateUserInput!) { createUser(input: $input) {
        __typename ... on CreateUserPayload { plaintextKey } ... on Error { message } } }`,
      { input: { entity, name, kind: 'USER', role } },
    );
    const secret = result.data?.createUser?.plaintextKey;
    if (!secret) throw new Error(`could not create a ${role}: ${JSON.stringify(result)}`);
    return secret;
  };
  const member: TestApp['member'] = (role, name = `${role.toLowerCase()}-${++members}`) =>
    createMember('default', role, name);
  let strangerKey: string | undefined;
  const stranger: TestApp['stranger'] = async () => {
    if (strangerKey) return strangerKey;
    await gql('mutation { createEntity(input: { name: "other" }) { __typename } }');
    strangerKey = await createMember('other', 'ADMIN', 'stranger');
    await gql(
      'mutation { createProject(input: { entity: "other", name: "p" }) { __typename } }',
      {},
      strangerKey,
    );
    return strangerKey;
  };

  return {
    app,
    deps,
    storage,
    config,
    dataDir,
    logLines,
    adminKey: first.apiKey,
    gql,
    member,
    stranger,
    listeners: () => target.listeners,
    subscribers: (count) =>
      new Promise((resolve) => {
        const check = () => {
          if (app.hub.size < count) return;
          stop();
          resolve();
        };
        const stop = app.hub.watch(check);
        check();
      }),
    listen: async () => {
      server = createServer(app.handle);
      app.attach(server);
      await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
      const address = server.address() as AddressInfo;
      return `http://127.0.0.1:${address.port}/graphql`;
    },
    close: async () => {
      await app.stop(0);
      if (server) {
        server.closeAllConnections();
        await new Promise((resolve) => server?.close(resolve));
      }
      await bus?.close();
      if (peer) return;
      await storage.close();
      await database?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
