import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { startPostgres } from './services.js';

/**
 * The PostgreSQL server tests create their databases on, as a URL to its maintenance database:
 * TRIPLINE_TEST_DATABASE_URL when set, else the local server the development machine and CI run
 * (127.0.0.1:5432, user postgres, trust authentication).
 */
export const POSTGRES_SERVER_URL =
  process.env.TRIPLINE_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

/** The server's URL without a password, for messages. */
export function describeServer(url = POSTGRES_SERVER_URL): string {
  const parsed = new URL(url);
  parsed.password = '';
  return parsed.toString();
}

/**
 * A PostgreSQL server for a test file: the one TRIPLINE_TEST_DATABASE_URL names; else a private
 * one from Debian's package (test/support/services.ts), stopped by `stop`; else the local server
 * at 127.0.0.1:5432 when it answers. Undefined, with the reasons, when there is none.
 */
export async function postgresForTests(): Promise<
  { url: string; stop(): Promise<void> } | { url: undefined; why: string }
> {
  if (process.env.TRIPLINE_TEST_DATABASE_URL) {
    const why = await postgresUnreachable(POSTGRES_SERVER_URL);
    return why === null
      ? { url: POSTGRES_SERVER_URL, stop: async () => {} }
      : { url: undefined, why: `TRIPLINE_TEST_DATABASE_URL does not answer (${why})` };
  }
  const started = await startPostgres().catch((error: Error) => error);
  if (started !== undefined && !(started instanceof Error)) return started;
  const why = await postgresUnreachable(POSTGRES_SERVER_URL);
  if (why === null) return { url: POSTGRES_SERVER_URL, stop: async () => {} };
  const privateWhy =
    started instanceof Error
      ? `a private server did not start (${started.message})`
      : 'PostgreSQL is not installed (no initdb under /usr/lib/postgresql)';
  return { url: undefined, why: `${privateWhy}, and ${describeServer()} does not answer (${why})` };
}

/** Null when the server answers; otherwise why not, for a loud skip. */
export async function postgresUnreachable(url = POSTGRES_SERVER_URL): Promise<string | null> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return null;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  } finally {
    await client.end().catch(() => {});
  }
}

async function onServer<T>(server: string, body: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: server });
  await client.connect();
  try {
    return await body(client);
  } finally {
    await client.end();
  }
}

export interface TestDatabase {
  /** The new database's URL. */
  url: string;
  /** Drops the database, ending any connection left open to it. */
  drop(): Promise<void>;
}

/**
 * Creates an empty database `tripline_test_<random>` on `server` (the URL of its maintenance
 * database; the test server by default).
 */
export async function createTestDatabase(server = POSTGRES_SERVER_URL): Promise<TestDatabase> {
  const name = `tripline_test_${randomBytes(6).toString('hex')}`;
  await onServer(server, (client) => client.query(`CREATE DATABASE ${name}`));
  const url = new URL(server);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      await onServer(server, (client) =>
        client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
      );
    },
  };
}
