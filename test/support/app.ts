import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { type App, createApp } from '../../src/app.js';
import { bootstrap } from '../../src/bootstrap.js';
import type { Clock } from '../../src/clock.js';
import { type Config, loadConfig } from '../../src/config.js';
import type { AppDeps } from '../../src/context.js';
import { openDatabase, type Storage } from '../../src/db/client.js';
import { createLogger } from '../../src/logger.js';
import { createSecretBox } from '../../src/modules/secrets/box.js';

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

export interface TestApp {
  app: App;
  deps: AppDeps;
  storage: Storage;
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
  close(): void;
}

/**
 * A full app on a fresh SQLite file in a temporary directory, migrated and bootstrapped as in
 * production. `env` overrides configuration variables.
 */
export async function createTestApp(
  options: { env?: Record<string, string>; clock?: Clock } = {},
): Promise<TestApp> {
  const dataDir = mkdtempSync(join(tmpdir(), 'tripline-test-'));
  const config = loadConfig({ TRIPLINE_DATA_DIR: dataDir, LOG_LEVEL: 'debug', ...options.env });
  const storage = openDatabase(config.databaseFile);
  const logLines: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logLines.push(String(chunk));
      done();
    },
  });
  const deps: AppDeps = {
    db: storage.db,
    secretBox: createSecretBox(randomBytes(32)),
    clock: options.clock ?? { now: () => new Date() },
    logger: createLogger('debug', sink),
    config,
  };
  const first = bootstrap(storage.db, config);
  if (!first) throw new Error('bootstrap did not run on a fresh database');
  const app = createApp(deps);

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

  let members = 0;
  const member: TestApp['member'] = async (role, name = `${role.toLowerCase()}-${++members}`) => {
    const result = await gql(
      `mutation($input: CreateUserInput!) { createUser(input: $input) {
        __typename ... on CreatedUser { secret } ... on Error { message } } }`,
      { input: { entity: 'default', name, kind: 'USER', role } },
    );
    const secret = result.data?.createUser?.secret;
    if (!secret) throw new Error(`could not create a ${role}: ${JSON.stringify(result)}`);
    return secret;
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
    close: () => {
      storage.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
